using System.Net.Http.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// How a session ends and what it leaves behind; the guide's reconnect members; the debug log.
[Collection(BrowserCollection.Name)]
public sealed class BrowserSessionEndTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private const string FastOptions = "{ initialDelay: 100, maxDelay: 1000, heartbeatTimeout: 4000, pollInterval: 300 }";

    private async Task<IPage> StartAsync(BalanceApplication app, Login login, string options = FastOptions)
    {
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/client.html");
        await page.WaitForAsync("() => window.h?.ready");
        await page.EvaluateAsync($"([token, refreshToken]) => startClient({{ token, refreshToken, options: {options} }})",
            new object?[] { login.AccessToken, login.RefreshToken });
        return page;
    }

    private const string Cached = "() => localStorage.getItem('balance-client:' + h.service.userId)";

    // On a shared computer the next person must not find the last player's balance in storage, however the login ended.
    [Fact]
    public async Task WhenTheServerEndsTheLoginTheCachedBalanceIsCleared()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await StartAsync(app, alice);
        await using var pageContext = page.Context;
        await page.WaitForAsync("() => h.service.status === 'connected'");
        Assert.NotNull(await page.EvaluateAsync<string?>(Cached));

        // Logged out on another device: the server closes this socket with 4503.
        using var http = app.Http(alice.AccessToken);
        var response = await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = alice.RefreshToken });
        Assert.Equal(System.Net.HttpStatusCode.NoContent, response.StatusCode);
        await page.WaitForAsync("() => h.service.status === 'unauthorized'");
        Assert.Equal(4503, await page.EvaluateAsync<int>("() => h.service.error.closeCode"));
        Assert.Null(await page.EvaluateAsync<string?>(Cached));
        Assert.Null(await page.EvaluateAsync<string?>("() => h.service.getBalance()"));
    }

    [Fact]
    public async Task WhenTheRefreshIsRefusedTheCachedBalanceIsCleared()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings(tokenLifetime: "00:00:04"));
        var alice = await app.LoginAsync("alice");
        var page = await StartAsync(app, alice);
        await using var pageContext = page.Context;
        await page.WaitForAsync("() => h.service.status === 'connected'");
        await page.EvaluateAsync("() => h.tokenPlan.push({ fail: 401 })"); // the refresh endpoint says no
        await page.WaitForAsync("() => h.service.status === 'unauthorized'", timeout: 15_000);
        Assert.Equal("token_refused", await page.EvaluateAsync<string>("() => h.service.error.code"));
        Assert.Null(await page.EvaluateAsync<string?>(Cached));
    }

    // Code written against the guide overrides fallbackToRestAPI() and sets maxReconnectAttempts / reconnectDelay:
    // the override is called when polling starts, and the limit stops the socket attempts (REST polling goes on).
    [Fact]
    public async Task TheGuidesReconnectMembersAndFallbackToRestApiStillWork()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/client.html");
        await using var pageContext = page.Context;
        await page.WaitForAsync("() => window.h?.ready");
        // Nothing listens on this port: every socket attempt fails at once; REST is the service's.
        string deadSocket = $"ws://127.0.0.1:{BrowserKit.FreePort()}";
        await page.EvaluateAsync("([base, token]) => startLegacy({ base, token, maxReconnectAttempts: 3, options: { fallbackAfter: 2, pollInterval: 200, storage: null } })",
            new[] { deadSocket, alice.AccessToken });

        await page.WaitForAsync("() => h.service.status === 'fallback' && h.service.getBalance()?.balance === '100.00'");
        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.fallbacks"));
        Assert.Equal(50, await page.EvaluateAsync<int>("() => h.service.reconnectDelay"));
        await page.WaitForAsync("() => h.sockets === 3 && h.service.reconnectAttempts === 3");
        await Task.Delay(1500); // the backoff is 50-200 ms: more attempts would have been made by now
        Assert.Equal(3, await page.EvaluateAsync<int>("() => h.sockets"));
        Assert.Equal("fallback", await page.EvaluateAsync<string>("() => h.service.status"));
        Assert.Equal(1, await page.EvaluateAsync<int>("() => h.fallbacks"));
    }

    [Fact]
    public async Task TheDebugOptionLogsStateChanges()
    {
        await using var app = new BalanceApplication(BrowserKit.Settings());
        var alice = await app.LoginAsync("alice");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/client.html");
        await using var pageContext = page.Context;
        var logged = new List<string>();
        page.Console += (_, message) => { if (message.Type == "debug") lock (logged) logged.Add(message.Text); };
        await page.WaitForAsync("() => window.h?.ready");
        await page.EvaluateAsync("token => startClient({ token, options: { debug: true } })", alice.AccessToken);
        await page.WaitForAsync("() => h.service.status === 'connected'");
        await page.EvaluateAsync("() => h.service.disconnect()");
        // The page's console reaches the test as events, in their own time: wait for both lines.
        bool Logged(string start) { lock (logged) return logged.Any(l => l.StartsWith(start, StringComparison.Ordinal)); }
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!(Logged("[balance-client] status connecting -> connected") && Logged("[balance-client] status connected -> closed")))
        {
            if (waited.Elapsed > Patience.Long) lock (logged) Assert.Fail("the debug lines never came: " + string.Join(" | ", logged));
            await Task.Delay(20);
        }

        // Off by default.
        var quiet = await BrowserKit.NewPageAsync(page.Context, output, "/__test/pages/client.html");
        int debugLines = 0;
        quiet.Console += (_, message) => { if (message.Type == "debug") Interlocked.Increment(ref debugLines); };
        await quiet.WaitForAsync("() => window.h?.ready");
        await quiet.EvaluateAsync("token => startClient({ token })", alice.AccessToken);
        await quiet.WaitForAsync("() => h.service.status === 'connected'");
        Assert.Equal(0, debugLines);
    }
}
