using System.Net.Http.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// Ways the first client got stuck or misbehaved, each reproduced in Chromium against the real service.
[Collection(BrowserCollection.Name)]
public sealed class BrowserDefectTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private async Task<IPage> OpenAsync(BalanceApplication app, string? initScript = null)
    {
        var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var page = await BrowserKit.NewPageAsync(context, output);
        if (initScript is not null) await page.AddInitScriptAsync(initScript);
        await page.GotoAsync("/__test/pages/client.html");
        await page.WaitForAsync("() => window.h?.ready");
        return page;
    }

    private static Task StartAsync(IPage page, Login login, string options, string tokenPlan = "[]") =>
        page.EvaluateAsync($"([token, refreshToken]) => {{ h.tokenPlan = {tokenPlan}; startClient({{ token, refreshToken, options: {options} }}); }}",
            new[] { login.AccessToken, login.RefreshToken });

    [Fact]
    public async Task A4001ThatJoinsARefreshWhichThenFailsStillEndsConnected()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:04"));
        var alice = await app.LoginAsync("alice");
        var page = await OpenAsync(app);
        await using var pageContext = page.Context;
        // The refresh ahead of expiry (at 3 s) hangs past the token's end (4 s, the server's 4001) and then fails:
        // the 4001's request for a token joins it and gets that failure.
        await StartAsync(page, alice, "{ initialDelay: 100, maxDelay: 1000 }", "[{ delay: 2500, fail: 'network' }]");
        await page.WaitForAsync("() => h.service.status === 'connected'");

        await page.WaitForAsync("() => h.closes.includes(4001) && h.tokenCalls.length >= 2 && h.service.status === 'connected' && h.authOks.length >= 2",
            timeout: 15_000);
        var op = await app.LoginAsync("operator");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "4.00", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '96.00'");

        Assert.Equal("refresh", (await page.EvaluateAsync<string[]>("() => h.tokenCalls"))[0]);
        Assert.Contains("token_refresh_failed", string.Join(",", await page.EvaluateAsync<string[]>("() => h.errors")));
        Assert.DoesNotContain("unauthorized", await page.EvaluateAsync<string[]>("() => h.statuses"));
    }

    [Fact]
    public async Task ANetworkErrorFromGetTokenIsRetriedAndOnlyARefusalEndsTheSession()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:03"));
        var alice = await app.LoginAsync("alice");
        var page = await OpenAsync(app);
        await using var pageContext = page.Context;
        // refreshAhead: false lets the token run out, so every new token is asked for with 'expired'.
        await StartAsync(page, alice, "{ initialDelay: 100, maxDelay: 1000, refreshAhead: false }", "[{ fail: 'network' }]");

        await page.WaitForAsync("() => h.tokenCalls.length >= 2 && h.service.status === 'connected' && h.authOks.length >= 2", timeout: 15_000);
        Assert.Equal(["expired", "expired"], (await page.EvaluateAsync<string[]>("() => h.tokenCalls"))[..2]);
        Assert.DoesNotContain("unauthorized", await page.EvaluateAsync<string[]>("() => h.statuses"));
        Assert.Empty(await page.EvaluateAsync<string[]>("() => h.loginRequired"));

        // The next expiry meets a refusal (the refresh endpoint's 401): that, and only that, sends the user to log in.
        await page.EvaluateAsync("() => { h.tokenPlan = [{ fail: 401 }]; }");
        await page.WaitForAsync("() => h.service.status === 'unauthorized'", timeout: 15_000);
        Assert.Equal(["token_refused"], await page.EvaluateAsync<string[]>("() => h.loginRequired"));
        Assert.Equal(401, await page.EvaluateAsync<int>("() => h.service.error.status"));
    }

    [Fact]
    public async Task ADeviceClockAnHourFastRefreshesOncePerIntervalNotInALoop()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:05"));
        var alice = await app.LoginAsync("alice");
        // Only this page's clock is wrong; the service and its tokens keep real time.
        var page = await OpenAsync(app, "(() => { const now = Date.now; Date.now = () => now() + 3600_000; })()");
        await using var pageContext = page.Context;
        await StartAsync(page, alice, "{ initialDelay: 100, maxDelay: 1000 }");

        // The first token looks expired to this clock and is replaced at once; the next request waits for the
        // refresh, a quarter lifetime before the new token ends (about 3.75 s), not for the next round trip.
        await page.WaitForAsync("() => h.tokenCalls.length >= 2", timeout: 15_000);
        double gap = await page.EvaluateAsync<double>("() => h.tokenTimes[1] - h.tokenTimes[0]");
        Assert.True(gap > 2000, $"the second token request came {gap:F0} ms after the first");
        Assert.Equal(["expired", "refresh"], (await page.EvaluateAsync<string[]>("() => h.tokenCalls"))[..2]);
        await page.WaitForAsync("() => h.service.status === 'connected'");
        var op = await app.LoginAsync("operator");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.25", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '101.25'");

        Assert.InRange(await page.EvaluateAsync<int>("() => h.tokenCalls.length"), 2, 3);
        Assert.DoesNotContain(1008, await page.EvaluateAsync<int[]>("() => h.closes"));
        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.sockets"));
    }

    [Fact]
    public async Task AComponentMountingWithAnOlderTokenDoesNotDowngradeTheSharedService()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var first = await app.LoginAsync("alice");
        await Task.Delay(TimeSpan.FromSeconds(1.1)); // iat and exp are in whole seconds
        using var http = app.Http();
        var refreshed = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = first.RefreshToken });
        string newer = (await refreshed.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("access_token").GetString()!;
        var page = await OpenAsync(app);
        await using var pageContext = page.Context;

        await page.EvaluateAsync("token => startShared({ token })", newer);
        await page.WaitForAsync("() => h.service.status === 'connected'");
        // A component rendered with the token it was first given mounts now, and another hands it to updateToken.
        bool kept = await page.EvaluateAsync<bool>(@"async ([older, newer]) => {
            const { acquireBalanceService } = await import('/balance-client.js');
            const lease = acquireBalanceService(location.origin.replace(/^http/, 'ws'), older);
            lease.service.updateToken(older);
            return lease.service === h.service && h.service.token === newer;
        }", new[] { first.AccessToken, newer });

        Assert.True(kept, "the shared service went back to the older token");
        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.auths"));
    }

    [Fact]
    public async Task BalancesThatAreNegativeOrFinerThanTheCurrencyAreRefused()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await OpenAsync(app);
        await using var pageContext = page.Context;
        await StartAsync(page, alice, "{}");
        await page.WaitForAsync("() => h.received[0].at(-1) === '100.00'");

        var verdicts = await page.EvaluateAsync<bool[]>(@"async () => {
            const { isValidBalance } = await import('/balance-client.js');
            const msg = (balance, currency) => ({ type: 'balance', user_id: h.service.userId, balance, currency, version: 9 });
            return [msg('12.50', 'USD'), msg('0.00', 'USD'), msg('1200', 'JPY'), msg('0.00010000', 'BTC'), msg('7', 'EUR'),
                    msg('-5.00', 'USD'), msg('1.005', 'USD'), msg('12.5', 'JPY'), msg('0.000000001', 'BTC'), msg('-0', 'JPY')].map(isValidBalance);
        }");
        Assert.Equal([true, true, true, true, true, false, false, false, false, false], verdicts);

        // Through the client: a negative balance from the wire reaches no listener and is reported.
        bool applied = await page.EvaluateAsync<bool>(
            "() => h.service._apply({ type: 'balance', user_id: h.service.userId, balance: '-10.00', currency: 'USD', version: 1000 }, 'socket')");
        Assert.False(applied);
        Assert.Equal(["100.00"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
        Assert.Contains(await page.EvaluateAsync<string[]>("() => h.errors"), e => e.StartsWith("bad_balance"));
    }
}
