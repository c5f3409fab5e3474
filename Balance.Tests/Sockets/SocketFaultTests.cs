using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balance.Tests;

// Sockets under faults: peers that vanish, a database that fails a read, clients that reconnect in a loop.
public sealed class SocketFaultTests
{
    // A peer that authenticated and then went silent without a FIN: it never reads again, so it never answers a ping.
    private static async Task<ClientWebSocket> OpenSilentPeerAsync(BalanceApplication app, string accessToken)
    {
        var ws = new ClientWebSocket();
        ws.Options.KeepAliveInterval = TimeSpan.Zero; // no unsolicited pongs of its own either
        using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
        await ws.ConnectAsync(app.SocketUri, cts.Token);
        await ws.SendAsync(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = accessToken })), WebSocketMessageType.Text, true, cts.Token);
        return ws;
    }

    private static async Task<string> MetricsAsync(BalanceApplication app)
    {
        using var http = app.Http();
        return await http.GetStringAsync("/metrics");
    }

    private static async Task WaitForAsync(Func<bool> condition, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? Patience.Long);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task APeerThatStopsAnsweringPingsIsDroppedAndItsPlaceFreed()
    {
        await using var app = new BalanceApplication(new()
        {
            // A ping a second, and 5 s for its pong: the silent peer goes within ~6 s, while a reading socket whose
            // client's thread pool stalls for a second beside the parallel tests is not taken for dead.
            ["Balance:Socket:KeepAliveInterval"] = "00:00:01",
            ["Balance:Socket:KeepAliveTimeout"] = "00:00:05",
            ["Balance:Socket:MaxSocketsPerPlayer"] = "1",
        });
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        // A live guide-protocol socket that reads (and so answers pings) stays through many intervals.
        await using var live = await SocketRecorder.OpenAsync(app, bob.AccessToken);
        await live.WaitForAsync(m => m.Count > 0, "bob's snapshot");

        using var silent = await OpenSilentPeerAsync(app, alice.AccessToken);
        await WaitForAsync(() => hub.Stats.Authenticated == 2, "the silent peer to authenticate");
        await WaitForAsync(() => Volatile.Read(ref hub.Stats.DeadPeers) == 1, "the silent peer to be dropped", TimeSpan.FromSeconds(15));
        await WaitForAsync(() => Volatile.Read(ref hub.Stats.Authenticated) == 1, "the dropped socket to be released");

        // Its place under MaxSocketsPerPlayer is free again: the player's reconnect is served, not refused 4004.
        await using var again = await SocketRecorder.OpenAsync(app, alice.AccessToken);
        await again.WaitForAsync(m => m.Count > 0, "alice's snapshot on the reconnect");
        Assert.Null(again.CloseStatus);
        await Task.Delay(TimeSpan.FromSeconds(3)); // three more ping intervals: a reading socket answers every one
        Assert.Null(live.CloseStatus);
        Assert.False(live.Reading.IsCompleted, "a socket that answers pings was dropped");
        Assert.Equal(1, Volatile.Read(ref hub.Stats.DeadPeers));
        Assert.Matches(@"balance_sockets_dead_peers_total\{[^}]*\} \d+", await MetricsAsync(app)); // exported; the count is exact in Stats (parallel tests' services share the meter name)
    }

    private static void Sql(BalanceApplication app, string sql)
    {
        using System.Data.Common.DbConnection connection = app.Store == Store.Postgres
            ? new Npgsql.NpgsqlConnection(app.DatabasePath)
            : new SqliteConnection($"Data Source={app.DatabasePath};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    [Fact]
    public async Task ASnapshotThatCannotBeReadClosesWith1011AndIsCountedAndTheRetryIsServed()
    {
        // On PostgreSQL, where a snapshot reads the wallets table. (SQLite's come from the ledger writer's memory:
        // no database read to fail.)
        await using var app = new BalanceApplication(store: Store.Postgres);
        var alice = await app.LoginAsync("alice");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        Sql(app, "ALTER TABLE wallets RENAME TO wallets_away"); // a real read failure in the real database file
        try
        {
            await using (var guide = await app.OpenAuthenticatedSocketAsync(alice.AccessToken))
            {
                Assert.Null(await guide.ReceiveAsync()); // the guide's protocol: the close itself, no frame before it
                Assert.Equal(1011, (int?)guide.Socket.CloseStatus);
                Assert.Equal("unavailable", guide.Socket.CloseStatusDescription);
            }
            await using (var v2 = await app.OpenAuthenticatedSocketAsync(alice.AccessToken, SocketEndpoint.SubProtocolV2))
            {
                Assert.Equal("auth_ok", (await v2.ReceiveMessageAsync()).GetProperty("type").GetString());
                var error = await v2.ReceiveMessageAsync();
                Assert.Equal("error", error.GetProperty("type").GetString());
                Assert.Equal("unavailable", error.GetProperty("code").GetString());
                Assert.Null(await v2.ReceiveAsync());
                Assert.Equal(1011, (int?)v2.Socket.CloseStatus);
            }
            Assert.Equal(2, Volatile.Read(ref hub.Stats.SnapshotFailures));
            Assert.Matches(@"balance_sockets_snapshot_failures_total\{[^}]*\} \d+", await MetricsAsync(app)); // exported; the count is exact in Stats
        }
        finally
        {
            Sql(app, "ALTER TABLE wallets_away RENAME TO wallets");
        }
        // The retry the close asked for is served in full.
        await using var again = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        Assert.Equal("100.00", (await again.ReceiveMessageAsync()).GetProperty("balance").GetString());
        await WaitForAsync(() => Volatile.Read(ref hub.Stats.Authenticated) == 1, "the failed sockets to be released");
    }

    // A log sink that fails once on one kind of line: a real way for a socket's housekeeping to throw.
    private sealed class FailingLogSink(string failOn) : ILoggerProvider, ILogger
    {
        private int _failed;
        public int Failures => Volatile.Read(ref _failed);
        public ILogger CreateLogger(string categoryName) => this;
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (formatter(state, exception).Contains(failOn) && Interlocked.Exchange(ref _failed, 1) == 0)
                throw new IOException("the log disk is full");
        }
        public void Dispose() { }
    }

    [Fact]
    public async Task AFailingHousekeepingTickForOneSocketLeavesEveryOtherSocketSupervised()
    {
        var sink = new FailingLogSink("sent no auth");
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:AuthTimeout"] = "00:00:01",
            ["Auth:AccessTokenLifetime"] = "00:00:03",
            ["Logging:LogLevel:Balance"] = "Information",
        }) { ConfigureTestServices = s => s.AddSingleton<ILoggerProvider>(sink) };
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var alice = await app.LoginAsync("alice");
        await using var expiring = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await expiring.ReceiveMessageAsync();

        await using var first = await app.OpenSocketAsync(); // its auth deadline is where the tick throws
        await WaitForAsync(() => sink.Failures == 1, "the housekeeping of the first socket to fail");
        await using var second = await app.OpenSocketAsync();
        // The tick lives on: the next socket's auth deadline and the other socket's token expiry still close them.
        Assert.Equal(4002, await second.ReceiveCloseAsync());
        Assert.Equal(4001, await expiring.ReceiveCloseAsync());
        Assert.Equal(1, Volatile.Read(ref hub.Stats.HousekeepingFailures));
    }

    private static async Task<ClientWebSocket> TryOpenAsync(BalanceApplication app, string? bearer = null)
    {
        var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        if (bearer is not null) ws.Options.SetRequestHeader("Authorization", $"Bearer {bearer}");
        using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
        try { await ws.ConnectAsync(app.SocketUri, cts.Token); }
        catch (WebSocketException) { } // refused before the upgrade: the status is in HttpStatusCode
        return ws;
    }

    private static void AssertTooFast(ClientWebSocket refused)
    {
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.HttpStatusCode);
        var retryAfter = refused.HttpResponseHeaders?["Retry-After"].Single();
        Assert.True(int.TryParse(retryAfter, out int seconds) && seconds is >= 1 and <= 60, $"Retry-After {retryAfter}");
    }

    [Fact]
    public async Task AnAddressReconnectingInATightLoopGets429WithRetryAfterOnTheUpgrade()
    {
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:ConnectBurstPerAddress"] = "5",
            ["Balance:Socket:ConnectsPerSecondPerAddress"] = "0.1",
        });
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        for (int i = 0; i < 5; i++)
        {
            using var ws = await TryOpenAsync(app);
            Assert.Equal(WebSocketState.Open, ws.State);
            ws.Abort();
        }
        using var refused = await TryOpenAsync(app);
        AssertTooFast(refused);
        Assert.Equal(1, Volatile.Read(ref hub.Stats.ConnectsLimited));
        // REST from the same address is not a socket and is not slowed by this.
        using var http = app.Http();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task APlayerReconnectingInATightLoopIsSlowedBeforeItsSnapshotIsRead()
    {
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:ConnectBurstPerPlayer"] = "3",
            ["Balance:Socket:ConnectsPerSecondPerPlayer"] = "0.1",
        });
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        for (int i = 0; i < 3; i++)
        {
            await using var ok = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
            Assert.Equal("balance", (await ok.ReceiveMessageAsync()).GetProperty("type").GetString());
        }
        // The guide's way (token in the first message): closed 4004 before any snapshot, so no frame at all.
        await using (var limited = await app.OpenAuthenticatedSocketAsync(alice.AccessToken))
        {
            Assert.Null(await limited.ReceiveAsync());
            Assert.Equal(4004, (int?)limited.Socket.CloseStatus);
        }
        // With the token on the upgrade, refused in HTTP.
        using (var refused = await TryOpenAsync(app, alice.AccessToken)) AssertTooFast(refused);
        // Another player on the same address is served.
        await using var other = await app.OpenAuthenticatedSocketAsync(bob.AccessToken);
        Assert.Equal("balance", (await other.ReceiveMessageAsync()).GetProperty("type").GetString());
    }

    [Fact]
    public async Task TokensOfAnEndedLoginCannotSpendThePlayersReconnectAllowance()
    {
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:ConnectBurstPerPlayer"] = "3",
            ["Balance:Socket:ConnectsPerSecondPerPlayer"] = "0.1",
        });
        var stolen = await app.LoginAsync("alice");
        using (var http = app.Http(stolen.AccessToken))
            Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = stolen.RefreshToken })).StatusCode);
        // Whoever kept the token of the ended login hammers the socket with it, both ways.
        for (int i = 0; i < 6; i++)
        {
            using var header = await TryOpenAsync(app, stolen.AccessToken);
            Assert.NotEqual(HttpStatusCode.TooManyRequests, header.HttpStatusCode);
            header.Abort();
            await using var guide = await app.OpenAuthenticatedSocketAsync(stolen.AccessToken);
            Assert.Null(await guide.ReceiveAsync());
            Assert.Equal(4503, (int?)guide.Socket.CloseStatus);
        }
        // The player's own new login still connects: nothing of its allowance was spent.
        var fresh = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(fresh.AccessToken);
        Assert.Equal("balance", (await socket.ReceiveMessageAsync()).GetProperty("type").GetString());
    }
}
