using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Balance.Auth;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Balance.Tests;

// Operators administer accounts — a password change, disabling, ending every login — and ended logins and expired
// tokens do not pile up in memory or in the database.
public class AccountAdminTests
{
    /// The engine under test; the same tests run again on PostgreSQL (Postgres/OnPostgres.cs).
    protected virtual Store Store => Store.Sqlite;

    private static async Task<string?> CodeOf(HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<JsonElement>()).TryGetProperty("code", out var code) ? code.GetString() : null;

    private static async Task<HttpStatusCode> BalanceStatusAsync(BalanceApplication app, string token)
    {
        using var http = app.Http(token);
        return (await http.GetAsync("/api/balance")).StatusCode;
    }

    private static async Task<HttpResponseMessage> LoginAsync(BalanceApplication app, string username, string password)
    {
        using var http = app.Http();
        return await http.PostAsJsonAsync("/api/auth/login", new { username, password });
    }

    [Fact]
    public async Task ChangingThePasswordEndsEveryOtherLoginAndTheOldPasswordStopsWorking()
    {
        await using var app = new BalanceApplication(store: Store);
        var here = await app.LoginAsync("alice");
        var phone = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(phone.AccessToken);
        await socket.ReceiveMessageAsync(); // the snapshot
        using var http = app.Http(here.AccessToken);
        var wrong = await http.PostAsJsonAsync("/api/auth/password", new { current_password = "not-it", new_password = "new-password-1" });
        Assert.Equal(HttpStatusCode.Forbidden, wrong.StatusCode);
        Assert.Equal("wrong_password", await CodeOf(wrong));
        var missing = await http.PostAsJsonAsync("/api/auth/password", new { current_password = "demo1234" });
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.Equal(HttpStatusCode.OK, await BalanceStatusAsync(app, phone.AccessToken)); // nothing changed yet

        Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsJsonAsync("/api/auth/password", new { current_password = "demo1234", new_password = "new-password-1" })).StatusCode);
        Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, phone.AccessToken));
        using (var anonymous = app.Http())
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = phone.RefreshToken })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, await BalanceStatusAsync(app, here.AccessToken)); // the login that changed it goes on
        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync(app, "alice", "demo1234")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await LoginAsync(app, "alice", "new-password-1")).StatusCode);
    }

    [Fact]
    public async Task ADisabledUsersLoginsEndAtOnceAndNewOnesAreRefusedUntilEnabledAgain()
    {
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        using var admin = app.Http(op.AccessToken);

        var disabled = await admin.PatchAsJsonAsync($"/api/users/{alice.UserId}", new { disabled = true });
        Assert.Equal(HttpStatusCode.OK, disabled.StatusCode);
        var view = await disabled.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(alice.UserId, view.GetProperty("user_id").GetString());
        Assert.Equal("alice", view.GetProperty("username").GetString());
        Assert.Equal("player", view.GetProperty("role").GetString());
        Assert.True(view.GetProperty("disabled").GetBoolean());
        Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, alice.AccessToken));
        using (var anonymous = app.Http())
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = alice.RefreshToken })).StatusCode);
        var refused = await LoginAsync(app, "alice", "demo1234");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("user_disabled", await CodeOf(refused));
        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync(app, "alice", "wrong-password")).StatusCode); // says nothing without the password
        // Money can still be posted to a disabled player's wallet (a refund): disabling is about logins only.
        var enabled = await admin.PatchAsJsonAsync($"/api/users/{alice.UserId}", new { disabled = false });
        Assert.False((await enabled.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("disabled").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, (await LoginAsync(app, "alice", "demo1234")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await admin.PatchAsJsonAsync($"/api/users/{alice.UserId}", new { })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await admin.PatchAsJsonAsync($"/api/users/{op.UserId}", new { disabled = true })).StatusCode); // not oneself
    }

    [Fact]
    public async Task EndingAUsersSessionsEndsEveryLoginOfThatUserAndNoOtherAndTheyMayLogInAgain()
    {
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var one = await app.LoginAsync("alice");
        var two = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        await using var socket = await app.OpenAuthenticatedSocketAsync(two.AccessToken);
        await socket.ReceiveMessageAsync();
        using var admin = app.Http(op.AccessToken);
        Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/users/{one.UserId}/sessions")).StatusCode);
        Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, one.AccessToken));
        Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, two.AccessToken));
        Assert.Equal(HttpStatusCode.OK, await BalanceStatusAsync(app, bob.AccessToken));
        Assert.Equal(HttpStatusCode.OK, (await LoginAsync(app, "alice", "demo1234")).StatusCode);
    }

    [Fact]
    public async Task APlayerGets403OnEveryAdministrationRouteAndAnUnknownUserIs404()
    {
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        using var player = app.Http(alice.AccessToken);
        Assert.Equal(HttpStatusCode.Forbidden, (await player.PatchAsJsonAsync($"/api/users/{bob.UserId}", new { disabled = true })).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await player.DeleteAsync($"/api/users/{bob.UserId}/sessions")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, await BalanceStatusAsync(app, bob.AccessToken));
        using var admin = app.Http(op.AccessToken);
        string nobody = Guid.NewGuid().ToString();
        foreach (var response in new[] { await admin.PatchAsJsonAsync($"/api/users/{nobody}", new { disabled = true }), await admin.DeleteAsync($"/api/users/{nobody}/sessions") })
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("user_not_found", await CodeOf(response));
        }
    }

    [Fact]
    public async Task HousekeepingDeletesExpiredTokensAndDeadSessionsInBoundedBatchesAndForgetsEndedLogins()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = new BalanceApplication(new()
        {
            ["Auth:RefreshTokenLifetime"] = "00:10:00", ["Auth:AccessTokenLifetime"] = "00:05:00", ["Auth:HousekeepingBatch"] = "2", ["Auth:RefreshBurstPerLogin"] = "10",
            ["Auth:HousekeepingInterval"] = "1.00:00:00", // rounds run by the test alone
        }, store: Store) { ConfigureTestServices = s => s.AddSingleton<TimeProvider>(clock) };
        var sessions = app.Services.GetRequiredService<Sessions>();
        var housekeeping = app.Services.GetRequiredService<Housekeeping>();
        using var anonymous = app.Http();
        // A refresh loop leaves spent tokens behind; logouts leave ended sessions to remember.
        var looped = await app.LoginAsync("alice");
        string token = looped.RefreshToken;
        for (int i = 0; i < 5; i++)
            token = (await (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = token })).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("refresh_token").GetString()!;
        for (int i = 0; i < 3; i++)
        {
            var ended = await app.LoginAsync("bob");
            using var http = app.Http(ended.AccessToken);
            Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsync("/api/auth/logout", null)).StatusCode);
        }
        Assert.Equal(3, sessions.Remembered);
        Assert.Equal((0, 0), await housekeeping.RunOnceAsync()); // nothing is dead yet

        clock.Advance(TimeSpan.FromMinutes(6)); // every access token expired (plus the 30 s skew)
        Assert.Equal(3, sessions.Forget()); // ended logins are dropped from memory once no token of theirs can pass
        Assert.Equal(0, sessions.Remembered);
        clock.Advance(TimeSpan.FromMinutes(5)); // and every refresh token but none
        var live = await app.LoginAsync("alice"); // a login that must survive
        var (tokens, dead) = await housekeeping.RunOnceAsync();
        Assert.Equal(6 + 3, tokens); // alice's six (five spent, one expired unused) and one per ended bob login, two at a time
        Assert.Equal(1 + 3, dead);
        await using var db = Store == Store.Postgres ? (System.Data.Common.DbConnection)new Npgsql.NpgsqlConnection(app.DatabasePath)
            : new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={app.DatabasePath}");
        Assert.Equal(1, await db.ExecuteScalarAsync<int>("SELECT count(*) FROM sessions"));
        Assert.Equal(1, await db.ExecuteScalarAsync<int>("SELECT count(*) FROM refresh_tokens"));
        Assert.Equal(HttpStatusCode.OK, (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = live.RefreshToken })).StatusCode);
    }
}
