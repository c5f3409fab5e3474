using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// balance-client.js when the service goes away: a restart, and a network that blocks the socket path.
[Collection(BrowserCollection.Name)]
public sealed class BrowserResilienceTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static Dictionary<string, string?> Settings() => new() { ["Balance:Socket:HeartbeatInterval"] = "00:00:01" };

    // Socket routes go in before the page loads: Playwright's routing replaces window.WebSocket, and the
    // harness's counting wrapper must wrap that, not be replaced by it.
    private async Task<IPage> OpenAsync(BalanceApplication app, Func<IPage, Task>? route = null)
    {
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output);
        if (route is not null) await route(page);
        await page.GotoAsync("/__test/pages/client.html");
        await page.WaitForAsync("() => window.h?.ready");
        return page;
    }

    private static Task StartAsync(IPage page, Login login) =>
        page.EvaluateAsync("([token, refreshToken]) => startClient({ token, refreshToken, options: { initialDelay: 100, maxDelay: 800, heartbeatTimeout: 4000, pollInterval: 300 } })",
            new[] { login.AccessToken, login.RefreshToken });

    [Fact]
    public async Task AfterAServerRestartTheClientReconnectsAndShowsTheUpdatePostedMeanwhile()
    {
        int port = BrowserKit.FreePort();
        string database = Path.Combine(Path.GetTempPath(), "balance-tests", Guid.NewGuid().ToString("N"), "balance.db");
        IPage? page = null;
        try
        {
            Login alice;
            // The service keeps accepting sockets while it shuts down, so a client that reconnects within
            // milliseconds of the 1001 can hold the old instance open for the host's whole shutdown timeout
            // (30 s); a short one keeps this test quick and shows the client also survives that socket's abort.
            var settings = Settings();
            settings["shutdownTimeoutSeconds"] = "2";
            await using (var first = new BalanceApplication(settings, database, port))
            {
                alice = await first.LoginAsync("alice");
                page = await OpenAsync(first);
                await StartAsync(page, alice);
                await page.WaitForAsync("() => h.service.status === 'connected' && h.received[0].at(-1) === '100.00'");
            }
            await page.WaitForAsync("() => h.service.status !== 'connected'");

            await using var second = new BalanceApplication(Settings(), database, port);
            var op = await second.LoginAsync("operator");
            await second.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
            await page.WaitForAsync("() => h.service.status === 'connected' && h.received[0].at(-1) === '90.00'");

            await second.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "2.00", currency = "USD" });
            await page.WaitForAsync("() => h.received[0].at(-1) === '92.00'");
            Assert.True(await page.EvaluateAsync<int>("() => h.sockets") >= 2);
            var statuses = await page.EvaluateAsync<string[]>("() => h.statuses");
            Assert.Equal(["connecting", "connected"], statuses[..2]);
            Assert.Contains("reconnecting", statuses);
            Assert.Equal("connected", statuses[^1]);
            // The restart itself (1001) is not an error; the refused attempts while it was down may be.
            Assert.DoesNotContain(await page.EvaluateAsync<string[]>("() => h.errors"), e => e.StartsWith("server_going_away"));
        }
        finally
        {
            if (page is not null) await page.Context.CloseAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(Path.GetDirectoryName(database)!, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task ABlockedSocketPathFallsBackToPollingThenReturnsToTheSocket()
    {
        await using var app = new BalanceApplication(Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        // A proxy that refuses WebSockets: every socket to the path is closed at once; when lifted, the real server answers.
        int blocked = 1;
        var page = await OpenAsync(app, p => p.RouteWebSocketAsync("**/ws/balance/player", async ws =>
        {
            if (Volatile.Read(ref blocked) == 1) await ws.CloseAsync(new WebSocketRouteCloseOptions { Code = 1011, Reason = "blocked" });
            else ws.ConnectToServer();
        }));
        await using var pageContext = page.Context; // closed before the app: no client retries after the test
        var polls = new List<int>();
        page.Response += (_, response) =>
        {
            if (response.Url.Contains("/api/balance")) lock (polls) polls.Add(response.Status);
        };

        bool Polled(int status) { lock (polls) return polls.Contains(status); }

        await StartAsync(page, alice);
        await page.WaitForAsync("() => h.service.status === 'fallback' && h.received[0].at(-1) === '100.00'");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '90.00'");
        await page.WaitForAsync("() => h.service.status === 'fallback'");
        // The ETag spares the body while nothing changes.
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!Polled(304) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.True(Polled(304), "no 304 from GET /api/balance while polling");
        Assert.Equal("fallback", await page.EvaluateAsync<string>("() => h.service.status"));

        Volatile.Write(ref blocked, 0);
        await page.WaitForAsync("() => h.service.status === 'connected' && h.authOks.length === 1");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '95.00'");
        int pollsWhenBack;
        lock (polls) pollsWhenBack = polls.Count;
        await Task.Delay(TimeSpan.FromSeconds(1));

        lock (polls) Assert.Equal(pollsWhenBack, polls.Count); // polling stopped once the socket was back
        Assert.Equal(["100.00", "90.00", "95.00"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
        var statuses = await page.EvaluateAsync<string[]>("() => h.statuses");
        Assert.Equal(["connecting", "reconnecting", "fallback", "connected"], statuses);
    }

    [Fact]
    public async Task ASocketThatFallsSilentIsTakenForDeadAndReplaced()
    {
        await using var app = new BalanceApplication(Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        // A half-open connection: the first socket stays open in the browser but nothing passes any more.
        int connections = 0, muted = 0;
        var page = await OpenAsync(app, p => p.RouteWebSocketAsync("**/ws/balance/player", ws =>
        {
            int n = Interlocked.Increment(ref connections);
            var server = ws.ConnectToServer();
            server.OnMessage(frame => { if (n > 1 || Volatile.Read(ref muted) == 0) ws.Send(frame.Text!); });
            ws.OnMessage(frame => { if (n > 1 || Volatile.Read(ref muted) == 0) server.Send(frame.Text!); });
        }));
        await using var pageContext = page.Context;
        await page.EvaluateAsync("([token, refreshToken]) => startClient({ token, refreshToken, options: { initialDelay: 100, maxDelay: 800, heartbeatTimeout: 2000 } })",
            new[] { alice.AccessToken, alice.RefreshToken });
        await page.WaitForAsync("() => h.service.status === 'connected' && h.pings >= 1");

        Volatile.Write(ref muted, 1);
        await page.WaitForAsync("() => h.errors.some(e => e.startsWith('heartbeat_timeout')) && h.sockets === 2 && h.service.status === 'connected'");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "3.00", currency = "USD" });
        await page.WaitForAsync("() => h.received[0].at(-1) === '97.00'");
        Assert.Equal(["100.00", "97.00"], await page.EvaluateAsync<string[]>("() => h.received[0]"));
    }

    [Fact]
    public async Task OfflineShowsTheLastBalanceAndOnlineReconnectsAtOnce()
    {
        await using var app = new BalanceApplication(Settings());
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var page = await OpenAsync(app);
        await using var pageContext = page.Context;
        // A minute of backoff: only the online event can explain a quick reconnect.
        await page.EvaluateAsync("([token, refreshToken]) => startClient({ token, refreshToken, options: { initialDelay: 60000, maxDelay: 60000 } })",
            new[] { alice.AccessToken, alice.RefreshToken });
        await page.WaitForAsync("() => h.service.status === 'connected' && h.received[0].at(-1) === '100.00'");

        await page.Context.SetOfflineAsync(true);
        await page.WaitForAsync("() => h.service.status === 'offline'");
        Assert.Equal("100.00", await page.EvaluateAsync<string>("() => h.service.getBalance().balance"));
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "7.00", currency = "USD" });

        await page.Context.SetOfflineAsync(false);
        await page.WaitForAsync("() => h.service.status === 'connected' && h.received[0].at(-1) === '107.00'", timeout: 5000);
        Assert.Equal(2, await page.EvaluateAsync<int>("() => h.sockets"));
        Assert.Equal(["connecting", "connected", "offline", "connected"], await page.EvaluateAsync<string[]>("() => h.statuses"));
    }

    [Fact]
    public async Task CloseCodesDecideBetweenRetryingAndStopping()
    {
        await using var app = new BalanceApplication(Settings());
        var alice = await app.LoginAsync("alice");
        foreach (var (code, status, retries) in new[] { (1009, "closed", false), (4503, "unauthorized", false), (4500, "unauthorized", false),
                     (4004, "reconnecting", true), (4003, "reconnecting", true), (1008, "reconnecting", true) })
        {
            var page = await OpenAsync(app, p => p.RouteWebSocketAsync("**/ws/balance/player",
                ws => ws.CloseAsync(new WebSocketRouteCloseOptions { Code = code, Reason = "test" })));
            await using var pageContext = page.Context;
            await page.EvaluateAsync("([token, refreshToken]) => startClient({ token, refreshToken, options: { initialDelay: 50, maxDelay: 200, fallbackAfter: 1000 } })",
                new[] { alice.AccessToken, alice.RefreshToken });

            if (retries)
            {
                await page.WaitForAsync("() => h.sockets >= 4");
                Assert.Equal(status, await page.EvaluateAsync<string>("() => h.service.status"));
            }
            else
            {
                await page.WaitForAsync("status => h.service.status === status", status);
                await Task.Delay(TimeSpan.FromSeconds(0.5)); // ten backoff periods: time enough for a retry that should not come
                Assert.Equal((code, 1), (code, await page.EvaluateAsync<int>("() => h.sockets")));
                Assert.Equal(code, await page.EvaluateAsync<int>("() => h.service.error.closeCode"));
            }
        }
    }
}
