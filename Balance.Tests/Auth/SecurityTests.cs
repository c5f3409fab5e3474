using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Tests;

// The security tests, one class over several files, each beside the feature it proves: this one holds the engine,
// the signing key and the token helpers the others share, and the tokens' and roles' tests; SecurityTests.Logins.cs
// (logins, their limits and their secrets in logs) beside it; Sockets/SecurityTests.Sockets.cs (origins, caps, control
// frames). SecurityTestsOnPostgres (Postgres/OnPostgres.cs) runs every one of them again on PostgreSQL.
public partial class SecurityTests
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
}
