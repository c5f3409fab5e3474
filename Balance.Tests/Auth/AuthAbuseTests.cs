using System.Data.Common;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Balance.Auth;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Balance.Tests;

// Auth under hostile load, input a login must refuse, and failure counting no stranger can turn into a lockout. The
// mechanisms only; their effect on postings is measured by bench/attack.sh, not timed here.
public class AuthAbuseTests
{
    /// The engine under test; the same tests run again on PostgreSQL (Postgres/OnPostgres.cs).
    protected virtual Store Store => Store.Sqlite;

    private static async Task<string?> CodeOf(HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<JsonElement>()).TryGetProperty("code", out var code) ? code.GetString() : null;

    // A client at another address, through a proxy the service trusts (ForwardedHeaders:KnownProxies = loopback).
    private static readonly Dictionary<string, string?> BehindProxy = new() { ["ForwardedHeaders:KnownProxies:0"] = "127.0.0.1" };

    private static async Task<HttpResponseMessage> LoginFromAsync(BalanceApplication app, string address, string username, string password)
    {
        using var http = app.Http();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/auth/login") { Content = JsonContent.Create(new { username, password }) };
        request.Headers.Add("X-Forwarded-For", address);
        return await http.SendAsync(request);
    }

    // Takes the database's write lock from another connection and holds it: SQLite's BEGIN IMMEDIATE, or on PostgreSQL
    // the auth tables locked against every writer (and SELECT … FOR UPDATE) while plain reads go on.
    private async Task<DbConnection> HoldWriteLockAsync(BalanceApplication app)
    {
        DbConnection c = Store == Store.Postgres ? new Npgsql.NpgsqlConnection(app.DatabasePath) : new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={app.DatabasePath}");
        await c.OpenAsync();
        if (Store == Store.Postgres) await c.ExecuteAsync("BEGIN; LOCK TABLE refresh_tokens, sessions IN EXCLUSIVE MODE");
        else await c.ExecuteAsync("BEGIN IMMEDIATE");
        return c;
    }

    [Fact]
    public async Task ARefreshWithAnUnknownTokenOrOneOfAnEndedLoginIsAnsweredWhileTheWriteLockIsHeldElsewhere()
    {
        await using var app = new BalanceApplication(store: Store);
        var ended = await app.LoginAsync("alice");
        using (var http = app.Http(ended.AccessToken)) Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsync("/api/auth/logout", null)).StatusCode);
        var live = await app.LoginAsync("alice");
        await using (var locked = await HoldWriteLockAsync(app))
        {
            using var anonymous = app.Http();
            // Each of these is answered from reads alone: one that opened a write transaction would wait out the 5 s
            // busy/lock timeout, then answer 503.
            var unknown = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = "no-such-token-" + Guid.NewGuid() });
            Assert.Equal(HttpStatusCode.Unauthorized, unknown.StatusCode);
            Assert.Equal("invalid_refresh_token", await CodeOf(unknown));
            var ofEnded = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = ended.RefreshToken });
            Assert.Equal(HttpStatusCode.Unauthorized, ofEnded.StatusCode);
            Assert.Equal("session_revoked", await CodeOf(ofEnded));
            await locked.ExecuteAsync("ROLLBACK");
        }
        // A live token still rotates once the lock is gone.
        using var again = app.Http();
        Assert.Equal(HttpStatusCode.OK, (await again.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = live.RefreshToken })).StatusCode);
    }

    [Fact]
    public async Task AnExpiredRefreshTokenIsAnsweredWhileTheWriteLockIsHeldElsewhere()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = new BalanceApplication(new() { ["Auth:RefreshTokenLifetime"] = "00:01:00" }, store: Store)
        { ConfigureTestServices = s => s.AddSingleton<TimeProvider>(clock) };
        var login = await app.LoginAsync("alice");
        clock.Advance(TimeSpan.FromMinutes(2));
        await using var locked = await HoldWriteLockAsync(app);
        using var anonymous = app.Http();
        var expired = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = login.RefreshToken });
        Assert.Equal(HttpStatusCode.Unauthorized, expired.StatusCode);
        Assert.Equal("refresh_token_expired", await CodeOf(expired));
    }

    [Fact]
    public async Task ThePasswordBudgetRefusesLoginsPastItsBoundAtOnceWith503AndRetryAfter()
    {
        await using var app = new BalanceApplication(new()
        {
            ["Auth:PasswordHashConcurrency"] = "1", ["Auth:PasswordHashQueue"] = "1", ["Auth:LoginAttemptsPerMinutePerIp"] = "100000",
            ["Auth:FailedLoginsPerAddress"] = "100000",
        }, store: Store);
        _ = app.BaseAddress;
        var budget = app.Services.GetRequiredService<PasswordBudget>();
        long before = budget.Done; // the demo accounts' hashes at start
        using var http = app.Http();
        var answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => http.PostAsJsonAsync("/api/auth/login", new { username = $"nobody{i}", password = "wrong-password" })));
        var busy = answers.Where(a => a.StatusCode == HttpStatusCode.ServiceUnavailable).ToList();
        Assert.NotEmpty(busy); // 40 at once, room for 2: the rest refused, not queued
        Assert.All(answers, a => Assert.True(a.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.ServiceUnavailable, a.StatusCode.ToString()));
        foreach (var b in busy)
        {
            Assert.Equal("login_busy", await CodeOf(b));
            Assert.Equal(TimeSpan.FromSeconds(1), b.Headers.RetryAfter?.Delta);
        }
        Assert.Equal(busy.Count, budget.Refused);
        Assert.Equal(40 - busy.Count, budget.Done - before); // each check that was not refused ran on the budget's threads
        await app.LoginAsync("alice"); // and once the burst is over, logins go on
    }

    [Fact]
    public async Task RefreshIsLimitedPerLoginAndPerAddressWith429AndRetryAfter()
    {
        await using var app = new BalanceApplication(new() { ["Auth:RefreshBurstPerLogin"] = "3", ["Auth:RefreshesPerMinutePerIp"] = "8" }, store: Store);
        var first = await app.LoginAsync("alice");
        var second = await app.LoginAsync("alice");
        using var http = app.Http();
        string token = first.RefreshToken;
        for (int i = 0; i < 3; i++)
        {
            var ok = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = token });
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            token = (await ok.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("refresh_token").GetString()!;
        }
        var limited = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = token });
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal("too_many_attempts", await CodeOf(limited));
        Assert.True(limited.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After {limited.Headers.RetryAfter}");
        // The token was not spent by the refused refresh, and another login of the same player is not limited by it.
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = second.RefreshToken })).StatusCode);
        // Per address: 5 refreshes so far; unknown tokens count too, and past 8 everything is 429 before any read.
        for (int i = 0; i < 3; i++)
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = $"unknown-{i}" })).StatusCode);
        var perAddress = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = "unknown-x" });
        Assert.Equal(HttpStatusCode.TooManyRequests, perAddress.StatusCode);
        Assert.NotNull(perAddress.Headers.RetryAfter);
    }

    // The address's allowance is spent before the body is read: a body that is not JSON spends it like any attempt, and
    // past it every login and refresh from that address is a 429 without its body being read — the cheap refusal first
    // (AuthApi.UseAddressAllowances; bench/attack.sh --modes none,garbage).
    [Fact]
    public async Task ABodyThatIsNotJsonSpendsTheAddressAllowanceAndPastItNothingIsRead()
    {
        await using var app = new BalanceApplication(new()
        {
            ["Auth:LoginAttemptsPerMinutePerIp"] = "5", ["Auth:RefreshesPerMinutePerIp"] = "3", ["Auth:ThrottledAnswerDelay"] = "00:00:00",
        }, store: Store);
        using var http = app.Http();
        HttpContent Garbage() => new StringContent("""{"username":"alice","password":""", System.Text.Encoding.UTF8, "application/json");
        for (int i = 0; i < 5; i++) Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/api/auth/login", Garbage())).StatusCode);
        var refused = await http.PostAsync("/api/auth/login", Garbage());
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("too_many_attempts", (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        Assert.NotNull(refused.Headers.RetryAfter);
        // The allowance is the address's, spent: the right password waits too.
        Assert.Equal(HttpStatusCode.TooManyRequests, (await http.PostAsJsonAsync("/api/auth/login", new { username = "alice", password = "demo1234" })).StatusCode);

        for (int i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/api/auth/refresh", new StringContent("[", System.Text.Encoding.UTF8, "application/json"))).StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, (await http.PostAsync("/api/auth/refresh", new StringContent("[", System.Text.Encoding.UTF8, "application/json"))).StatusCode);
    }

    [Fact]
    public async Task AnIpv6Slash64CountsAsOneAddressForTheLoginLimit()
    {
        await using var app = new BalanceApplication(new(BehindProxy) { ["Auth:LoginAttemptsPerMinutePerIp"] = "3" }, store: Store);
        foreach (string address in new[] { "2001:db8:1:2::1", "2001:db8:1:2:aaaa::2", "2001:db8:1:2:ffff:ffff:ffff:ffff" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, address, "nobody", "wrong-password")).StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, (await LoginFromAsync(app, "2001:db8:1:2:1234::9", "alice", "demo1234")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "2001:db8:1:3::1", "alice", "demo1234")).StatusCode); // the next /64
    }

    [Fact]
    [Trait("Category", "Unit")]
    public void ClientAddressKeysAnIpv6Slash64AsOneAndIpv4AsItself()
    {
        string Key(string a) => ClientAddress.Key(IPAddress.Parse(a));
        Assert.Equal(Key("2001:db8::1"), Key("2001:db8::ffff:1:2:3"));
        Assert.NotEqual(Key("2001:db8::1"), Key("2001:db8:0:1::1"));
        Assert.Equal("2001:db8::/64", Key("2001:db8::1"));
        Assert.Equal("203.0.113.7", Key("203.0.113.7"));
        Assert.Equal("203.0.113.7", Key("::ffff:203.0.113.7"));
        Assert.NotEqual(Key("203.0.113.7"), Key("203.0.113.8"));
    }

    [Fact]
    [Trait("Category", "Unit")]
    public async Task ThePasswordBudgetRunsAtMostItsThreadsAndQueueAndRefusesTheRestAtOnce()
    {
        using var budget = new PasswordBudget(concurrency: 1, queue: 2);
        using var gate = new ManualResetEventSlim();
        int running = 0, most = 0, onPool = 0;
        int Hash()
        {
            int now = Interlocked.Increment(ref running);
            most = Math.Max(most, now);
            if (Thread.CurrentThread.IsThreadPoolThread) Interlocked.Increment(ref onPool);
            gate.Wait();
            Interlocked.Decrement(ref running);
            return 1;
        }
        var first = budget.TryRun(Hash);
        Assert.NotNull(first);
        SpinWait.SpinUntil(() => Volatile.Read(ref running) == 1, TimeSpan.FromSeconds(10)); // the worker took it
        var queued = new[] { budget.TryRun(Hash), budget.TryRun(Hash) };
        Assert.All(queued, Assert.NotNull);
        Assert.Null(budget.TryRun(Hash)); // past the bound: refused now, not queued
        Assert.Equal(1, budget.Refused);
        gate.Set();
        int[] results = await Task.WhenAll(first!, queued[0]!, queued[1]!).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { 1, 1, 1 }, results);
        Assert.Equal(1, most); // one thread: never two hashes at once
        Assert.Equal(0, onPool); // and never on the thread pool that serves requests
    }

    [Fact]
    public async Task ARequiredFieldMissingOrAControlCharacterInTheUsernameIs400ValidationFailed()
    {
        await using var app = new BalanceApplication(store: Store);
        using var http = app.Http();
        foreach (object body in new object[] { new { password = "demo1234" }, new { username = "alice" }, new { username = "al\nice", password = "demo1234" },
                     new { username = "alice\u0000", password = "demo1234" }, new { username = "alice\u007f", password = "demo1234" } })
        {
            var response = await http.PostAsJsonAsync("/api/auth/login", body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("validation_failed", await CodeOf(response));
        }
        var refresh = await http.PostAsJsonAsync("/api/auth/refresh", new { });
        Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
        Assert.Equal("validation_failed", await CodeOf(refresh));
        await app.LoginAsync("alice"); // none of it counted as alice's failure
    }

    [Fact]
    public async Task AStrangersWrongPasswordsLockOnlyTheirOwnAddressAndTheRightPasswordFromAnotherStillWorks()
    {
        await using var app = new BalanceApplication(new(BehindProxy) { ["Auth:FailedLoginsPerUsername"] = "5" }, store: Store);
        for (int i = 0; i < 5; i++)
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, "203.0.113.66", "operator", "wrong-password")).StatusCode);
        // The stranger's address waits, whatever it sends...
        var held = await LoginFromAsync(app, "203.0.113.66", "operator", "demo1234");
        Assert.Equal(HttpStatusCode.TooManyRequests, held.StatusCode);
        Assert.True(held.Headers.RetryAfter?.Delta > TimeSpan.FromMinutes(4), $"Retry-After {held.Headers.RetryAfter}");
        // ... and the real operator, elsewhere, logs in (a lock on the username would give them 429 for 5 minutes,
        // renewed by the stranger forever).
        Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "198.51.100.10", "operator", "demo1234")).StatusCode);
    }

    [Fact]
    public async Task FailuresFromOneAddressOverManyUsernamesAreHeldWithABackoffThatDoubles()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = new BalanceApplication(new(BehindProxy) { ["Auth:FailedLoginsPerAddress"] = "3", ["Auth:FailedLoginWindow"] = "00:05:00" }, store: Store)
        { ConfigureTestServices = s => s.AddSingleton<TimeProvider>(clock) };
        const string sprayer = "192.0.2.50";
        foreach (string name in new[] { "alice", "bob", "nobody" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, sprayer, name, "wrong-password")).StatusCode);
        var held = await LoginFromAsync(app, sprayer, "carol", "wrong-password");
        Assert.Equal(HttpStatusCode.TooManyRequests, held.StatusCode);
        Assert.InRange(held.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 290, 300);
        clock.Advance(TimeSpan.FromMinutes(5) + TimeSpan.FromSeconds(1));
        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, sprayer, "dave", "wrong-password")).StatusCode);
        var longer = await LoginFromAsync(app, sprayer, "erin", "wrong-password");
        Assert.Equal(HttpStatusCode.TooManyRequests, longer.StatusCode);
        Assert.InRange(longer.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 590, 600); // doubled
        Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "192.0.2.51", "alice", "demo1234")).StatusCode); // other addresses unaffected
    }

    [Fact]
    public async Task AUsernameGuessedFromManyAddressesIsSlowedButItsOwnerFromAKnownAddressIsNot()
    {
        await using var app = new BalanceApplication(new(BehindProxy) { ["Auth:FailedLoginsPerUsernameEverywhere"] = "3", ["Auth:SlowedLoginsPerSecond"] = "1" }, store: Store);
        Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "198.51.100.1", "alice", "demo1234")).StatusCode); // alice's own address
        for (int i = 0; i < 3; i++)
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, $"203.0.113.{i + 1}", "alice", "wrong-password")).StatusCode);
        // Past the budget, from new addresses: one check a second for alice, the rest 429 with a short Retry-After.
        var burst = await Task.WhenAll(Enumerable.Range(10, 6).Select(i => LoginFromAsync(app, $"203.0.113.{i}", "alice", "wrong-password")));
        var slowed = burst.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.InRange(slowed.Count, 3, 6);
        Assert.All(slowed, r => Assert.Equal(TimeSpan.FromSeconds(1), r.Headers.RetryAfter?.Delta));
        // Alice from where she logged in before is not slowed; a username nobody guessed is not either.
        for (int i = 0; i < 3; i++)
            Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "198.51.100.1", "alice", "demo1234")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "203.0.113.10", "bob", "demo1234")).StatusCode);
    }

    [Fact]
    public async Task AUsernameHasOneNormalFormForStorageLookupAndEveryCounter()
    {
        await using var app = new BalanceApplication(new(BehindProxy) { ["Auth:FailedLoginsPerUsername"] = "3" }, store: Store);
        var op = await app.LoginAsync("operator");
        using var http = app.Http(op.AccessToken);
        var created = await http.PostAsJsonAsync("/api/users", new { username = "Carol.X", password = "password123", role = "player" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal("carol.x", (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("username").GetString());
        Assert.Equal(HttpStatusCode.Conflict, (await http.PostAsJsonAsync("/api/users", new { username = "CAROL.x", password = "password123", role = "player" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await LoginFromAsync(app, "203.0.113.5", "CAROL.X", "password123")).StatusCode);
        // No Unicode spelling reaches alice: not a dotted capital I, not a fullwidth a, not a Cyrillic e.
        foreach (string lookalike in new[] { "al\u0130ce", "\uff41lice", "alic\u0435" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, "203.0.113.6", lookalike, "demo1234")).StatusCode);
        Assert.Empty(await http.GetFromJsonAsync<JsonElement[]>("/api/users?username=al%C4%B0ce") ?? []);
        // Every spelling of one name shares one counter.
        foreach (string spelling in new[] { "alice", "ALICE", "Alice" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginFromAsync(app, "203.0.113.7", spelling, "wrong-password")).StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, (await LoginFromAsync(app, "203.0.113.7", "aLiCe", "demo1234")).StatusCode);
    }
}
