using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// balance-client.js against the real service: the happy path and the token lifecycle.
[Collection(BrowserCollection.Name)]
public sealed class BrowserClientTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private const string FastOptions = "{ initialDelay: 100, maxDelay: 1000, heartbeatTimeout: 4000, pollInterval: 300 }";

    private async Task<IPage> StartAsync(BalanceApplication app, Login login, bool withRefresh = true, string options = FastOptions, int listeners = 1)
    {
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/client.html");
        await page.WaitForAsync("() => window.h?.ready");
        await page.EvaluateAsync($"([token, refreshToken, listeners]) => startClient({{ token, refreshToken, listeners, options: {options} }})",
            new object?[] { login.AccessToken, withRefresh ? login.RefreshToken : null, listeners });
        return page;
    }

    [Fact]
    public async Task SnapshotAndLiveUpdatesReachTwoListenersOverOneSocket()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var page = await StartAsync(app, alice, listeners: 2);
        await using var pageContext = page.Context; // closed before the app: no client retries after the test

        await page.WaitForAsync("() => h.service.status === 'connected' && h.received.every(r => r.at(-1) === '100.00')");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        await page.WaitForAsync("() => h.received.every(r => r.at(-1) === '90.00')");
        // Heartbeats are answered: after a few of the server's 1 s pings the socket is still the first one.
        await page.WaitForAsync("() => h.pings >= 2 && h.pongs >= 2");

        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.sockets"));
        Assert.Equal(["100.00", "90.00"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
        Assert.Equal(["100.00", "90.00"], await page.EvaluateAsync<string[]>("() => h.received[1]"));
        Assert.Equal(["connecting", "connected"], await page.EvaluateAsync<string[]>("() => h.statuses"));
        Assert.Equal("90.00", await page.EvaluateAsync<string>(
            "() => JSON.parse(localStorage.getItem('balance-client:' + h.service.userId)).USD.balance"));
    }

    [Fact]
    public async Task StaleAndDuplicateVersionsAreDroppedAndTheCachedBalanceShowsBeforeConnecting()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await StartAsync(app, alice);
        await using var pageContext = page.Context; // closed before the app: no client retries after the test
        await page.WaitForAsync("() => h.received[0].at(-1) === '100.00'");

        // Through the socket's own message path: a newer version, then an older one, the same one again, and garbage.
        await page.EvaluateAsync(@"() => {
            const v = h.service.getBalance().version, user_id = h.service.userId;
            const msg = (version, balance) => ({ type: 'balance', user_id, balance, currency: 'USD', version });
            deliver(msg(v + 2, '80.00')); deliver(msg(v + 1, '70.00')); deliver(msg(v + 2, '81.00')); deliver({ type: 'balance', balance: 'lots' });
        }");
        // dispatchEvent runs the client's handler at once and listeners are not debounced here: whatever the client
        // let through has reached the listener by now.
        Assert.Equal(["100.00", "80.00"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
        Assert.Equal("80.00", await page.EvaluateAsync<string>("() => h.service.getBalance().balance"));

        // A new page of the same user shows the cached balance at once, before its socket has said anything.
        await page.EvaluateAsync("() => h.service.disconnect()");
        var cached = await page.EvaluateAsync<string>(@"async token => {
            const { BalanceWebSocketService } = await import('/balance-client.js');
            const offline = new BalanceWebSocketService('ws://127.0.0.1:9', token);
            return new Promise(resolve => offline.addListener(b => resolve(b.balance + ' ' + offline.status)));
        }", alice.AccessToken);
        Assert.Equal("80.00 closed", cached);
    }

    [Fact]
    public async Task TheTokenIsRefreshedBeforeItExpiresOnTheOpenSocket()
    {
        // 8 s tokens: the client refreshes a quarter of the lifetime ahead, 2 s, time enough on a loaded box for the
        // refresh and the new auth to land before the server's 250 ms expiry check closes the socket.
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:08"));
        var alice = await app.LoginAsync("alice");
        var page = await StartAsync(app, alice);
        await using var pageContext = page.Context; // closed before the app: no client retries after the test
        await page.WaitForAsync("() => h.service.status === 'connected'");

        // Past the first token's expiry: without the refresh the server would have closed the socket with 4001.
        await page.WaitForAsync("() => h.tokenCalls.length >= 1 && h.authOks.length >= 2", timeout: 15000);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var op = await app.LoginAsync("operator"); // short-lived tokens: the operator's too
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '105.00'");

        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.sockets"));
        Assert.All(await page.EvaluateAsync<string[]>("() => h.tokenCalls"), reason => Assert.Equal("refresh", reason));
        Assert.Equal(["connecting", "connected"], await page.EvaluateAsync<string[]>("() => h.statuses"));
        var expiries = await page.EvaluateAsync<string[]>("() => h.authOks");
        Assert.True(DateTimeOffset.Parse(expiries[^1]) > DateTimeOffset.Parse(expiries[0]), string.Join(", ", expiries));
    }

    [Fact]
    public async Task AnExpiredTokenClosedWith4001IsReplacedAndTheSocketComesBack()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:03"));
        var alice = await app.LoginAsync("alice");
        // refreshAhead: false lets the token run out on the open socket, as when a laptop sleeps through the refresh.
        var page = await StartAsync(app, alice, options: "{ initialDelay: 100, maxDelay: 1000, refreshAhead: false }");
        await using var pageContext = page.Context; // closed before the app: no client retries after the test
        await page.WaitForAsync("() => h.tokenCalls.includes('expired') && h.sockets === 2 && h.service.status === 'connected'");
        var op = await app.LoginAsync("operator"); // short-lived tokens: the operator's too
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "1.50", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '98.50'");

        // On a slow machine the token may already be spent when the first socket authenticates: 4001 then comes
        // at auth rather than on the open socket, and the recovery is the same.
        var statuses = await page.EvaluateAsync<string[]>("() => h.statuses");
        Assert.Equal(["reconnecting", "connected"], statuses[^2..]);
        Assert.DoesNotContain("unauthorized", statuses);
        Assert.Equal(["expired"], await page.EvaluateAsync<string[]>("() => h.tokenCalls"));
        Assert.Equal(["100.00", "98.50"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
    }

    [Fact]
    public async Task AnInvalidTokenEndsUnauthorizedWithoutARetryLoop()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await StartAsync(app, alice with { AccessToken = alice.AccessToken[..^4] + "AAAA" });
        await using var pageContext = page.Context; // closed before the app: no client retries after the test

        await page.WaitForAsync("() => h.service.status === 'unauthorized'");
        await Task.Delay(TimeSpan.FromSeconds(1.5));

        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.sockets"));
        Assert.Equal(["connecting", "unauthorized"], await page.EvaluateAsync<string[]>("() => h.statuses"));
        Assert.Equal("invalid_token", await page.EvaluateAsync<string>("() => h.service.error.code"));
        Assert.Equal(4501, await page.EvaluateAsync<int>("() => h.service.error.closeCode"));
        Assert.Empty(await page.EvaluateAsync<string[]>("() => h.received[0]"));
    }

    [Fact]
    public async Task DebounceHandsListenersOnlyTheNewestOfABurst()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var page = await StartAsync(app, alice, options: "{ debounce: 2000 }");
        await using var pageContext = page.Context;
        await page.WaitForAsync("() => h.received[0].length === 1", timeout: 5000);

        foreach (var amount in new[] { "1.00", "2.00", "3.00" })
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount, currency = "USD" });
        await page.WaitForAsync("() => h.service.getBalance().balance === '94.00'"); // known at once...
        Assert.Single(await page.EvaluateAsync<string[]>("() => h.received[0]"));    // ...told later, once
        await page.WaitForAsync("() => h.received[0].length === 2", timeout: 5000);

        await Task.Delay(TimeSpan.FromSeconds(0.5));
        Assert.Equal(["100.00", "94.00"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
    }
}
