using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Balance.Tests;

public sealed class SocketTests
{
    [Fact]
    public async Task GuideAuthMessageOnRealKestrelGetsSnapshotThenLiveUpdate()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);

        var snapshot = await socket.ReceiveMessageAsync();
        Assert.Equal("balance", snapshot.GetProperty("type").GetString());
        Assert.Equal(alice.UserId, snapshot.GetProperty("user_id").GetString());
        Assert.Equal("100.00", snapshot.GetProperty("balance").GetString());
        Assert.Equal("USD", snapshot.GetProperty("currency").GetString());

        var posted = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "25.50", currency = "USD" });
        var update = await socket.ReceiveMessageAsync();
        Assert.Equal("125.50", update.GetProperty("balance").GetString());
        Assert.Equal(posted.GetProperty("transaction_id").GetString(), update.GetProperty("transaction_id").GetString());
        Assert.Equal("deposit", update.GetProperty("transaction_type").GetString());
        Assert.Equal(snapshot.GetProperty("version").GetInt64() + 1, update.GetProperty("version").GetInt64());
    }

    [Fact]
    public async Task EverySocketOfThePlayerIsUpdatedAndNobodyElses()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var op = await app.LoginAsync("operator");
        await using var tab1 = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await using var tab2 = await app.OpenAuthenticatedSocketAsync((await app.LoginAsync("alice")).AccessToken);
        await using var bobSocket = await app.OpenAuthenticatedSocketAsync(bob.AccessToken);
        await tab1.ReceiveMessageAsync();
        await tab2.ReceiveMessageAsync();
        var bobSnapshot = await bobSocket.ReceiveMessageAsync();
        Assert.Equal("0.00", bobSnapshot.GetProperty("balance").GetString());
        Assert.Equal(0, bobSnapshot.GetProperty("version").GetInt64());

        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        Assert.Equal("90.00", (await tab1.ReceiveMessageAsync()).GetProperty("balance").GetString());
        Assert.Equal("90.00", (await tab2.ReceiveMessageAsync()).GetProperty("balance").GetString());
        await bobSocket.AssertSilentAsync(TimeSpan.FromMilliseconds(500));
    }

    [Fact]
    public async Task HeaderAuthOnTheUpgradeWorksForNonBrowserClients()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenSocketAsync(bearer: alice.AccessToken);
        Assert.Equal("100.00", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task V2ClientsGetAuthOkAndErrorBeforeClose()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken, "balance.v2");
        Assert.Equal("balance.v2", socket.Socket.SubProtocol);
        var ok = await socket.ReceiveMessageAsync();
        Assert.Equal("auth_ok", ok.GetProperty("type").GetString());
        Assert.Equal(alice.UserId, ok.GetProperty("user_id").GetString());
        Assert.True(DateTimeOffset.Parse(ok.GetProperty("expires_at").GetString()!) > DateTimeOffset.UtcNow);
        Assert.Equal("balance", (await socket.ReceiveMessageAsync()).GetProperty("type").GetString());

        await socket.SendTextAsync("""{"type":"subscribe"}""");
        var error = await socket.ReceiveMessageAsync();
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal("bad_request", error.GetProperty("code").GetString());
        Assert.Equal(4500, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task BadTokenClosesWith4501()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenAuthenticatedSocketAsync("not-a-jwt");
        Assert.Equal(4501, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task OperatorTokenOnThePlayerSocketClosesWith4503()
    {
        await using var app = new BalanceApplication();
        var op = await app.LoginAsync("operator");
        await using var socket = await app.OpenAuthenticatedSocketAsync(op.AccessToken);
        Assert.Equal(4503, await socket.ReceiveCloseAsync());
    }

    // The service on a fake clock, with a balance.v2 socket that answers its heartbeat pings. Each step moves the clock
    // one housekeeping period and waits for the ping that period's pass sends: passes run one after the other, so once
    // it arrives, every earlier pass has finished — what the service decided up to the step before is settled, on a
    // busy machine as on an idle one. No real time is waited for.
    private sealed class Clocked : IAsyncDisposable
    {
        public static readonly TimeSpan Step = TimeSpan.FromMilliseconds(250); // the housekeeping period
        public required FakeTimeProvider Clock { get; init; }
        public required CapturingLoggerProvider Logs { get; init; }
        public required BalanceApplication App { get; init; }
        public TestSocket? Witness { get; init; }
        public string? WitnessToken { get; init; }
        public TimeSpan Elapsed => Clock.GetUtcNow() - _start;
        private DateTimeOffset _start;

        public static async Task<Clocked> StartAsync(Dictionary<string, string?> settings, bool witness = true)
        {
            var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
            var logs = new CapturingLoggerProvider();
            settings["Balance:Socket:HeartbeatInterval"] = Step.ToString();
            settings["Logging:LogLevel:Balance.BalanceSocket"] = "Information"; // its decisions, logged as they are made
            settings["Balance:Socket:MessagesPerSecond"] = "1000"; // a pong and an auth every step
            var app = new BalanceApplication(settings)
            {
                ConfigureTestServices = services => services.AddSingleton<TimeProvider>(clock).AddSingleton<ILoggerProvider>(logs),
            };
            if (!witness) return new Clocked { App = app, Clock = clock, Logs = logs, _start = clock.GetUtcNow() };
            string bob0 = (await app.LoginAsync("bob")).AccessToken;
            var bob = await app.OpenAuthenticatedSocketAsync(bob0, "balance.v2");
            Assert.Equal("auth_ok", (await bob.ReceiveMessageAsync()).GetProperty("type").GetString());
            Assert.Equal("balance", (await bob.ReceiveMessageAsync()).GetProperty("type").GetString());
            return new Clocked { App = app, Witness = bob, WitnessToken = bob0, Clock = clock, Logs = logs, _start = clock.GetUtcNow() };
        }

        public void StartTheWatch() => _start = Clock.GetUtcNow();

        // The server has registered this many sockets (it reads the clock for a socket's deadline when it does).
        public async Task WaitForOpenSocketsAsync(int count)
        {
            var hub = App.Services.GetRequiredService<BalanceSocket>();
            var deadline = DateTime.UtcNow + Patience.Long;
            while (hub.OpenSockets != count) { Assert.True(DateTime.UtcNow < deadline, $"{hub.OpenSockets} sockets open, not {count}"); await Task.Delay(10); }
        }

        public async Task StepAsync()
        {
            var frame = await PassAsync(Witness!, WitnessToken!);
            Assert.True(frame is null, $"the witness got {frame}");
        }

        // One housekeeping pass, seen from a v2 socket: null when it brought the socket its ping, else the frame it
        // brought instead. The pong is followed by an auth with the socket's own token, whose auth_ok proves the pong
        // was read before the clock moves on (a pong read late, under load, would look like a dead peer).
        public async Task<JsonElement?> PassAsync(TestSocket socket, string token)
        {
            Clock.Advance(Step);
            var frame = await socket.ReceiveMessageAsync(Patience.Long);
            if (frame.GetProperty("type").GetString() != "ping") return frame;
            await socket.SendTextAsync("""{"type":"pong"}""");
            await socket.SendAuthAsync(token);
            Assert.Equal("auth_ok", (await socket.ReceiveMessageAsync(Patience.Long)).GetProperty("type").GetString());
            return null;
        }

        public async ValueTask DisposeAsync()
        {
            if (Witness is not null) await Witness.DisposeAsync();
            await App.DisposeAsync();
        }
    }

    [Fact]
    public async Task NoAuthWithinTheDefaultTenSecondsClosesWith4002NotBeforeAndNotMuchAfter()
    {
        await using var clocked = await Clocked.StartAsync(new());
        await using var socket = await clocked.App.OpenSocketAsync();
        await clocked.WaitForOpenSocketsAsync(2);
        clocked.StartTheWatch();
        bool Closed() => clocked.Logs.Lines.Any(l => l.Contains("sent no auth within"));
        // Up to 10 s on the service's clock the socket stands (settled up to one step before the last).
        while (clocked.Elapsed < TimeSpan.FromSeconds(10)) await clocked.StepAsync();
        Assert.False(Closed(), $"closed for want of auth before {clocked.Elapsed - Clocked.Step}");
        await clocked.StepAsync();
        await clocked.StepAsync();
        Assert.True(Closed(), $"still open after {clocked.Elapsed - Clocked.Step} without auth");
        Assert.Equal(4002, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task ExpiringTokenWithoutAFreshOneClosesWith4001AtItsExpiry()
    {
        // The v2 socket is its own witness (its token would expire a witness of its own lifetime alongside).
        await using var clocked = await Clocked.StartAsync(new() { ["Auth:AccessTokenLifetime"] = "00:00:10", ["Auth:ClockSkew"] = "00:00:00" }, witness: false);
        var alice = await clocked.App.LoginAsync("alice");
        var exp = DateTimeOffset.FromUnixTimeSeconds(JsonDocument.Parse(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Decode(alice.AccessToken.Split('.')[1])).RootElement.GetProperty("exp").GetInt64());
        await using var guide = await clocked.App.OpenAuthenticatedSocketAsync(alice.AccessToken);
        Assert.Equal("balance", (await guide.ReceiveMessageAsync()).GetProperty("type").GetString());
        // A v2 socket of the same token gets a ping for every pass it stands through, then the error and the close.
        await using var v2 = await clocked.App.OpenAuthenticatedSocketAsync(alice.AccessToken, "balance.v2");
        Assert.Equal("auth_ok", (await v2.ReceiveMessageAsync()).GetProperty("type").GetString());
        Assert.Equal("balance", (await v2.ReceiveMessageAsync()).GetProperty("type").GetString());
        while (true)
        {
            if (await clocked.PassAsync(v2, alice.AccessToken) is not { } frame)
            {
                Assert.True(clocked.Clock.GetUtcNow() < exp, $"still open {clocked.Clock.GetUtcNow() - exp} past the token's exp");
                continue;
            }
            Assert.Equal("error", frame.GetProperty("type").GetString());
            Assert.Equal("token_expired", frame.GetProperty("code").GetString());
            Assert.True(clocked.Clock.GetUtcNow() >= exp, $"closed {exp - clocked.Clock.GetUtcNow()} before the token's exp");
            break;
        }
        Assert.Equal(4001, await v2.ReceiveCloseAsync());
        Assert.Equal(4001, await guide.ReceiveCloseAsync()); // the guide's client: the close alone
    }

    [Fact]
    public async Task ReauthWithAFreshTokenKeepsTheSocketOpenPastTheFirstExpiry()
    {
        await using var clocked = await Clocked.StartAsync(new() { ["Auth:AccessTokenLifetime"] = "00:00:10", ["Auth:ClockSkew"] = "00:00:00" }, witness: false);
        var alice = await clocked.App.LoginAsync("alice");
        var opLogin = await clocked.App.LoginAsync("operator");
        await using var socket = await clocked.App.OpenAuthenticatedSocketAsync(alice.AccessToken, "balance.v2");
        var first = DateTimeOffset.Parse((await socket.ReceiveMessageAsync()).GetProperty("expires_at").GetString()!);
        Assert.Equal("balance", (await socket.ReceiveMessageAsync()).GetProperty("type").GetString());
        // Each housekeeping pass the socket stands through sends it a ping: an error or a close instead fails the test.
        string current = alice.AccessToken;
        async Task StandUntilAsync(DateTimeOffset until)
        {
            while (clocked.Clock.GetUtcNow() < until)
                if (await clocked.PassAsync(socket, current) is { } frame)
                    throw new Xunit.Sdk.XunitException($"{frame} at {clocked.Clock.GetUtcNow() - first} from the first expiry");
        }
        await StandUntilAsync(first - TimeSpan.FromSeconds(5));
        // Halfway through the first token's life, a fresh one (the guide's updateToken), through refresh.
        string fresh = await RefreshAsync(clocked.App, alice.RefreshToken);
        await socket.SendAuthAsync(fresh);
        var renewed = DateTimeOffset.Parse((await socket.ReceiveMessageAsync()).GetProperty("expires_at").GetString()!);
        current = fresh;
        Assert.True(renewed > first, $"the fresh token expires at {renewed}, the first at {first}");
        await StandUntilAsync(first + TimeSpan.FromSeconds(2)); // past the first expiry, still open
        string op = await RefreshAsync(clocked.App, opLogin.RefreshToken);
        await clocked.App.PostOkAsync(op, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        Assert.Equal("101.00", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());
    }

    private static async Task<string> RefreshAsync(BalanceApplication app, string refreshToken)
    {
        using var http = app.Http();
        var response = await http.PostAsync("/api/auth/refresh", JsonContent(new { refresh_token = refreshToken }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("access_token").GetString()!;
    }

    [Fact]
    public async Task ReauthAsAnotherUserClosesWith4503()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        await socket.SendAuthAsync(bob.AccessToken);
        Assert.Equal(4503, await socket.ReceiveCloseAsync());
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("[1,2,3]")]
    [InlineData("""{"type":"dance"}""")]
    [InlineData("""{"type":"auth"}""")]
    public async Task MalformedMessagesCloseWith4500(string text)
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        await socket.SendTextAsync(text);
        Assert.Equal(4500, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task BinaryFramesCloseWith4500()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        await socket.Socket.SendAsync(new byte[] { 1, 2, 3 }, WebSocketMessageType.Binary, true, CancellationToken.None);
        Assert.Equal(4500, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task FramesOver4KiBCloseWith1009()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        await socket.SendTextAsync("{\"type\":\"auth\",\"access_token\":\"" + new string('a', 5000) + "\"}");
        Assert.Equal(1009, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task AClientsCloseIsAnsweredAndCountedWithTheClientsOwnCode()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var closes = new System.Collections.Concurrent.ConcurrentQueue<int>();
        hub.Stats.Closed += closes.Enqueue;
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        using (var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout))
            await socket.Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.Socket.CloseStatus); // echoed, RFC 6455 §5.5.1
        var deadline = DateTime.UtcNow + Patience.Long;
        while (closes.IsEmpty && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal([1000], closes.ToArray());
    }

    [Fact]
    public async Task LogoutClosesThatLoginsSocketsWith4503()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        using var http = app.Http(alice.AccessToken);
        var response = await http.PostAsync("/api/auth/logout", JsonContent(new { refresh_token = alice.RefreshToken }));
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        Assert.Equal(4503, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task ForeignOriginIsRefusedBeforeTheUpgrade()
    {
        await using var app = new BalanceApplication();
        var ex = await Assert.ThrowsAsync<WebSocketException>(() => app.OpenSocketAsync(origin: "https://evil.example"));
        Assert.Contains("403", ex.Message);
    }

    private static StringContent JsonContent(object body) => new(JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json");

    // Every frame and close the socket can send, byte for byte, as recorded from the service: moving the socket code
    // between files must not change one byte on the wire. balance.v2 (error frames
    // before the close) and the guide protocol (the close alone); the ids and times of this run are put in after.
    [Fact]
    public async Task EveryCloseCodeReasonAndFrameOnTheWireIsByteIdentical()
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 3, 18, 0, 0, TimeSpan.Zero));
        await using var app = new BalanceApplication(new() { ["Balance:Socket:MaxSocketsPerPlayer"] = "2", ["Balance:Socket:MessageBurst"] = "3" })
        {
            ConfigureTestServices = services => services.AddSingleton<TimeProvider>(clock),
        };
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var op = await app.LoginAsync("operator");
        var transcript = new System.Text.StringBuilder();

        async Task<RawSocket> OpenAsync(string? bearer = null, bool v2 = true) => await RawSocket.ConnectAsync(app.BaseAddress, bearer, v2 ? "balance.v2" : null);
        static byte[] Text(string text) => System.Text.Encoding.UTF8.GetBytes(text);
        string Auth(string token) => $$"""{"type":"auth","access_token":"{{token}}"}""";
        async Task ReadAsync(string name, RawSocket raw, int frames = int.MaxValue)
        {
            transcript.Append("-- ").Append(name).Append('\n');
            for (int i = 0; i < frames; i++)
            {
                var (opcode, payload) = await raw.ReadFrameAsync();
                if (opcode == 0x8)
                {
                    transcript.Append($"close {payload[0] << 8 | payload[1]} {System.Text.Encoding.UTF8.GetString(payload, 2, payload.Length - 2)}\n");
                    return;
                }
                if (opcode != 0x9) transcript.Append($"{opcode} {System.Text.Encoding.UTF8.GetString(payload)}\n");
            }
        }
        async Task LogoutAsync(Login login)
        {
            using var http = app.Http(login.AccessToken);
            Assert.True((await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = login.RefreshToken })).IsSuccessStatusCode);
        }
        async Task AllClosedAsync() // the server has let go of every socket (a raw client never answers a close)
        {
            var hub = app.Services.GetRequiredService<BalanceSocket>();
            var deadline = DateTime.UtcNow + Patience.Long;
            while (hub.OpenSockets != 0) { Assert.True(DateTime.UtcNow < deadline, $"{hub.OpenSockets} sockets still open"); await Task.Delay(10); }
        }
        async Task CaseAsync(string name, string? bearer, bool v2, params byte[][] messages)
        {
            using var raw = await OpenAsync(bearer, v2);
            foreach (var message in messages) await raw.SendAsync(message.Length > 0 && message[0] == 0xFF ? 0x2 : 0x1, message);
            await ReadAsync(name, raw);
        }

        await CaseAsync("not json", null, true, Text("nope"));
        await CaseAsync("not an object", null, true, Text("[1]"));
        await CaseAsync("unknown type", null, true, Text("""{"type":"what's <this> & \"that\""}"""));
        await CaseAsync("auth without token", null, true, Text("""{"type":"auth"}"""));
        await CaseAsync("binary", null, true, [0xFF, 0x01]);
        await CaseAsync("too big", null, true, new byte[5000]);
        await CaseAsync("invalid token", null, true, Text(Auth("not.a.token")));
        await CaseAsync("invalid token, guide", null, false, Text(Auth("not.a.token")));
        await CaseAsync("operator", null, true, Text(Auth(op.AccessToken)));
        await CaseAsync("operator on the upgrade", op.AccessToken, true);
        await CaseAsync("too many messages", null, true, Text("""{"type":"pong"}"""), Text("""{"type":"pong"}"""), Text("""{"type":"pong"}"""), Text("""{"type":"pong"}"""));

        using (var first = await OpenAsync())
        {
            await first.SendAsync(0x1, Text(Auth(alice.AccessToken)));
            await ReadAsync("auth_ok and snapshot", first, 2);
            await first.SendAsync(0x1, Text(Auth(alice.AccessToken)));
            await ReadAsync("auth again", first, 1);
            using var second = await OpenAsync(alice.AccessToken, v2: false);
            await ReadAsync("guide snapshot on the upgrade", second, 1);
            await CaseAsync("a third socket", alice.AccessToken, true);
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "25.50", currency = "EUR", reference = "ref \"1\" <b>" });
            await ReadAsync("a change", first, 1);
            await ReadAsync("a change, guide", second, 1);
            await first.SendAsync(0x1, Text(Auth(bob.AccessToken)));
            await ReadAsync("another player", first);
            await LogoutAsync(alice);
            await ReadAsync("logout, guide", second);
        }
        await AllClosedAsync();

        var alice2 = await app.LoginAsync("alice");
        using (var revoked = await OpenAsync(alice2.AccessToken))
        {
            await ReadAsync("auth_ok and two wallets", revoked, 3);
            await LogoutAsync(alice2);
            await ReadAsync("logout", revoked);
        }
        await AllClosedAsync();

        var alice3 = await app.LoginAsync("alice");
        using (var heartbeat = await OpenAsync(alice3.AccessToken))
        {
            await ReadAsync("heartbeat: auth_ok and snapshot", heartbeat, 3);
            clock.Advance(TimeSpan.FromSeconds(15));
            await ReadAsync("heartbeat: ping", heartbeat, 1);
            using var idle = await OpenAsync();
            clock.Advance(TimeSpan.FromSeconds(11));
            await ReadAsync("auth timeout", idle);
            clock.Advance(TimeSpan.FromMinutes(15));
            await ReadAsync("token expired while open", heartbeat);
        }
        await CaseAsync("expired token", null, true, Text(Auth(alice3.AccessToken)));
        await AllClosedAsync();

        var dave = await app.LoginAsync("bob");
        using (var last = await OpenAsync(dave.AccessToken))
        {
            await ReadAsync("before shutdown", last, 2);
            await app.Services.GetRequiredService<BalanceSocket>().StoppingAsync(CancellationToken.None);
            await ReadAsync("shutdown", last);
        }

        string actual = System.Text.RegularExpressions.Regex.Replace(transcript.ToString(), "\"transaction_id\":\"[0-9a-f-]{36}\"", "\"transaction_id\":\"<tx>\"")
            .Replace(alice.UserId, "<alice>").Replace(bob.UserId, "<bob>");
        Assert.Equal(Expected + "\n", actual);
    }

    // Where an expired token's close is decided (SocketAuth): from its exp on the service's clock, not a tick later;
    // refused as it is offered, and the other text (send a fresh one) when it comes while the socket is open.
    [Fact, Trait("Category", "Unit")]
    public void AnExpiredTokenIsRefusedFromItsExpAndClosesAnOpenSocketWithTheHintToSendAFreshOne()
    {
        long exp = new DateTimeOffset(2026, 12, 3, 18, 15, 0, TimeSpan.Zero).UtcTicks;
        var claims = new SocketAuth.Claims(Guid.NewGuid(), "sid", Roles.Player, exp);
        Assert.Null(SocketAuth.ExpiredOnAuth(claims, exp - 1));
        Assert.Same(CloseReason.TokenExpired, SocketAuth.ExpiredOnAuth(claims, exp));
        Assert.Null(SocketAuth.ExpiredWhileOpen(exp, exp - 1));
        Assert.Same(CloseReason.TokenExpiredWhileOpen, SocketAuth.ExpiredWhileOpen(exp, exp + 1));
        Assert.Equal((4001, "token_expired", "The access token has expired."),
            (CloseReason.TokenExpired.Code, CloseReason.TokenExpired.Reason, CloseReason.TokenExpired.Message));
        Assert.Equal((4001, "token_expired", "The access token expired; send a fresh one or reconnect."),
            (CloseReason.TokenExpiredWhileOpen.Code, CloseReason.TokenExpiredWhileOpen.Reason, CloseReason.TokenExpiredWhileOpen.Message));
    }

    // Every answer that refuses an upgrade, byte for byte as recorded from the service (status, Retry-After, body; the
    // trace id of this run put in after), and the close the guide's way gets for reconnecting too fast: moving the
    // texts into the problem-code table must not change one byte on the wire.
    [Fact]
    public async Task EveryRefusalOfAnUpgradeOnTheWireIsByteIdentical()
    {
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:MaxUnauthenticatedPerIp"] = "1",
            ["Balance:Socket:ConnectBurstPerAddress"] = "5",
            ["Balance:Socket:ConnectsPerSecondPerAddress"] = "0.1",
            ["Balance:Socket:ConnectBurstPerPlayer"] = "1",
            ["Balance:Socket:ConnectsPerSecondPerPlayer"] = "0.1",
        });
        var alice = await app.LoginAsync("alice");
        var transcript = new System.Text.StringBuilder();
        async Task RefusedAsync(string name, string request)
        {
            using var tcp = new System.Net.Sockets.TcpClient();
            using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
            await tcp.ConnectAsync(app.BaseAddress.Host, app.BaseAddress.Port, cts.Token);
            var stream = tcp.GetStream();
            await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(request + "\r\n"), cts.Token);
            var (head, body) = await ReadResponseAsync(stream, cts.Token);
            string Header(string name) =>
                head.Split("\r\n").FirstOrDefault(l => l.StartsWith(name + ": ", StringComparison.OrdinalIgnoreCase))?[(name.Length + 2)..] ?? "(none)";
            transcript.Append($"-- {name}\n{head.Split("\r\n")[0]}\nRetry-After: {Header("Retry-After")}\nContent-Type: {Header("Content-Type")}\n{body}\n");
        }
        string Upgrade(string? extra = null) =>
            $"GET /ws/balance/player HTTP/1.1\r\nHost: {app.BaseAddress.Authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + (extra is null ? "" : extra + "\r\n");

        await RefusedAsync("not a WebSocket request", $"GET /ws/balance/player HTTP/1.1\r\nHost: {app.BaseAddress.Authority}\r\n");
        await RefusedAsync("a foreign origin", Upgrade("Origin: https://evil.example")); // the address's 1st connect
        using (var first = await RawSocket.ConnectAsync(app.BaseAddress, alice.AccessToken, "balance.v2")) // 2nd, the player's 1st
        {
            await first.ReadFrameAsync(); // auth_ok: authenticated, its unauthenticated place given back
            await RefusedAsync("the player reconnecting too fast, token on the upgrade", Upgrade($"Authorization: Bearer {alice.AccessToken}")); // 3rd
            using var guide = await RawSocket.ConnectAsync(app.BaseAddress, null, "balance.v2"); // 4th, holds the one unauthenticated place
            await RefusedAsync("a second unauthenticated socket", Upgrade()); // 5th
            await guide.SendAsync(0x1, System.Text.Encoding.UTF8.GetBytes($$"""{"type":"auth","access_token":"{{alice.AccessToken}}"}"""));
            var (opcode, error) = await guide.ReadFrameAsync();
            var (code, reason) = await guide.ReadCloseAsync();
            transcript.Append("-- the player reconnecting too fast, auth message\n")
                .Append($"{opcode} {System.Text.Encoding.UTF8.GetString(error)}\nclose {code} {reason}\n");
            await RefusedAsync("the address reconnecting too fast", Upgrade()); // 6th
            await app.Services.GetRequiredService<BalanceSocket>().StoppingAsync(CancellationToken.None);
            await RefusedAsync("while stopping", Upgrade());
        }

        string actual = System.Text.RegularExpressions.Regex.Replace(transcript.ToString(), "\"trace_id\":\"[^\"]+\"", "\"trace_id\":\"<trace>\"");
        Assert.Equal(ExpectedRefusals + "\n", actual);
    }

    // An HTTP/1.1 response read by hand: its head, and its body by Content-Length or chunks.
    private static async Task<(string Head, string Body)> ReadResponseAsync(Stream stream, CancellationToken ct)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        async Task<string> LineAsync()
        {
            bytes.Clear();
            while (bytes.Count < 2 || bytes[^2] != '\r' || bytes[^1] != '\n')
            {
                if (await stream.ReadAsync(one, ct) == 0) throw new EndOfStreamException();
                bytes.Add(one[0]);
            }
            return System.Text.Encoding.ASCII.GetString(bytes.ToArray(), 0, bytes.Count - 2);
        }
        var head = new System.Text.StringBuilder();
        for (string line = await LineAsync(); line.Length > 0; line = await LineAsync()) head.Append(line).Append("\r\n");
        string text = head.ToString();
        var body = new MemoryStream();
        var length = System.Text.RegularExpressions.Regex.Match(text, "(?im)^Content-Length: (\\d+)");
        if (length.Success)
        {
            var buffer = new byte[int.Parse(length.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)];
            await stream.ReadExactlyAsync(buffer, ct);
            body.Write(buffer);
        }
        else if (System.Text.RegularExpressions.Regex.IsMatch(text, "(?im)^Transfer-Encoding: chunked"))
        {
            for (int size = Convert.ToInt32(await LineAsync(), 16); size > 0; size = Convert.ToInt32(await LineAsync(), 16))
            {
                var chunk = new byte[size];
                await stream.ReadExactlyAsync(chunk, ct);
                body.Write(chunk);
                await LineAsync();
            }
        }
        return (text.TrimEnd(), System.Text.Encoding.UTF8.GetString(body.ToArray()));
    }

    private const string ExpectedRefusals = """
        -- not a WebSocket request
        HTTP/1.1 400 Bad Request
        Retry-After: (none)
        Content-Type: application/problem+json
        {"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"Bad Request","status":400,"detail":"This endpoint speaks WebSocket only.","code":"websocket_required","trace_id":"<trace>"}
        -- a foreign origin
        HTTP/1.1 403 Forbidden
        Retry-After: (none)
        Content-Type: application/problem+json
        {"type":"https://tools.ietf.org/html/rfc9110#section-15.5.4","title":"Forbidden","status":403,"detail":"Origin not allowed.","code":"origin_not_allowed","trace_id":"<trace>"}
        -- the player reconnecting too fast, token on the upgrade
        HTTP/1.1 429 Too Many Requests
        Retry-After: 10
        Content-Type: application/problem+json
        {"title":"Too Many Requests","status":429,"detail":"Reconnecting too fast; try again in 10 s.","code":"too_many_connections","trace_id":"<trace>"}
        -- a second unauthenticated socket
        HTTP/1.1 429 Too Many Requests
        Retry-After: 5
        Content-Type: application/problem+json
        {"title":"Too Many Requests","status":429,"detail":"Too many unauthenticated sockets from this address.","code":"too_many_connections","trace_id":"<trace>"}
        -- the player reconnecting too fast, auth message
        1 {"type":"error","code":"too_many_connections","message":"Reconnecting too fast; try again in 10 s."}
        close 4004 too_many_connections
        -- the address reconnecting too fast
        HTTP/1.1 429 Too Many Requests
        Retry-After: 10
        Content-Type: application/problem+json
        {"title":"Too Many Requests","status":429,"detail":"Reconnecting too fast; try again in 10 s.","code":"too_many_connections","trace_id":"<trace>"}
        -- while stopping
        HTTP/1.1 503 Service Unavailable
        Retry-After: 1
        Content-Type: application/problem+json
        {"type":"https://tools.ietf.org/html/rfc9110#section-15.6.4","title":"Service Unavailable","status":503,"detail":"The server is restarting; reconnect.","code":"unavailable","trace_id":"<trace>"}
        """;

    private const string Expected = """
        -- not json
        1 {"type":"error","code":"bad_request","message":"Messages must be JSON objects such as {\u0022type\u0022:\u0022auth\u0022,\u0022access_token\u0022:\u0022...\u0022}."}
        close 4500 bad_request
        -- not an object
        1 {"type":"error","code":"bad_request","message":"Messages must be JSON objects such as {\u0022type\u0022:\u0022auth\u0022,\u0022access_token\u0022:\u0022...\u0022}."}
        close 4500 bad_request
        -- unknown type
        1 {"type":"error","code":"bad_request","message":"Unknown message type \u0027what\u0027s \u003Cthis\u003E \u0026 \u0022that\u0022\u0027."}
        close 4500 bad_request
        -- auth without token
        1 {"type":"error","code":"bad_request","message":"auth needs access_token."}
        close 4500 bad_request
        -- binary
        1 {"type":"error","code":"bad_request","message":"Binary frames are not accepted; send JSON text."}
        close 4500 bad_request
        -- too big
        1 {"type":"error","code":"frame_too_large","message":"Messages are limited to 4096 bytes."}
        close 1009 frame_too_large
        -- invalid token
        1 {"type":"error","code":"invalid_token","message":"The access token is not valid."}
        close 4501 invalid_token
        -- invalid token, guide
        close 4501 invalid_token
        -- operator
        1 {"type":"error","code":"forbidden","message":"This token may not watch balances."}
        close 4503 forbidden
        -- operator on the upgrade
        1 {"type":"error","code":"forbidden","message":"This token may not watch balances."}
        close 4503 forbidden
        -- too many messages
        1 {"type":"error","code":"rate_limited","message":"Too many messages."}
        close 1008 rate_limited
        -- auth_ok and snapshot
        1 {"type":"auth_ok","user_id":"<alice>","expires_at":"2026-12-03T18:15:00Z"}
        1 {"type":"balance","user_id":"<alice>","balance":"100.00","currency":"USD","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        -- auth again
        1 {"type":"auth_ok","user_id":"<alice>","expires_at":"2026-12-03T18:15:00Z"}
        -- guide snapshot on the upgrade
        1 {"type":"balance","user_id":"<alice>","balance":"100.00","currency":"USD","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        -- a third socket
        1 {"type":"error","code":"too_many_connections","message":"At most 2 sockets per player."}
        close 4004 too_many_connections
        -- a change
        1 {"type":"balance","user_id":"<alice>","balance":"25.50","currency":"EUR","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        -- a change, guide
        1 {"type":"balance","user_id":"<alice>","balance":"25.50","currency":"EUR","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        -- another player
        1 {"type":"error","code":"forbidden","message":"A socket belongs to one player; re-authenticate as the same user."}
        close 4503 forbidden
        -- logout, guide
        close 4503 forbidden
        -- auth_ok and two wallets
        1 {"type":"auth_ok","user_id":"<alice>","expires_at":"2026-12-03T18:15:00Z"}
        1 {"type":"balance","user_id":"<alice>","balance":"25.50","currency":"EUR","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        1 {"type":"balance","user_id":"<alice>","balance":"100.00","currency":"USD","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        -- logout
        1 {"type":"error","code":"session_revoked","message":"This login has ended."}
        close 4503 forbidden
        -- heartbeat: auth_ok and snapshot
        1 {"type":"auth_ok","user_id":"<alice>","expires_at":"2026-12-03T18:15:00Z"}
        1 {"type":"balance","user_id":"<alice>","balance":"25.50","currency":"EUR","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        1 {"type":"balance","user_id":"<alice>","balance":"100.00","currency":"USD","version":1,"transaction_id":"<tx>","transaction_type":"deposit","updated_at":"2026-12-03T18:00:00.000Z"}
        -- heartbeat: ping
        1 {"type":"ping"}
        -- auth timeout
        1 {"type":"error","code":"auth_timeout","message":"No auth message within the deadline."}
        close 4002 auth_timeout
        -- token expired while open
        1 {"type":"error","code":"token_expired","message":"The access token expired; send a fresh one or reconnect."}
        close 4001 token_expired
        -- expired token
        1 {"type":"error","code":"token_expired","message":"The access token has expired."}
        close 4001 token_expired
        -- before shutdown
        1 {"type":"auth_ok","user_id":"<bob>","expires_at":"2026-12-03T18:30:26Z"}
        1 {"type":"balance","user_id":"<bob>","balance":"0.00","currency":"USD","version":0,"transaction_id":null,"transaction_type":null,"updated_at":null}
        -- shutdown
        1 {"type":"error","code":"server_going_away","message":"The server is restarting; reconnect."}
        close 1001 server_going_away
        """;
}
