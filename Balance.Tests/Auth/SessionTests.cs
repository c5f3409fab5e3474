using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Balance.Tests;

// Login sessions: how long a login lives, that an ended one stays ended, and how a refresh whose answer was lost is
// told apart from a stolen refresh token.
public class SessionTests
{
    /// The engine under test; the same tests run again on PostgreSQL (Postgres/OnPostgres.cs).
    protected virtual Store Store => Store.Sqlite;

    private static async Task<(HttpStatusCode Status, string? Code, Login? Pair)> RefreshAsync(BalanceApplication app, string refreshToken, string userId)
    {
        using var http = app.Http();
        var response = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = refreshToken });
        var json = await response.Content.ReadFromJsonAsync<JsonElement>();
        if (response.StatusCode != HttpStatusCode.OK) return (response.StatusCode, json.GetProperty("code").GetString(), null);
        return (response.StatusCode, null, new Login(json.GetProperty("access_token").GetString()!, json.GetProperty("refresh_token").GetString()!, userId, "player"));
    }

    private static async Task<HttpStatusCode> BalanceStatusAsync(BalanceApplication app, string accessToken)
    {
        using var http = app.Http(accessToken);
        return (await http.GetAsync("/api/balance")).StatusCode;
    }

    // The service on a clock the test moves: lifetimes and graces are checked at exact moments, not slept through.
    private BalanceApplication OnClock(FakeTimeProvider clock, Dictionary<string, string?> settings, string? databasePath = null) =>
        new(settings, databasePath, store: Store) { ConfigureTestServices = services => services.AddSingleton<TimeProvider>(clock) };

    [Fact]
    public async Task ALoginRefreshedPastItsFirstExpiryAndThenEndedStaysEndedAfterARestart()
    {
        using var temp = new TempDatabase(Store);
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = new Dictionary<string, string?> { ["Auth:RefreshTokenLifetime"] = "00:02:00", ["Auth:AccessTokenLifetime"] = "00:10:00" };
        Login last;
        await using (var app = OnClock(clock, settings, temp.Location))
        {
            var login = await app.LoginAsync("alice");
            clock.Advance(TimeSpan.FromMinutes(1));
            var (_, _, second) = await RefreshAsync(app, login.RefreshToken, login.UserId);
            Assert.NotNull(second);
            clock.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1)); // past the first refresh token's end
            // Past the login's first expiry, the refreshed login slides on.
            var (status, code, third) = await RefreshAsync(app, second!.RefreshToken, login.UserId);
            Assert.True(status == HttpStatusCode.OK, $"a sliding login refreshes past its first expiry: {status} {code}");
            last = third!;
            using var http = app.Http(last.AccessToken);
            Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = last.RefreshToken })).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, last.AccessToken));
        }
        await using (var app = OnClock(clock, settings, temp.Location))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, last.AccessToken));
            await using var socket = await app.OpenAuthenticatedSocketAsync(last.AccessToken);
            Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        }
    }

    [Fact]
    public async Task ALoginEndsAtItsAbsoluteCapHoweverOftenItIsRefreshed()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = OnClock(clock, new() { ["Auth:SessionLifetime"] = "00:03:00", ["Auth:AccessTokenLifetime"] = "00:10:00" });
        var login = await app.LoginAsync("alice");
        clock.Advance(TimeSpan.FromMinutes(1));
        using (var http = app.Http())
        {
            var response = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = login.RefreshToken });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var pair = await response.Content.ReadFromJsonAsync<JsonElement>();
            // Neither token outlives the login.
            Assert.InRange(pair.GetProperty("expires_in").GetInt32(), 119, 120);
            login = login with { AccessToken = pair.GetProperty("access_token").GetString()!, RefreshToken = pair.GetProperty("refresh_token").GetString()! };
        }
        Assert.Equal(HttpStatusCode.OK, await BalanceStatusAsync(app, login.AccessToken));
        clock.Advance(TimeSpan.FromMinutes(2) + TimeSpan.FromSeconds(1)); // past the cap and the JWT's one-second resolution
        var (status, code, _) = await RefreshAsync(app, login.RefreshToken, login.UserId);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal("refresh_token_expired", code);
    }

    [Fact]
    public async Task ARefreshWhoseAnswerWasLostMayBeRepeatedWithinTheGraceAndOnlyOneSuccessorLives()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:RefreshReuseGrace"] = "00:00:30" });
        var login = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(login.AccessToken);
        await socket.ReceiveMessageAsync(Patience.Long);

        var (_, _, lost) = await RefreshAsync(app, login.RefreshToken, login.UserId); // the client never saw this answer
        Assert.NotNull(lost);
        var (status, code, retried) = await RefreshAsync(app, login.RefreshToken, login.UserId);
        Assert.True(status == HttpStatusCode.OK, $"a repeated refresh within the grace gets a fresh pair: {status} {code}");
        Assert.Equal(1, Volatile.Read(ref app.Services.GetRequiredService<Logins>().GraceRetries)); // counted: it may be a copy
        Assert.NotEqual(lost!.RefreshToken, retried!.RefreshToken);

        // The retried pair carries the login on.
        var (nextStatus, _, next) = await RefreshAsync(app, retried.RefreshToken, login.UserId);
        Assert.Equal(HttpStatusCode.OK, nextStatus);
        Assert.Equal(HttpStatusCode.OK, await BalanceStatusAsync(app, next!.AccessToken));

        // The unseen successor stopped working: presented now, it is a copy in someone else's hands.
        var (lostStatus, lostCode, _) = await RefreshAsync(app, lost.RefreshToken, login.UserId);
        Assert.Equal(HttpStatusCode.Unauthorized, lostStatus);
        Assert.Equal("refresh_token_reused", lostCode);
        Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, next.AccessToken));
    }

    [Fact]
    public async Task ASpentRefreshTokenPresentedAfterTheGraceEndsTheLogin()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = OnClock(clock, new() { ["Auth:RefreshReuseGrace"] = "00:00:30" });
        var login = await app.LoginAsync("alice");
        var (_, _, successor) = await RefreshAsync(app, login.RefreshToken, login.UserId);
        await using var socket = await app.OpenAuthenticatedSocketAsync(successor!.AccessToken);
        await socket.ReceiveMessageAsync(Patience.Long);
        clock.Advance(TimeSpan.FromSeconds(31));

        var (status, code, _) = await RefreshAsync(app, login.RefreshToken, login.UserId);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal("refresh_token_reused", code);
        Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        var (successorStatus, successorCode, _) = await RefreshAsync(app, successor.RefreshToken, login.UserId);
        Assert.Equal(HttpStatusCode.Unauthorized, successorStatus);
        Assert.Equal("session_revoked", successorCode);
    }

    [Fact]
    public async Task ASpentTokenWhoseSuccessorWasUsedEndsTheLoginEvenWithinTheGrace()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:RefreshReuseGrace"] = "00:00:30" });
        var login = await app.LoginAsync("alice");
        var (_, _, second) = await RefreshAsync(app, login.RefreshToken, login.UserId);
        var (_, _, third) = await RefreshAsync(app, second!.RefreshToken, login.UserId); // the answer arrived: its successor is in use

        var (status, code, _) = await RefreshAsync(app, login.RefreshToken, login.UserId);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal("refresh_token_reused", code);
        Assert.Equal(HttpStatusCode.Unauthorized, await BalanceStatusAsync(app, third!.AccessToken));
    }

    [Fact]
    public async Task ALogoutRacingASocketsAuthNeverLeavesThatSocketOpen()
    {
        // 40 sockets of one player within seconds: past the reconnect limit (burst 20, 2/s), which is not under test here.
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:LoginAttemptsPerMinutePerIp"] = "1000", ["Balance:Socket:ConnectBurstPerPlayer"] = "1000" });
        for (int round = 0; round < 40; round++)
        {
            var login = await app.LoginAsync("alice");
            await using var socket = await app.OpenSocketAsync();
            using var http = app.Http(login.AccessToken);
            var auth = socket.SendAuthAsync(login.AccessToken);
            var logout = http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = login.RefreshToken });
            await auth;
            Assert.Equal(HttpStatusCode.NoContent, (await logout).StatusCode);
            // Whichever came first, the socket of an ended login is closed: never left open until its token expires.
            // If the auth won, its snapshot (one balance) came before the close; nothing else may.
            var first = await socket.ReceiveAsync(Patience.Long);
            if (first is { } snapshot) Assert.Equal("balance", snapshot.GetProperty("type").GetString());
            Assert.Equal(4503, first is null ? (int)socket.Socket.CloseStatus!.Value : await socket.ReceiveCloseAsync(Patience.Long));
        }
    }
}
