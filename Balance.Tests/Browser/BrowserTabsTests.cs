using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// Several tabs of one browser (one context, several pages) watching one player: one socket between them.
[Collection(BrowserCollection.Name)]
public sealed class BrowserTabsTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static readonly object FastOptions = new { initialDelay = 100, maxDelay = 1000, heartbeatTimeout = 4000 };

    // The first tab brings the refresh token (into localStorage, where every tab's getToken reads the latest).
    private async Task<List<IPage>> OpenTabsAsync(IBrowserContext context, Login login, int count, string? initScript = null, object? options = null)
    {
        var tabs = new List<IPage>();
        for (int i = 0; i < count; i++)
        {
            var page = await BrowserKit.NewPageAsync(context, output, name: $"tab {i + 1}");
            if (initScript is not null) await page.AddInitScriptAsync(initScript);
            await page.GotoAsync("/__test/pages/client.html");
            await page.WaitForAsync("() => window.h?.ready");
            await page.EvaluateAsync("([token, refreshToken, options]) => startShared({ token, refreshToken, options })",
                new object?[] { login.AccessToken, i == 0 ? login.RefreshToken : null, options ?? FastOptions });
            tabs.Add(page);
        }
        return tabs;
    }

    private static async Task AllAsync(IEnumerable<IPage> tabs, string expression, object? arg = null, float timeout = BrowserKit.Timeout) =>
        await Task.WhenAll(tabs.Select(t => t.WaitForAsync(expression, arg, timeout)));

    private static Task ShowAsync(IEnumerable<IPage> tabs, string balance) =>
        AllAsync(tabs, "b => h.service.status === 'connected' && h.received[0].at(-1) === b", balance);


    private static async Task<int> SocketsOpenedAsync(IEnumerable<IPage> tabs) =>
        (await Task.WhenAll(tabs.Select(t => t.EvaluateAsync<int>("() => h.sockets")))).Sum();

    private static async Task<long> JsHeapUsedAsync(IPage page)
    {
        var cdp = await page.Context.NewCDPSessionAsync(page);
        await cdp.SendAsync("HeapProfiler.collectGarbage");
        await cdp.SendAsync("Performance.enable");
        var metrics = (await cdp.SendAsync("Performance.getMetrics"))!.Value.GetProperty("metrics");
        await cdp.DetachAsync();
        return (long)metrics.EnumerateArray().First(m => m.GetProperty("name").GetString() == "JSHeapUsedSize").GetProperty("value").GetDouble();
    }

    [Fact]
    public async Task ThreeTabsShareOneSocketAndWhenTheLeaderClosesAnotherTakesOverWithoutLosingAnUpdate()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 3);

        await ShowAsync(tabs, "100.00");
        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));
        Assert.Equal(1, await SocketsOpenedAsync(tabs));
        var leaders = await Task.WhenAll(tabs.Select(t => t.EvaluateAsync<bool>("() => h.service.isLeader")));
        Assert.Equal([true, false, false], leaders);
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        await ShowAsync(tabs, "90.00");

        // Against the same page with the client loaded but not started: what a tab pays for the client's state.
        var idle = await BrowserKit.NewPageAsync(context, output, "/__test/pages/client.html", "idle");
        await idle.WaitForAsync("() => window.h?.ready");
        output.WriteLine($"JS heap used after GC: leader tab {await JsHeapUsedAsync(tabs[0]) / 1024.0:F0} KiB, follower tab {await JsHeapUsedAsync(tabs[1]) / 1024.0:F0} KiB, " +
            $"the same page with the client not started {await JsHeapUsedAsync(idle) / 1024.0:F0} KiB");
        await idle.CloseAsync();

        // The leader goes; an update committed while nobody holds a socket must still reach the others.
        var clock = Stopwatch.StartNew();
        await tabs[0].CloseAsync();
        var rest = tabs.Skip(1).ToList();
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "2.50", currency = "USD" });
        await Task.WhenAny(rest.Select(t => t.WaitForAsync("() => h.service.isLeader && h.authOks.length === 1")));
        output.WriteLine($"takeover: {clock.ElapsedMilliseconds} ms from closing the leader tab to the new leader's auth_ok");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"takeover took {clock.ElapsedMilliseconds} ms");
        await ShowAsync(rest, "92.50");

        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
        await ShowAsync(rest, "93.50");
        // Every update once, in order; a follower may first have shown the cached balance, before the leader's snapshot.
        string[] updates = ["100.00", "90.00", "92.50", "93.50"];
        foreach (var tab in rest)
        {
            var shown = await tab.EvaluateAsync<string[]>("() => h.received[0]");
            Assert.Equal(updates, shown.Length == updates.Length + 1 && shown[0] == "100.00" ? shown[1..] : shown);
        }
        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));
        Assert.Equal(1, await SocketsOpenedAsync(rest));
    }

    [Fact]
    public async Task WhenTheLeaderTabCrashesAnotherTakesOver()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 3);
        await ShowAsync(tabs, "100.00");

        // The leader's renderer dies without running any page code: only the browser can free its lock.
        var crashed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tabs[0].Crash += (_, _) => crashed.TrySetResult();
        var cdp = await context.NewCDPSessionAsync(tabs[0]);
        var clock = Stopwatch.StartNew();
        _ = cdp.SendAsync("Page.crash").ContinueWith(t => t.Exception, TaskScheduler.Default); // never answers
        await crashed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var rest = tabs.Skip(1).ToList();
        await Task.WhenAny(rest.Select(t => t.WaitForAsync("() => h.service.isLeader && h.authOks.length === 1")));
        output.WriteLine($"takeover after a crash: {clock.ElapsedMilliseconds} ms from the crash to the new leader's auth_ok");

        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "1.00", currency = "USD" });
        await ShowAsync(rest, "99.00");
        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));
    }

    [Fact]
    public async Task TwelveTabsStillHoldOneSocketAndNoneIsTurnedAway()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 12);

        await ShowAsync(tabs, "100.00");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "0.01", currency = "USD" });
        await ShowAsync(tabs, "99.99");

        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));
        Assert.Equal(1, await SocketsOpenedAsync(tabs));
        foreach (var tab in tabs) Assert.DoesNotContain(4004, await tab.EvaluateAsync<int[]>("() => h.closes"));
    }

    [Fact]
    public async Task ThreeTabsThroughSeveralTokenLifetimesSpendEachRefreshTokenOnce()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:04"));
        var alice = await app.LoginAsync("alice");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 3);
        await ShowAsync(tabs, "100.00");

        // Two refreshes (a 4 s token is refreshed 1 s before it ends), then a new leader takes the refreshing over.
        // The leader closes between refreshes (a leader closed mid-refresh is the test below: the server's refresh
        // grace covers it).
        await tabs[0].WaitForAsync("() => h.tokenCalls.length >= 2 && h.authOks.length >= 3 && h.service._tokenPromise === null", timeout: 15_000);
        await tabs[0].CloseAsync();
        var rest = tabs.Skip(1).ToList();
        await Task.WhenAny(rest.Select(t => t.WaitForAsync("() => h.service.isLeader && h.tokenCalls.length >= 2", timeout: 15_000)));

        var op = await app.LoginAsync("operator");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "7.00", currency = "USD" });
        await ShowAsync(rest, "93.00");
        var spent = await rest[0].EvaluateAsync<string[]>("() => h.spent()");
        Assert.True(spent.Length >= 4, $"{spent.Length} refreshes");
        Assert.Equal(spent.Length, spent.Distinct().Count());
        foreach (var tab in rest)
        {
            Assert.DoesNotContain(4503, await tab.EvaluateAsync<int[]>("() => h.closes"));
            Assert.DoesNotContain("unauthorized", await tab.EvaluateAsync<string[]>("() => h.statuses"));
        }
        // Every tab holds the newest token, so whichever leads next presents the newest refresh token's access token.
        var tokens = await Task.WhenAll(rest.Select(t => t.EvaluateAsync<string>("() => h.service.token")));
        Assert.Single(tokens.Distinct());
    }

    // The window the client cannot close alone: the leader's refresh reached the server (which rotated the token) but
    // the tab closed before the answer was stored. The next leader presents the spent token; the server's refresh
    // grace (Auth:RefreshReuseGrace) takes that for the lost answer it is, so the login goes on.
    [Fact]
    public async Task ALeaderClosedWhileItsRefreshIsInFlightDoesNotEndTheLogin()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:04"));
        var alice = await app.LoginAsync("alice");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 3);
        await ShowAsync(tabs, "100.00");
        var leader = (await Task.WhenAll(tabs.Select(async t => (Tab: t, Leads: await t.EvaluateAsync<bool>("() => h.service.isLeader"))))).Single(x => x.Leads).Tab;

        var rotated = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await leader.RouteAsync("**/api/auth/refresh", async route =>
        {
            var answer = await route.FetchAsync(); // the server spends the token and rotates it...
            Assert.Equal(200, answer.Status);
            rotated.TrySetResult(); // ...and the answer never reaches the page
        });
        await rotated.Task.WaitAsync(TimeSpan.FromSeconds(15));
        await leader.CloseAsync();
        var rest = tabs.Where(t => t != leader).ToList();

        // The next leader refreshes with the spent token (the newest the tabs know) and carries on.
        await Task.WhenAny(rest.Select(t => t.WaitForAsync("() => h.service.isLeader && h.tokenCalls.length >= 1 && h.service._tokenPromise === null", timeout: 15_000)));
        var op = await app.LoginAsync("operator");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "3.00", currency = "USD" });
        await ShowAsync(rest, "97.00");
        foreach (var tab in rest)
        {
            Assert.DoesNotContain(4503, await tab.EvaluateAsync<int[]>("() => h.closes"));
            Assert.DoesNotContain("unauthorized", await tab.EvaluateAsync<string[]>("() => h.statuses"));
        }
        using var http = app.Http(await rest[0].EvaluateAsync<string>("() => h.service.token"));
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode);
    }

    [Fact]
    public async Task LogoutInOneTabEndsTheServiceInEveryTabAndClearsTheCachedBalance()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 3);
        await ShowAsync(tabs, "100.00");
        Assert.NotNull(await tabs[0].EvaluateAsync<string?>("() => localStorage.getItem('balance-client:' + h.service.userId)"));

        await tabs[2].EvaluateAsync("() => h.service.logout()"); // a follower: the leader must hear it
        await AllAsync(tabs, "() => h.service.status === 'unauthorized' && h.loginRequired.includes('logged_out')");

        Assert.Equal(0, await BrowserKit.ServerSocketsAsync(app, 0));
        Assert.Null(await tabs[0].EvaluateAsync<string?>("() => localStorage.getItem('balance-client:' + h.service.userId)"));
        foreach (var tab in tabs) Assert.Null(await tab.EvaluateAsync<string?>("() => h.service.getBalance()"));
    }

    [Fact]
    public async Task WhenTheServerEndsTheLoginEveryTabShowsTheLeadersErrorAndAsksForALogin()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 3);
        await ShowAsync(tabs, "100.00");

        // The login ends elsewhere (another device logs it out): the server closes the leader's socket with 4503.
        using var http = app.Http(alice.AccessToken);
        var response = await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = alice.RefreshToken });
        Assert.Equal(System.Net.HttpStatusCode.NoContent, response.StatusCode);

        await AllAsync(tabs, "() => h.service.status === 'unauthorized' && h.loginRequired.length === 1");
        foreach (var tab in tabs)
        {
            Assert.Equal("session_revoked", await tab.EvaluateAsync<string>("() => h.service.error.code")); // the server's error frame, relayed
            Assert.Equal(4503, await tab.EvaluateAsync<int>("() => h.service.error.closeCode"));
            Assert.Equal(["session_revoked"], await tab.EvaluateAsync<string[]>("() => h.loginRequired"));
            Assert.Contains(await tab.EvaluateAsync<string[]>("() => h.errors"), e => e.StartsWith("session_revoked"));
        }
        Assert.Equal(1, await SocketsOpenedAsync(tabs)); // and nobody retried
    }

    [Fact]
    public async Task WithoutWebLocksOrWhenTurnedOffEveryTabHasItsOwnSocket()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        // An old browser or a webview: no navigator.locks.
        await using var old = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var oldTabs = await OpenTabsAsync(old, alice, 2, "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined })");
        await using var optedOut = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var optedOutTabs = await OpenTabsAsync(optedOut, alice, 2, options: new { shareAcrossTabs = false });
        var all = oldTabs.Concat(optedOutTabs).ToList();

        await ShowAsync(all, "100.00");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "3.00", currency = "USD" });
        await ShowAsync(all, "103.00");

        Assert.Equal(4, await BrowserKit.ServerSocketsAsync(app, 4));
        Assert.All(await Task.WhenAll(all.Select(t => t.EvaluateAsync<int>("() => h.sockets"))), n => Assert.Equal(1, n));
    }
}
