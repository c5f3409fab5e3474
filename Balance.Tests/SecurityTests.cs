using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Tests;

public class SecurityTests
{
    /// The engine under test; the same tests run again on PostgreSQL (Postgres/OnPostgres.cs).
    protected virtual Store Store => Store.Sqlite;

    private const string SigningKey = "security-tests-signing-key-0123456789-abcdef";

    // ---- tokens ----

    private static string B64(string json) => Base64UrlEncoder.Encode(json);

    private static JsonObject Payload(string token) => JsonNode.Parse(Base64UrlEncoder.Decode(token.Split('.')[1]))!.AsObject();

    private static string Sign(JsonObject payload, string key, string alg = SecurityAlgorithms.HmacSha256)
    {
        var claims = payload.ToDictionary(p => p.Key, p => (object)(p.Value!.GetValueKind() == JsonValueKind.Number ? p.Value.GetValue<long>() : p.Value.GetValue<string>()));
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(JsonSerializer.Serialize(claims),
            new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), alg));
    }

    // By hand: IdentityModel refuses to sign HS512 with a key this short, but an attacker's library would not.
    private static string Hs512(JsonObject payload, string key)
    {
        string signed = B64("""{"alg":"HS512","typ":"JWT"}""") + "." + B64(payload.ToJsonString());
        return signed + "." + Base64UrlEncoder.Encode(System.Security.Cryptography.HMACSHA512.HashData(Encoding.UTF8.GetBytes(key), Encoding.ASCII.GetBytes(signed)));
    }

    private static JsonObject With(JsonObject payload, params (string Key, object? Value)[] changes)
    {
        var copy = payload.DeepClone().AsObject();
        foreach (var (k, v) in changes)
            if (v is null) copy.Remove(k);
            else copy[k] = JsonValue.Create(v);
        return copy;
    }

    private static async Task<string?> ProblemCode(HttpResponseMessage response)
    {
        if (response.Content.Headers.ContentType?.MediaType != "application/problem+json") return null;
        try { return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("code").GetString(); }
        catch (Exception) { return null; }
    }

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    [Fact]
    public async Task ForgedTamperedAndMisdirectedTokensAreRefusedOnRestAndSocket()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:SigningKey"] = SigningKey, ["Auth:ClockSkew"] = "00:00:02" });
        var alice = await app.LoginAsync("alice");
        var payload = Payload(alice.AccessToken);

        // The control: a token we mint with the right key and the right claims is accepted, so each refusal below is about its one flaw.
        string control = Sign(With(payload, ("jti", Guid.NewGuid().ToString("N"))), SigningKey);
        using (var ok = app.Http(control)) Assert.Equal(HttpStatusCode.OK, (await ok.GetAsync("/api/balance")).StatusCode);

        var parts = alice.AccessToken.Split('.');
        var asOperator = With(payload, ("role", "operator"));
        var forged = new (string What, string Token, int SocketClose)[]
        {
            ("alg none", B64("""{"alg":"none","typ":"JWT"}""") + "." + parts[1] + ".", 4501),
            ("alg none keeping the signature", B64("""{"alg":"none","typ":"JWT"}""") + "." + parts[1] + "." + parts[2], 4501),
            ("alg NONE as operator", B64("""{"alg":"NONE","typ":"JWT"}""") + "." + B64(asOperator.ToJsonString()) + ".", 4501),
            ("signed with another key", Sign(payload, "another-key-that-is-long-enough-0123456789-xyz"), 4501),
            ("tampered payload (role operator)", parts[0] + "." + B64(asOperator.ToJsonString()) + "." + parts[2], 4501),
            ("tampered payload (later exp)", parts[0] + "." + B64(With(payload, ("exp", Now + 86400)).ToJsonString()) + "." + parts[2], 4501),
            ("HS512 with the right key (algorithm pinned)", Hs512(payload, SigningKey), 4501),
            ("wrong issuer", Sign(With(payload, ("iss", "evil")), SigningKey), 4501),
            ("wrong audience", Sign(With(payload, ("aud", "someone-else")), SigningKey), 4501),
            ("no expiry", Sign(With(payload, ("exp", null)), SigningKey), 4501),
            ("expired beyond the skew", Sign(With(payload, ("iat", Now - 600), ("nbf", Now - 600), ("exp", Now - 10)), SigningKey), 4001),
            ("not yet valid", Sign(With(payload, ("iat", Now + 600), ("nbf", Now + 600), ("exp", Now + 1200)), SigningKey), 4501),
            ("the refresh token", alice.RefreshToken, 4501),
            ("garbage", "abc.def.ghi", 4501),
        };
        var failures = new List<string>();
        foreach (var (what, token, socketClose) in forged)
        {
            using var http = app.Http();
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/balance");
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
            var response = await http.SendAsync(request);
            if (response.StatusCode != HttpStatusCode.Unauthorized) failures.Add($"{what}: REST {response.StatusCode}");
            else if (await ProblemCode(response) is null) failures.Add($"{what}: 401 without a problem code");
            await using var socket = await app.OpenAuthenticatedSocketAsync(token);
            int code = await socket.ReceiveCloseAsync(Patience.Long);
            if (code != socketClose) failures.Add($"{what}: socket closed {code}, expected {socketClose}");
        }
        // A forged operator token cannot post money either.
        var post = await app.PostTransactionAsync(parts[0] + "." + B64(asOperator.ToJsonString()) + "." + parts[2],
            new { user_id = alice.UserId, type = "deposit", amount = "1000.00", currency = "USD" });
        if (post.StatusCode != HttpStatusCode.Unauthorized) failures.Add($"forged operator post: {post.StatusCode}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        using var mine = app.Http(alice.AccessToken);
        Assert.Equal("100.00", (await mine.GetFromJsonAsync<JsonElement>("/api/balance")).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task ARememberedTokenGetsItsOwnIdentityEachTimeAndAChangedByteIsValidatedInFull()
    {
        var tokens = new Tokens(new AuthOptions(), System.Security.Cryptography.RandomNumberGenerator.GetBytes(64), TimeProvider.System);
        string token = tokens.CreateAccessToken(Guid.NewGuid(), "player", "session-1", DateTime.MaxValue).Token;
        var first = await tokens.RequestHandler.ValidateTokenAsync(token, tokens.Parameters);
        var second = await tokens.RequestHandler.ValidateTokenAsync(token, tokens.Parameters);
        Assert.True(first.IsValid);
        Assert.True(second.IsValid);
        Assert.NotSame(first.ClaimsIdentity, second.ClaimsIdentity);
        Assert.Equal(first.ClaimsIdentity.Claims.Select(c => (c.Type, c.Value)), second.ClaimsIdentity.Claims.Select(c => (c.Type, c.Value)));
        Assert.True(new System.Security.Claims.ClaimsPrincipal(second.ClaimsIdentity).IsInRole("player"));
        // The same payload under a changed signature byte is not the remembered text: it fails validation.
        char last = token[^2] == 'A' ? 'B' : 'A';
        string tampered = token[..^2] + last + token[^1];
        Assert.False((await tokens.RequestHandler.ValidateTokenAsync(tampered, tokens.Parameters)).IsValid);
        Assert.True((await tokens.RequestHandler.ValidateTokenAsync(token, tokens.Parameters)).IsValid);
    }

    [Fact]
    public async Task AnAccessTokenStopsWorkingOnceExpiredByMoreThanTheSkew()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:AccessTokenLifetime"] = "00:08:00", ["Auth:ClockSkew"] = "00:00:05" })
        {
            ConfigureTestServices = services => services.AddSingleton<TimeProvider>(clock),
        };
        var alice = await app.LoginAsync("alice");
        using var http = app.Http(alice.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode); // validated in full, then remembered
        var expires = DateTimeOffset.FromUnixTimeSeconds(Payload(alice.AccessToken)["exp"]!.GetValue<long>());
        clock.SetUtcNow(expires + TimeSpan.FromSeconds(4)); // past exp, within the skew
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode);
        clock.SetUtcNow(expires + TimeSpan.FromSeconds(6)); // past the skew: the remembered token and a fresh validation alike
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/balance")).StatusCode);
        await using (var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken))
            Assert.Equal(4001, await socket.ReceiveCloseAsync(Patience.Long));
    }

    [Fact]
    public async Task RolesAreEnforcedBothWays()
    {
        await using var app = new BalanceApplication(store: Store);
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var op = await app.LoginAsync("operator");
        using var player = app.Http(alice.AccessToken);
        using var operatorHttp = app.Http(op.AccessToken);

        var post = await app.PostTransactionAsync(alice.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1000.00", currency = "USD" });
        Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await player.GetAsync("/api/users?username=bob")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await player.PostAsJsonAsync("/api/users", new { username = "mallory", password = "password123", role = "operator" })).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await player.GetAsync($"/api/transactions?user_id={bob.UserId}")).StatusCode);
        // Without user_id a player sees only their own history.
        var own = await InvariantTests.PageHistoryAsync(player, null, 50);
        Assert.All(own, t => Assert.Equal(alice.UserId, t.GetProperty("user_id").GetString()));

        Assert.Equal(HttpStatusCode.Forbidden, (await operatorHttp.GetAsync("/api/balance")).StatusCode);
        var forbidden = await operatorHttp.GetAsync("/api/balances");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Equal("forbidden", await ProblemCode(forbidden));
        Assert.Equal("forbidden", await ProblemCode(post));
        await using var socket = await app.OpenAuthenticatedSocketAsync(op.AccessToken);
        Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        Assert.Equal("100.00", (await player.GetFromJsonAsync<JsonElement>("/api/balance")).GetProperty("balance").GetString());
        Assert.Empty(await app.Http(op.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/users?username=mallory") ?? []);
    }

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
    public async Task LogoutClosesOnlyThatLoginsSocketsAndEndsItsTokens()
    {
        await using var app = new BalanceApplication(store: Store);
        var phone = await app.LoginAsync("alice");
        var laptop = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var phoneTab1 = await app.OpenAuthenticatedSocketAsync(phone.AccessToken);
        await using var phoneTab2 = await app.OpenSocketAsync(bearer: phone.AccessToken);
        await using var laptopTab = await app.OpenAuthenticatedSocketAsync(laptop.AccessToken);
        foreach (var s in new[] { phoneTab1, phoneTab2, laptopTab }) await s.ReceiveMessageAsync(Patience.Long);

        using (var http = app.Http(phone.AccessToken))
            Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = phone.RefreshToken })).StatusCode);
        Assert.Equal(4503, await phoneTab1.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(4503, await phoneTab2.ReceiveCloseAsync(Patience.Long));

        using (var http = app.Http(phone.AccessToken))
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/balance")).StatusCode);
        using (var http = app.Http())
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = phone.RefreshToken })).StatusCode);
        await using (var reopened = await app.OpenAuthenticatedSocketAsync(phone.AccessToken))
            Assert.Equal(4503, await reopened.ReceiveCloseAsync(Patience.Long));

        await app.PostOkAsync(op.AccessToken, new { user_id = phone.UserId, type = "win", amount = "2.00", currency = "USD" });
        Assert.Equal("102.00", (await laptopTab.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task RefreshTokenReuseEndsTheWholeLoginAndClosesItsSockets()
    {
        // No grace: any second use of a spent token is reuse (the grace has tests of its own in SessionTests).
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:RefreshReuseGrace"] = "00:00:00" });
        var stolen = await app.LoginAsync("alice");
        var other = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        using var anonymous = app.Http();
        var refreshed = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = stolen.RefreshToken });
        Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
        var pair = await refreshed.Content.ReadFromJsonAsync<JsonElement>();
        string access2 = pair.GetProperty("access_token").GetString()!, refresh2 = pair.GetProperty("refresh_token").GetString()!;
        Assert.NotEqual(stolen.RefreshToken, refresh2);

        await using var oldTab = await app.OpenAuthenticatedSocketAsync(stolen.AccessToken);
        await using var newTab = await app.OpenAuthenticatedSocketAsync(access2);
        await using var otherTab = await app.OpenAuthenticatedSocketAsync(other.AccessToken);
        foreach (var s in new[] { oldTab, newTab, otherTab }) await s.ReceiveMessageAsync(Patience.Long);

        var reuse = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = stolen.RefreshToken });
        Assert.Equal(HttpStatusCode.Unauthorized, reuse.StatusCode);
        Assert.Equal("refresh_token_reused", (await reuse.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        Assert.Equal(4503, await oldTab.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(4503, await newTab.ReceiveCloseAsync(Patience.Long));

        // Every token of that login is dead; the other login is untouched.
        using (var http = app.Http(access2)) Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/balance")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = refresh2 })).StatusCode);
        using (var http = app.Http(other.AccessToken)) Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode);
        await app.PostOkAsync(op.AccessToken, new { user_id = other.UserId, type = "win", amount = "3.00", currency = "USD" });
        Assert.Equal("103.00", (await otherTab.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
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

    // ---- login ----

    [Fact]
    public async Task LoginAttemptsAreLimitedPerAddressWith429AndRetryAfter()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:LoginAttemptsPerMinutePerIp"] = "6" });
        using var http = app.Http();
        for (int i = 0; i < 6; i++)
        {
            var response = await http.PostAsJsonAsync("/api/auth/login", new { username = i % 2 == 0 ? "alice" : $"nobody{i}", password = i % 2 == 0 ? "demo1234" : "wrong-password" });
            Assert.NotEqual(HttpStatusCode.TooManyRequests, response.StatusCode);
        }
        var limited = await http.PostAsJsonAsync("/api/auth/login", new { username = "bob", password = "demo1234" });
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.True(limited.Headers.RetryAfter?.Delta is { } wait && wait >= TimeSpan.FromSeconds(1) && wait <= TimeSpan.FromMinutes(1), $"Retry-After {limited.Headers.RetryAfter}");
        Assert.Equal("application/problem+json", limited.Content.Headers.ContentType?.MediaType);
        Assert.Equal("too_many_attempts", (await limited.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        Assert.False(await limited.Content.ReadAsStringAsync() is var body && body.Contains("access_token"), "a limited login must not log in");
    }

    [Fact]
    public async Task FailedLoginsAreLimitedPerUsernameAlikeForRealAndUnknownUsers()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:FailedLoginsPerUsername"] = "3", ["Auth:LoginAttemptsPerMinutePerIp"] = "1000" });
        using var http = app.Http();
        foreach (string username in new[] { "alice", "ghost" })
        {
            for (int i = 0; i < 3; i++)
                Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username, password = "wrong-password" })).StatusCode);
            // Now even the right password waits: guessing stops here.
            var limited = await http.PostAsJsonAsync("/api/auth/login", new { username, password = "demo1234" });
            Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
            Assert.True(limited.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After {limited.Headers.RetryAfter}");
            Assert.Equal("too_many_attempts", (await limited.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        }
        // Other accounts are unaffected.
        await app.LoginAsync("bob");
    }

    [Fact]
    public async Task UnknownUserAndWrongPasswordGetTheSameAnswer()
    {
        await using var app = new BalanceApplication(store: Store);
        using var http = app.Http();
        async Task<string> Answer(object body)
        {
            var response = await http.PostAsJsonAsync("/api/auth/login", body);
            var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
            json.Remove("traceId");
            json.Remove("trace_id");
            return $"{(int)response.StatusCode} {response.Content.Headers.ContentType} {string.Join(",", response.Headers.Select(h => h.Key).Order())} {json.ToJsonString()}";
        }
        string wrongPassword = await Answer(new { username = "alice", password = "wrong-password" });
        Assert.StartsWith("401 application/problem+json", wrongPassword);
        Assert.Contains("invalid_credentials", wrongPassword);
        Assert.Equal(wrongPassword, await Answer(new { username = "no-such-user", password = "wrong-password" }));
        Assert.Equal(wrongPassword, await Answer(new { username = "ALICE", password = "wrong-password" }));
        Assert.Equal(wrongPassword, await Answer(new { username = "alice", password = "" }));
    }

    [Fact]
    public async Task NoTokenOrPasswordReachesAnyLogLine()
    {
        var logs = new CapturingLoggerProvider();
        // Every category at Trace: the ones appsettings.json names (which would otherwise keep theirs, being more
        // specific), and through a rule for this provider alone, which outranks every category rule, any other.
        var settings = new Dictionary<string, string?> { ["Logging:LogLevel:Default"] = "Trace" };
        foreach (var category in new ConfigurationBuilder().AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json")).Build()
                     .GetSection("Logging:LogLevel").GetChildren())
            settings[$"Logging:LogLevel:{category.Key}"] = "Trace";
        await using var app = new BalanceApplication(settings, store: Store)
        {
            ConfigureTestServices = services => services.AddSingleton<ILoggerProvider>(logs).Configure<LoggerFilterOptions>(o =>
                o.Rules.Add(new LoggerFilterRule(typeof(CapturingLoggerProvider).FullName, null, LogLevel.Trace, null))),
        };
        const string password = "Sup3r-Secret-Passw0rd", wrong = "Wr0ng-Guess-Passw0rd";
        var op = await app.LoginAsync("operator");
        using (var http = app.Http(op.AccessToken))
            Assert.Equal(HttpStatusCode.Created, (await http.PostAsJsonAsync("/api/users", new { username = "carol", password, role = "player" })).StatusCode);
        var carol = await app.LoginAsync("carol", password);
        using (var http = app.Http())
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username = "carol", password = wrong })).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username = "nobody", password = wrong })).StatusCode);
        }
        using var anonymous = app.Http();
        var pair = await (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = carol.RefreshToken })).Content.ReadFromJsonAsync<JsonElement>();
        string access2 = pair.GetProperty("access_token").GetString()!, refresh2 = pair.GetProperty("refresh_token").GetString()!;
        await using (var socket = await app.OpenAuthenticatedSocketAsync(access2))
        {
            await socket.ReceiveMessageAsync(Patience.Long);
            await app.PostOkAsync(op.AccessToken, new { user_id = carol.UserId, type = "deposit", amount = "10.00", currency = "USD" });
            await socket.ReceiveMessageAsync(Patience.Long);
        }
        await using (var socket = await app.OpenSocketAsync(bearer: access2)) await socket.ReceiveMessageAsync(Patience.Long);
        await using (var socket = await app.OpenAuthenticatedSocketAsync(carol.AccessToken[..^4] + "AAAA")) await socket.ReceiveCloseAsync(Patience.Long);
        using (var http = app.Http(access2)) await http.GetAsync("/api/balance");
        using (var http = app.Http(carol.AccessToken[..^4] + "AAAA")) await http.GetAsync("/api/balance");
        await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = carol.RefreshToken }); // reuse
        var last = await app.LoginAsync("carol", password);
        using (var http = app.Http(last.AccessToken)) await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = last.RefreshToken });
        await app.DisposeAsync(); // flush everything the service had to say

        var lines = logs.Lines.ToList();
        Assert.Contains(lines, l => l.Contains("Committed deposit")); // the capture works
        Assert.Contains(lines, l => l.Contains("Failed login"));
        // The categories appsettings.json turns down or off are heard too, down to Trace.
        Assert.Contains(lines, l => l.Contains(" Microsoft.AspNetCore.Hosting.Diagnostics: "));
        Assert.Contains(lines, l => l.StartsWith("Trace Microsoft.AspNetCore.", StringComparison.Ordinal));
        var secrets = new Dictionary<string, string>
        {
            ["password"] = password, ["wrong password"] = wrong, ["demo password"] = "demo1234",
            ["refresh token 1"] = carol.RefreshToken, ["refresh token 2"] = refresh2, ["refresh token 3"] = last.RefreshToken, ["operator refresh token"] = op.RefreshToken,
        };
        foreach (var (name, token) in new[] { ("access token 1", carol.AccessToken), ("access token 2", access2), ("access token 3", last.AccessToken), ("operator access token", op.AccessToken) })
        {
            secrets[name + " signature"] = token.Split('.')[2];
            secrets[name + " payload"] = token.Split('.')[1];
        }
        var leaks = (from line in lines from secret in secrets where line.Contains(secret.Value, StringComparison.Ordinal) select $"{secret.Key} in: {line}").ToList();
        Assert.True(leaks.Count == 0, string.Join("\n", leaks.Take(10)));
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

[Collection("Load")]
public sealed class SlowConsumerTests
{
    // Small server-side buffers (Kestrel's write pipe, and a fixed SO_SNDBUF the accepted sockets inherit, instead of
    // Linux's autotuning up to 4 MB) so that a few hundred updates fill them; the send timeout is what is under test.
    private static void SmallServerBuffers(IServiceCollection services) => services.Configure<SocketTransportOptions>(o =>
    {
        o.MaxWriteBufferSize = 4096;
        o.CreateBoundListenSocket = endpoint =>
        {
            var listen = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
            listen.SendBufferSize = 8192;
            return listen;
        };
    });

    // A client whose sockets have a tiny receive buffer: once it stops reading, the server's sends back up quickly.
    private static HttpMessageInvoker TinyReceiveBufferClient() => new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, ct) =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
            await s.ConnectAsync(context.DnsEndPoint, ct);
            return new NetworkStream(s, ownsSocket: true);
        },
    });

    // ---- slow consumers ----

    [Fact]
    public async Task ASocketThatNeverReadsIsClosedAsASlowConsumerWhileOthersKeepUp()
    {
        await using var app = new BalanceApplication(new() { ["Balance:Socket:SendTimeout"] = "00:00:03" }) { ConfigureTestServices = SmallServerBuffers };
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var closes = new ConcurrentQueue<int>();
        hub.Stats.Closed += closes.Enqueue;

        // The slow one: a tiny receive buffer, authenticated, and then never read again.
        using var invoker = TinyReceiveBufferClient();
        using var slow = new ClientWebSocket();
        using (var cts = new CancellationTokenSource(Patience.Long))
        {
            await slow.ConnectAsync(app.SocketUri, invoker, cts.Token);
            await slow.SendAsync(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = alice.AccessToken })), WebSocketMessageType.Text, true, cts.Token);
        }
        await using var fast = await SocketRecorder.OpenAsync(app, alice.AccessToken);
        await fast.WaitForAsync(m => m.Count > 0, "the snapshot");

        // Updates in every currency (the outbox keeps only the newest per currency, so one currency alone would be coalesced away).
        string[] currencies = ["USD", "EUR", "GBP", "CAD", "AUD", "JPY", "BTC", "ETH"];
        using var http = app.Http(op.AccessToken);
        int posted = 0;
        // Bounded by time, not by a count of updates: the close comes a send timeout (3 s) after the socket's buffers
        // fill, however fast the ledger posts (a faster writer once posted 5,000 updates inside those 3 s).
        var stuckFor = System.Diagnostics.Stopwatch.StartNew();
        while (!closes.Contains(4003))
        {
            Assert.True(stuckFor.Elapsed < Patience.Long, $"{posted} updates in {stuckFor.Elapsed.TotalSeconds:F0} s and the non-reading socket is still open; closes {string.Join(",", closes)}, open {hub.OpenSockets}, sent {hub.Stats.Sent}, coalesced {hub.Stats.Coalesced}");
            var batch = await Task.WhenAll(currencies.Select(async currency =>
            {
                var response = await InvariantTests.Post(http, InvariantTests.NewKey(),
                    new { user_id = alice.UserId, type = "deposit", amount = Money.Format(1, currency), currency });
                Assert.Equal(HttpStatusCode.Created, response.StatusCode);
                return await response.Content.ReadFromJsonAsync<JsonElement>();
            }));
            posted += batch.Length;
            // The reading socket gets every update of the batch within a second of its commit, although its neighbour
            // is stuck: well inside the 3 s send timeout, so a fan-out that waited on the stuck socket's send fails here.
            await KeepsUpAsync(fast, batch, TimeSpan.FromSeconds(1));
        }
        // The stuck socket's outbox held at most one balance per currency, however many updates came; the rest coalesced.
        Assert.InRange(hub.Stats.DeepestOutbox, 1, currencies.Length);
        Assert.True(hub.Stats.Coalesced > 0, "nothing was coalesced: the outbox bound was never reached");
        Assert.Null(fast.CloseStatus);
        Assert.False(fast.Reading.IsCompleted, "the reading socket was closed too");
        Assert.DoesNotContain(closes, c => c != 4003);
        // The stuck one is gone on the server: only the reader remains.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (hub.OpenSockets != 1 && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Equal(1, hub.OpenSockets);
        var win = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        long final = win.GetProperty("version").GetInt64();
        await fast.WaitForAsync(m => m[^1].GetProperty("version").GetInt64() == final, $"v{final}");
    }

    private static async Task KeepsUpAsync(SocketRecorder reader, JsonElement[] batch, TimeSpan within)
    {
        var due = DateTime.UtcNow + within;
        foreach (var done in batch)
        {
            string currency = done.GetProperty("currency").GetString()!;
            long version = done.GetProperty("version").GetInt64();
            await reader.WaitForAsync(m => m.Any(x => x.GetProperty("currency").GetString() == currency && x.GetProperty("version").GetInt64() >= version),
                $"{currency} v{version} within {within.TotalSeconds} s", TimeSpan.FromTicks(Math.Max(0, (due - DateTime.UtcNow).Ticks)));
        }
    }

    [Fact]
    public async Task AThousandSocketsThatNeverReadHoldBoundedOutboxesAndAreClosedWhileAReaderKeepsUp()
    {
        const int stuck = 1000;
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:SendTimeout"] = "00:00:04",
            ["Balance:Socket:MaxSocketsPerPlayer"] = "1100",
            ["Balance:Socket:MaxUnauthenticatedPerIp"] = "2000",
            ["Balance:Socket:ConnectBurstPerAddress"] = "2000",
            ["Balance:Socket:ConnectBurstPerPlayer"] = "2000",
        }) { ConfigureTestServices = SmallServerBuffers };
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var closes = new ConcurrentQueue<int>();
        hub.Stats.Closed += closes.Enqueue;

        using var invoker = TinyReceiveBufferClient();
        byte[] auth = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = alice.AccessToken }));
        var sockets = new List<ClientWebSocket>();
        try
        {
            for (int i = 0; i < stuck; i += 50)
                sockets.AddRange(await Task.WhenAll(Enumerable.Range(0, 50).Select(async _ =>
                {
                    var ws = new ClientWebSocket();
                    using var cts = new CancellationTokenSource(Patience.Long);
                    await ws.ConnectAsync(app.SocketUri, invoker, cts.Token);
                    await ws.SendAsync(auth, WebSocketMessageType.Text, true, cts.Token);
                    return ws;
                })));
            await using var reader = await SocketRecorder.OpenAsync(app, alice.AccessToken);
            await reader.WaitForAsync(m => m.Count > 0, "the snapshot");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (hub.Stats.Authenticated < stuck + 1 && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.Equal(stuck + 1, hub.Stats.Authenticated);

            string[] currencies = ["USD", "EUR", "GBP", "CAD", "AUD", "JPY", "BTC", "ETH"];
            using var http = app.Http(op.AccessToken);
            int rounds = 0;
            // Keep posting until every stuck socket has been let go (the send timeout is real time: rounds can be quick);
            // the reader must see every round promptly.
            var giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(90);
            while (closes.Count(c => c == 4003) < stuck)
            {
                rounds++;
                Assert.True(DateTime.UtcNow < giveUp, $"after {rounds} rounds only {closes.Count(c => c == 4003)} of {stuck} stuck sockets were closed");
                var batch = await Task.WhenAll(currencies.Select(async currency =>
                    await (await InvariantTests.Post(http, InvariantTests.NewKey(),
                        new { user_id = alice.UserId, type = "deposit", amount = Money.Format(1, currency), currency })).Content.ReadFromJsonAsync<JsonElement>()));
                await KeepsUpAsync(reader, batch, TimeSpan.FromSeconds(2)); // half the send timeout, with 1,000 stuck neighbours
            }
            // Each stuck socket held at most one waiting balance per currency (an unbounded queue would hold up to
            // rounds × 8 per socket); the rest was coalesced.
            Assert.InRange(hub.Stats.DeepestOutbox, 1, currencies.Length);
            Assert.True(hub.Stats.Coalesced >= stuck, $"only {hub.Stats.Coalesced} balances coalesced across {stuck} stuck sockets over {rounds} rounds");
            Assert.Null(reader.CloseStatus);
            Assert.DoesNotContain(closes, c => c != 4003);
        }
        finally
        {
            foreach (var ws in sockets) ws.Abort();
            foreach (var ws in sockets) ws.Dispose();
        }
    }
}

public sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<string> Lines { get; } = new();
    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
    public void Dispose() { }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull
        {
            owner.Lines.Enqueue($"{category} scope: {state}");
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var structured = state is IEnumerable<KeyValuePair<string, object?>> pairs ? string.Join(" ", pairs.Select(p => $"{p.Key}={p.Value}")) : "";
            owner.Lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} | {structured} | {exception}");
        }
    }
}

// A WebSocket client by hand, for what ClientWebSocket cannot do: send ping and pong frames of its own, and send the
// upgrade request alone to read its status. Every read has a timeout.
public sealed class RawSocket : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    private RawSocket(TcpClient tcp) => (_tcp, _stream) = (tcp, tcp.GetStream());

    private static string Upgrade(Uri service, string? origin, string? bearer, string? subProtocol = null) =>
        $"GET /ws/balance/player HTTP/1.1\r\nHost: {service.Authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        (origin is null ? "" : $"Origin: {origin}\r\n") + (bearer is null ? "" : $"Authorization: Bearer {bearer}\r\n") +
        (subProtocol is null ? "" : $"Sec-WebSocket-Protocol: {subProtocol}\r\n") + "\r\n";

    private static async Task<RawSocket> OpenAsync(Uri service, string request)
    {
        var tcp = new TcpClient();
        using var cts = new CancellationTokenSource(Timeout);
        await tcp.ConnectAsync(service.Host, service.Port, cts.Token);
        var raw = new RawSocket(tcp);
        await raw._stream.WriteAsync(Encoding.ASCII.GetBytes(request), cts.Token);
        return raw;
    }

    // The response head, byte by byte up to the blank line (nothing of what follows is consumed).
    private async Task<string> ReadHeadAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await _stream.ReadAsync(one, cts.Token) == 0) break;
            head.Append((char)one[0]);
        }
        return head.ToString();
    }

    public static async Task<int> UpgradeStatusAsync(Uri service, string origin)
    {
        using var raw = await OpenAsync(service, Upgrade(service, origin, null));
        string head = await raw.ReadHeadAsync();
        return int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    public static async Task<RawSocket> ConnectAsync(Uri service, string? bearer, string? subProtocol = null)
    {
        var raw = await OpenAsync(service, Upgrade(service, null, bearer, subProtocol));
        string head = await raw.ReadHeadAsync();
        Assert.StartsWith("HTTP/1.1 101", head);
        return raw;
    }

    /// A masked frame, as a client must send; split over two writes at `splitAt` bytes when given.
    public async Task SendAsync(int opcode, byte[] payload, int? splitAt = null)
    {
        if (payload.Length > (opcode >= 0x8 ? 125 : ushort.MaxValue)) throw new ArgumentException("a control frame carries at most 125 bytes, this client's others 65,535");
        var mask = new byte[] { 0x12, 0x34, 0x56, 0x78 };
        int header = payload.Length > 125 ? 4 : 2;
        var frame = new byte[header + 4 + payload.Length];
        frame[0] = (byte)(0x80 | opcode);
        if (header == 2) frame[1] = (byte)(0x80 | payload.Length);
        else (frame[1], frame[2], frame[3]) = (0x80 | 126, (byte)(payload.Length >> 8), (byte)payload.Length);
        mask.CopyTo(frame, header);
        for (int i = 0; i < payload.Length; i++) frame[header + 4 + i] = (byte)(payload[i] ^ mask[i % 4]);
        using var cts = new CancellationTokenSource(Timeout);
        int split = Math.Min(splitAt ?? frame.Length, frame.Length);
        await _stream.WriteAsync(frame.AsMemory(0, split), cts.Token);
        if (split < frame.Length)
        {
            await _stream.FlushAsync(cts.Token);
            await _stream.WriteAsync(frame.AsMemory(split), cts.Token);
        }
    }

    public async Task<(int Opcode, byte[] Payload)> ReadFrameAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var head = new byte[2];
        await _stream.ReadExactlyAsync(head, cts.Token);
        long length = head[1] & 0x7F;
        if (length >= 126)
        {
            var ext = new byte[length == 126 ? 2 : 8];
            await _stream.ReadExactlyAsync(ext, cts.Token);
            length = ext.Aggregate(0L, (n, b) => n << 8 | b);
        }
        var payload = new byte[length];
        await _stream.ReadExactlyAsync(payload, cts.Token);
        return (head[0] & 0x0F, payload);
    }

    /// Reads past data and pong frames to the server's close frame: its code and reason.
    public async Task<(int Code, string Reason)> ReadCloseAsync()
    {
        while (true)
        {
            var (opcode, payload) = await ReadFrameAsync();
            if (opcode == 0x8) return (payload[0] << 8 | payload[1], Encoding.UTF8.GetString(payload, 2, payload.Length - 2));
        }
    }

    public void Dispose()
    {
        _stream.Dispose();
        _tcp.Dispose();
    }
}
