using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balance.Tests;

public partial class SecurityTests
{
    // ---- sockets ----

    [Fact]
    public async Task OnlyAllowedOriginsMayOpenASocketAndEveryOneMustStillAuthenticate()
    {
        await using var app = new BalanceApplication(store: Store, settings: new()
        {
            ["Balance:Socket:AllowedOrigins:0"] = "https://casino.example",
            ["Balance:Socket:AuthTimeout"] = "00:00:05",
        });
        var alice = await app.LoginAsync("alice");
        foreach (string origin in new[] { "https://evil.example", "null", "http://127.0.0.1.evil.example", "https://casino.example.evil.example", "http://localhost.evil.example:8080" })
        {
            using var ws = new ClientWebSocket();
            ws.Options.CollectHttpResponseDetails = true;
            ws.Options.SetRequestHeader("Origin", origin);
            using var cts = new CancellationTokenSource(Patience.Long);
            var refused = await Record.ExceptionAsync(() => ws.ConnectAsync(app.SocketUri, cts.Token));
            Assert.True(refused is WebSocketException, $"Origin {origin} was let in");
            Assert.True(ws.HttpStatusCode == HttpStatusCode.Forbidden, $"{origin}: {ws.HttpStatusCode}");
        }

        // Same origin, a configured origin, and no Origin at all (not a browser) may connect, but get nothing before auth.
        string self = new UriBuilder(app.BaseAddress) { Path = "" }.Uri.GetLeftPart(UriPartial.Authority);
        string otherLoopback = $"http://localhost:{(app.BaseAddress.Port == 65535 ? 65534 : app.BaseAddress.Port + 1)}"; // Development trusts loopback pages
        await Task.WhenAll(new[] { self, "https://casino.example", otherLoopback, null }.Select(async origin =>
        {
            await using (var socket = await app.OpenSocketAsync(origin: origin))
            {
                await socket.SendAuthAsync(alice.AccessToken);
                Assert.Equal("100.00", (await socket.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
            }
            await using var unauthenticated = await app.OpenSocketAsync(origin: origin);
            Assert.Equal(4002, await unauthenticated.ReceiveCloseAsync(Patience.Long));
        }));
    }

    [Fact]
    public async Task InProductionOnlyTheServicesOwnAndConfiguredOriginsMayOpenASocketAndLoopbackGetsNoException()
    {
        await using var app = new BalanceApplication(store: Store, settings: new()
        {
            ["environment"] = "Production",
            ["Auth:SigningKey"] = SigningKey,
            ["Balance:Socket:AllowedOrigins:0"] = "https://casino.example",
        });
        string self = new UriBuilder(app.BaseAddress) { Path = "" }.Uri.GetLeftPart(UriPartial.Authority);
        int otherPort = app.BaseAddress.Port == 65535 ? 65534 : app.BaseAddress.Port + 1;
        foreach (var (origin, allowed) in new (string?, bool)[]
        {
            (self, true), ("https://casino.example", true), (null, true),
            // A page served from another loopback port (a developer's dev server) is trusted in Development only.
            ($"http://127.0.0.1:{otherPort}", false), ("http://localhost:3000", false), ("http://[::1]:8080", false), ("https://evil.example", false),
        })
        {
            using var ws = new ClientWebSocket();
            ws.Options.CollectHttpResponseDetails = true;
            if (origin is not null) ws.Options.SetRequestHeader("Origin", origin);
            using var cts = new CancellationTokenSource(Patience.Long);
            var refused = await Record.ExceptionAsync(() => ws.ConnectAsync(app.SocketUri, cts.Token));
            if (allowed) Assert.True(refused is null && ws.State == WebSocketState.Open, $"Origin {origin ?? "(none)"} was refused: {refused?.Message} {ws.HttpStatusCode}");
            else Assert.True(refused is WebSocketException && ws.HttpStatusCode == HttpStatusCode.Forbidden, $"Origin {origin} in Production: {ws.HttpStatusCode}");
        }
    }

    [Fact]
    public async Task APlayerMayHoldOnlyTheConfiguredNumberOfSockets()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Balance:Socket:MaxSocketsPerPlayer"] = "2" });
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var first = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await using var second = await app.OpenAuthenticatedSocketAsync((await app.LoginAsync("alice")).AccessToken);
        await first.ReceiveMessageAsync(Patience.Long);
        await second.ReceiveMessageAsync(Patience.Long);
        await using (var third = await app.OpenAuthenticatedSocketAsync(alice.AccessToken))
            Assert.Equal(4004, await third.ReceiveCloseAsync(Patience.Long));
        // Bob is not affected by Alice's cap.
        await using (var bob = await app.OpenAuthenticatedSocketAsync((await app.LoginAsync("bob")).AccessToken))
            Assert.Equal("0.00", (await bob.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());

        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        Assert.Equal("101.00", (await first.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
        Assert.Equal("101.00", (await second.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());

        // Closing one frees its place.
        await first.DisposeAsync();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            await using var again = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
            var message = await again.ReceiveAsync(Patience.Long);
            if (message is { } m) { Assert.Equal("101.00", m.GetProperty("balance").GetString()); break; }
            Assert.Equal(4004, (int?)again.Socket.CloseStatus); // still full while the server lets go of the closed one
            Assert.True(DateTime.UtcNow < deadline, "the closed socket's place was never freed");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task ASocketSeesOnlyItsOwnPlayersBalances()
    {
        await using var app = new BalanceApplication(store: Store);
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var op = await app.LoginAsync("operator");
        await using var aliceSocket = await SocketRecorder.OpenAsync(app, alice.AccessToken);
        await using var bobSocket = await SocketRecorder.OpenAsync(app, bob.AccessToken);
        await aliceSocket.WaitForAsync(m => m.Count >= 1, "the snapshot");
        await bobSocket.WaitForAsync(m => m.Count >= 1, "the snapshot");
        foreach (var (who, currency, amount) in new[] { (bob, "USD", "5.00"), (bob, "EUR", "6.00"), (alice, "JPY", "700"), (bob, "BTC", "0.00000001"), (alice, "USD", "1.00") })
            await app.PostOkAsync(op.AccessToken, new { user_id = who.UserId, type = "deposit", amount, currency });
        await aliceSocket.WaitForAsync(m => m.Any(x => x.GetProperty("balance").GetString() == "101.00"), "the last update");
        await bobSocket.WaitForAsync(m => m.Any(x => x.GetProperty("currency").GetString() == "BTC"), "the last update");
        aliceSocket.AssertOnlyOwnBalancesWithRisingVersions(alice.UserId);
        bobSocket.AssertOnlyOwnBalancesWithRisingVersions(bob.UserId);
        Assert.Equal(["JPY", "USD"], aliceSocket.Snapshot().Select(m => m.GetProperty("currency").GetString()).Distinct().Order());
    }

    // ---- refused origins and control frames ----

    [Fact]
    public async Task AFloodOfUpgradesWithARefusedOriginSpendsTheAddressAllowanceAndIsLoggedTruncatedAndSampled()
    {
        var logs = new CapturingLoggerProvider();
        await using var app = new BalanceApplication(store: Store, settings: new()
        {
            ["Balance:Socket:ConnectBurstPerAddress"] = "20",
            ["Balance:Socket:ConnectsPerSecondPerAddress"] = "1",
        }) { ConfigureTestServices = s => s.AddSingleton<ILoggerProvider>(logs) };
        string origin = "https://evil.example/" + new string('a', 6_000);
        var statuses = new List<int>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 300; i++) statuses.Add(await RawSocket.UpgradeStatusAsync(app.BaseAddress, origin));
        int seconds = (int)Math.Ceiling(clock.Elapsed.TotalSeconds);

        int forbidden = statuses.Count(s => s == 403), limited = statuses.Count(s => s == 429);
        Assert.Equal(300, forbidden + limited);
        Assert.InRange(forbidden, 20, 20 + seconds + 1); // the burst, and what the steady rate refills while the flood runs
        var lines = logs.Lines.Where(l => l.Contains("Refused socket from origin", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(lines);
        Assert.True(lines.Count <= seconds + 1, $"{lines.Count} log lines for {forbidden} refused origins in {seconds} s");
        Assert.All(lines, l => Assert.True(l.Length < 1_000, $"a log line of {l.Length} characters"));
        Assert.Contains("(6021 characters)", lines[0]);
    }

    [Fact]
    public async Task PingFramesCountAgainstTheSocketsMessageLimit()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Balance:Socket:MessageBurst"] = "20", ["Balance:Socket:MessagesPerSecond"] = "5" });
        var alice = await app.LoginAsync("alice");
        using var raw = await RawSocket.ConnectAsync(app.BaseAddress, alice.AccessToken);
        Assert.Equal(1, (await raw.ReadFrameAsync()).Opcode); // the balance snapshot, a text frame

        for (int i = 0; i < 200; i++)
        {
            try { await raw.SendAsync(0x9, "ping"u8.ToArray()); }
            catch (IOException) { break; } // closed under us: what the test waits for
        }
        var (code, reason) = await raw.ReadCloseAsync();
        Assert.Equal((1008, "rate_limited"), (code, reason));
    }

    [Fact]
    public async Task PongFramesCountAgainstTheSocketsMessageLimitToo()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Balance:Socket:MessageBurst"] = "20", ["Balance:Socket:MessagesPerSecond"] = "5" });
        var alice = await app.LoginAsync("alice");
        using var raw = await RawSocket.ConnectAsync(app.BaseAddress, alice.AccessToken);
        Assert.Equal(1, (await raw.ReadFrameAsync()).Opcode);
        // Unsolicited pongs, each split over two writes: the frames are followed across reads.
        var payload = new byte[125];
        for (int i = 0; i < 200; i++)
        {
            try { await raw.SendAsync(0xA, payload, splitAt: 1 + i % 6); }
            catch (IOException) { break; }
        }
        Assert.Equal((1008, "rate_limited"), await raw.ReadCloseAsync());
    }

    [Fact]
    public async Task AFewPingsAreAnsweredAndTheSocketStaysOpen()
    {
        await using var app = new BalanceApplication(store: Store);
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        using var raw = await RawSocket.ConnectAsync(app.BaseAddress, alice.AccessToken);
        Assert.Equal(1, (await raw.ReadFrameAsync()).Opcode);
        for (int i = 0; i < 5; i++)
        {
            await raw.SendAsync(0x9, [(byte)i]);
            var pong = await raw.ReadFrameAsync();
            Assert.Equal(0xA, pong.Opcode);
            Assert.Equal([(byte)i], pong.Payload);
        }
        // After the control frames, the socket's messages flow as before.
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        var balance = await raw.ReadFrameAsync();
        Assert.Equal(1, balance.Opcode);
        Assert.Equal("101.00", JsonDocument.Parse(balance.Payload).RootElement.GetProperty("balance").GetString());
    }
}
