using System.Globalization;
using System.Net.Http.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// Chromium as users run it: Playwright turns the back/forward cache off by default (--disable-back-forward-cache);
// this browser keeps it on, so a page the user navigates away from may be kept, frozen, for minutes.
public sealed class BackForwardCacheChromiumFixture : IAsyncLifetime
{
    private IPlaywright? _playwright;
    public IBrowser Browser { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumFixture.ExecutablePath,
            Headless = true,
            IgnoreDefaultArgs = ["--disable-back-forward-cache"],
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebSockets"],
        });
    }

    public async Task DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright?.Dispose();
    }
}

// The page lifecycle: a leader tab that goes into the back/forward cache or is frozen must not keep the other tabs
// on a socket nobody runs; and 'connected' / 'fallback' mean balances are really arriving.
[Collection(BrowserCollection.Name)]
public sealed class BrowserLifecycleTests(ChromiumFixture chromium, BackForwardCacheChromiumFixture bfcache, ITestOutputHelper output)
    : IClassFixture<BackForwardCacheChromiumFixture>
{
    // tabHeartbeat 500 ms: a follower counts the leader quiet after 1.5 s (a margin for a loaded 2-core box).
    private static readonly object FastOptions = new { initialDelay = 100, maxDelay = 1000, heartbeatTimeout = 4000, tabHeartbeat = 500 };

    private async Task<List<IPage>> OpenTabsAsync(IBrowserContext context, Login login, int count, string? initScript = null)
    {
        var tabs = new List<IPage>();
        for (int i = 0; i < count; i++)
        {
            var page = await BrowserKit.NewPageAsync(context, output, name: $"tab {i + 1}");
            if (initScript is not null) await page.AddInitScriptAsync(initScript);
            await page.GotoAsync("/__test/pages/client.html");
            await page.WaitForAsync("() => window.h?.ready");
            await page.EvaluateAsync("([token, refreshToken, options]) => startShared({ token, refreshToken, options })",
                new object?[] { login.AccessToken, i == 0 ? login.RefreshToken : null, FastOptions });
            await page.WaitForAsync("() => h.service.status === 'connected'");
            tabs.Add(page);
        }
        return tabs;
    }

    private static Task ShowAsync(IEnumerable<IPage> tabs, string balance, float timeout = BrowserKit.Timeout) =>
        Task.WhenAll(tabs.Select(t => t.WaitForAsync("b => h.service.status === 'connected' && h.service.getBalance()?.balance === b", balance, timeout)));


    private async Task<ICDPSession> LogBackForwardCacheAsync(IPage page)
    {
        var cdp = await page.Context.NewCDPSessionAsync(page);
        cdp.Event("Page.backForwardCacheNotUsed").OnEvent += (_, e) => output.WriteLine($"[bfcache not used] {e}");
        await cdp.SendAsync("Page.enable");
        return cdp;
    }

    [Fact]
    public async Task ALeaderTabKeptInTheBackForwardCacheHandsTheSocketOverAndRejoinsWhenTheUserComesBack()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var context = await BrowserKit.OpenContextAsync(bfcache.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 2);
        Assert.True(await tabs[0].EvaluateAsync<bool>("() => h.service.isLeader"));
        await ShowAsync(tabs, "100.00");
        await LogBackForwardCacheAsync(tabs[0]);

        // The leader's user follows a link; Chrome keeps the page, frozen, in case they come back.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await tabs[0].GotoAsync("/__test/pages/away.html");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        await ShowAsync([tabs[1]], "90.00", timeout: 5_000);
        output.WriteLine($"take-over: {clock.ElapsedMilliseconds} ms from the leader's navigation to the other tab showing the next update");
        Assert.True(await tabs[1].EvaluateAsync<bool>("() => h.service.isLeader"));
        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));

        // Back: the same page, restored with its JavaScript (not loaded again), follows the new leader.
        await tabs[0].GoBackAsync(new() { WaitUntil = WaitUntilState.Commit }); // a restored page fires no load event
        Assert.Equal(1, await tabs[0].EvaluateAsync<int>("() => h.restored"));
        await ShowAsync(tabs, "90.00");
        Assert.False(await tabs[0].EvaluateAsync<bool>("() => h.service.isLeader"));
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "5.00", currency = "USD" });
        await ShowAsync(tabs, "95.00");
        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));
        Assert.Equal(2, await tabs[0].EvaluateAsync<int>("() => h.sockets") + await tabs[1].EvaluateAsync<int>("() => h.sockets"));
    }

    // Freezing a page as Chrome does it: the freeze event, then no task of the page runs until it resumes. Headless
    // Chromium ignores CDP's Page.setWebLifecycleState (checked with 156: timers keep firing, no freeze event, page
    // stays visible), so the event is dispatched and the page's JavaScript is then stopped in the debugger, which
    // holds its timers, socket and channel messages exactly as a frozen page's.
    private static async Task<ICDPSession> FreezeAsync(IPage page, bool withEvent)
    {
        if (withEvent) await page.EvaluateAsync("() => document.dispatchEvent(new Event('freeze'))");
        var cdp = await page.Context.NewCDPSessionAsync(page);
        await cdp.SendAsync("Debugger.enable");
        await cdp.SendAsync("Debugger.pause");
        return cdp;
    }

    private static async Task ResumeAsync(IPage page, ICDPSession cdp, bool withEvent)
    {
        // Disabling the debugger resumes a paused page, and cancels the pause of a page that ran nothing since
        // (a leader that let go on the freeze event has no timer left to be stopped in).
        await cdp.SendAsync("Debugger.disable");
        if (withEvent) await page.EvaluateAsync("() => document.dispatchEvent(new Event('resume'))");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // a browser that freezes without a freeze event (Safari has none): the heartbeat notices
    public async Task AFrozenLeaderTabHandsTheSocketOverAndFollowsWhenItResumes(bool freezeEvent)
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 2);
        Assert.True(await tabs[0].EvaluateAsync<bool>("() => h.service.isLeader"));
        await ShowAsync(tabs, "100.00");

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var cdp = await FreezeAsync(tabs[0], freezeEvent);
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        await ShowAsync([tabs[1]], "90.00", timeout: 5_000);
        output.WriteLine($"take-over: {clock.ElapsedMilliseconds} ms from the freeze (event: {freezeEvent}) to the other tab showing the next update");
        Assert.True(await tabs[1].EvaluateAsync<bool>("() => h.service.isLeader"));

        await ResumeAsync(tabs[0], cdp, freezeEvent);
        await tabs[0].WaitForAsync("() => !h.service.isLeader");
        await ShowAsync(tabs, "90.00");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "2.50", currency = "USD" });
        await ShowAsync(tabs, "92.50");
        Assert.Equal(1, await BrowserKit.ServerSocketsAsync(app, 1));
    }

    [Fact]
    public async Task AFollowerStopsSayingConnectedWhenTheLeaderGoesQuietAndNoTabCanTakeOver()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        // The follower is a background tab (it does not take the lock over); the leader freezes without an event.
        var tabs = await OpenTabsAsync(context, alice, 2);
        await tabs[1].EvaluateAsync("() => Object.defineProperty(document, 'visibilityState', { get: () => 'hidden', configurable: true })");
        await ShowAsync(tabs, "100.00");

        var cdp = await FreezeAsync(tabs[0], withEvent: false);
        await tabs[1].WaitForAsync("() => h.service.status === 'reconnecting'", timeout: 5_000);
        Assert.False(await tabs[1].EvaluateAsync<bool>("() => h.service.isLeader"));

        // The leader runs again: the follower hears its heartbeat and shows its status again.
        await ResumeAsync(tabs[0], cdp, withEvent: false);
        await tabs[1].WaitForAsync("() => h.service.status === 'connected'");
    }

    // A leader stopped by the server (4503) beats no more: that silence is not a frozen leader, and no follower may
    // take the socket over and knock again with the dead token.
    [Fact]
    public async Task WhenTheServerEndsTheLoginTheSilentLeaderIsNotTakenOver()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var tabs = await OpenTabsAsync(context, alice, 2);
        await ShowAsync(tabs, "100.00");

        using var http = app.Http(alice.AccessToken);
        var response = await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = alice.RefreshToken });
        Assert.Equal(System.Net.HttpStatusCode.NoContent, response.StatusCode);
        await Task.WhenAll(tabs.Select(t => t.WaitForAsync("() => h.service.status === 'unauthorized'")));
        await Task.Delay(3500); // over twice the three missed beats (1.5 s) after which a follower takes over
        var leaders = await Task.WhenAll(tabs.Select(t => t.EvaluateAsync<bool>("() => h.service.isLeader")));
        Assert.Equal([true, false], leaders);
        Assert.Equal(1, await tabs[0].EvaluateAsync<int>("() => h.sockets") + await tabs[1].EvaluateAsync<int>("() => h.sockets"));
        foreach (var tab in tabs) Assert.Equal("unauthorized", await tab.EvaluateAsync<string>("() => h.service.status"));
    }

    // auth_ok alone is not 'connected': the balances must be flowing. The balance frames are held back here.
    [Fact]
    public async Task ConnectedMeansTheFirstBalanceArrivedNotJustAuthOk()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/client.html");
        await using var pageContext = page.Context;
        var held = new List<string>();
        IWebSocketRoute? toPage = null;
        bool release = false;
        await page.RouteWebSocketAsync("**/ws/balance/player", ws =>
        {
            toPage = ws;
            var server = ws.ConnectToServer();
            server.OnMessage(frame =>
            {
                lock (held)
                {
                    if (!release && frame.Text?.Contains("\"type\":\"balance\"", StringComparison.Ordinal) == true) held.Add(frame.Text);
                    else ws.Send(frame.Text!);
                }
            });
        });
        await page.WaitForAsync("() => window.h?.ready");
        await page.EvaluateAsync("token => startClient({ token, options: { storage: null } })", alice.AccessToken);
        await page.WaitForAsync("() => h.authOks.length === 1");
        await Task.Delay(1000);
        Assert.Equal("connecting", await page.EvaluateAsync<string>("() => h.service.status"));
        Assert.DoesNotContain("connected", await page.EvaluateAsync<string[]>("() => h.statuses"));

        lock (held)
        {
            release = true;
            foreach (var frame in held) toPage!.Send(frame);
        }
        await page.WaitForAsync("() => h.service.status === 'connected' && h.service.getBalance()?.balance === '100.00'");
    }

    // 'fallback' promises balances from REST: not while the polls fail too.
    [Fact]
    public async Task FallbackIsShownOnlyWhileRestPollingWorks()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/client.html");
        await using var pageContext = page.Context;
        await page.RouteWebSocketAsync("**/ws/balance/player", ws => _ = ws.CloseAsync(new() { Code = 1011, Reason = "down" }));
        int polls = 0;
        bool restUp = false;
        await page.RouteAsync("**/api/balance?*", async route =>
        {
            Interlocked.Increment(ref polls);
            if (Volatile.Read(ref restUp)) await route.ContinueAsync();
            else await route.FulfillAsync(new() { Status = 503, Body = "{}" });
        });
        await page.WaitForAsync("() => window.h?.ready");
        await page.EvaluateAsync("token => startClient({ token, options: { storage: null, initialDelay: 50, maxDelay: 200, fallbackAfter: 1, pollInterval: 200 } })", alice.AccessToken);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Volatile.Read(ref polls) < 3 && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.True(Volatile.Read(ref polls) >= 3, $"{polls} polls");
        Assert.DoesNotContain("fallback", await page.EvaluateAsync<string[]>("() => h.statuses"));
        Assert.Equal("reconnecting", await page.EvaluateAsync<string>("() => h.service.status"));

        Volatile.Write(ref restUp, true);
        await page.WaitForAsync("() => h.service.status === 'fallback' && h.service.getBalance()?.balance === '100.00'");
    }
}
