using System.Net;
using System.Net.Http.Json;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Balance.Tests;

// What nodes on one PostgreSQL database must share beyond the ledger, with two hosts in this process on one database:
// failed-login counts per username (an attacker gains nothing by spreading guesses over nodes), the Development signing
// key, and the schema's version guard, which both engines apply.
public sealed class SharedStateTests
{
    [Fact]
    public async Task FailedLoginsOnOneNodeLockTheUsernameOnTheOther()
    {
        using var database = new TempDatabase(Store.Postgres);
        var settings = new Dictionary<string, string?> { ["Auth:FailedLoginsPerUsername"] = "3", ["Auth:LoginAttemptsPerMinutePerIp"] = "1000" };
        await using var a = Node(database, "a", settings);
        await using var b = Node(database, "b", settings);
        using var httpA = a.Http();
        using var httpB = b.Http();
        Assert.Equal(HttpStatusCode.Unauthorized, (await httpA.PostAsJsonAsync("/api/auth/login", new { username = "alice", password = "wrong-password" })).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await httpB.PostAsJsonAsync("/api/auth/login", new { username = "ALICE", password = "wrong-password" })).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await httpA.PostAsJsonAsync("/api/auth/login", new { username = "alice", password = "wrong-password" })).StatusCode);
        // Three failures over two nodes: each node alone saw fewer than the limit, yet both now refuse the right password.
        foreach (var http in new[] { httpA, httpB })
        {
            var limited = await http.PostAsJsonAsync("/api/auth/login", new { username = "alice", password = "demo1234" });
            Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
            Assert.True(limited.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After {limited.Headers.RetryAfter}");
        }
        await b.LoginAsync("bob"); // another username is not affected
    }

    [Fact]
    public async Task TokensOfOneNodeWorkOnTheOtherWithTheDevelopmentKeyKeptInTheDatabase()
    {
        using var database = new TempDatabase(Store.Postgres);
        await using var a = Node(database, "a");
        await using var b = Node(database, "b");
        var login = await a.LoginAsync("alice");
        using var http = b.Http(login.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode);
        await using var connection = new NpgsqlConnection(database.Location);
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT count(*) FROM settings WHERE name = 'development_signing_key'"));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT count(*) FROM users WHERE lower(username) = 'alice'"));
    }

    // A report left open in psql, another application's long transaction: it holds pg_snapshot_xmin, and a feed that
    // read only below it would leave every socket on the other nodes on a stale balance, and an ended login's sockets
    // open, for as long as that transaction lasts.
    [Fact]
    public async Task AnOpenTransactionElsewhereHoldsNoBalanceOrLogoutBackOnTheOtherNode()
    {
        using var database = new TempDatabase(Store.Postgres);
        await using var a = Node(database, "a");
        await using var b = Node(database, "b");
        var op = await a.LoginAsync("operator");
        var alice = await a.LoginAsync("alice");
        await using var socket = await b.OpenAuthenticatedSocketAsync(alice.AccessToken);
        Assert.Equal("100.00", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());

        await using var held = new NpgsqlConnection(database.Location);
        await held.OpenAsync();
        await using var open = await held.BeginTransactionAsync();
        await held.ExecuteAsync("SELECT pg_current_xact_id()", transaction: open); // takes a transaction id: the horizon stops here

        await a.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
        var pushed = await socket.ReceiveMessageAsync(TimeSpan.FromSeconds(5)); // the poll is 250 ms: seconds, not "when it ends"
        Assert.Equal(("101.00", 2L), (pushed.GetProperty("balance").GetString(), pushed.GetProperty("version").GetInt64()));

        // The cursor itself waits behind the open transaction, and the lag says so.
        var feed = b.Services.GetRequiredService<Balance.Storage.Postgres.ChangeFeed>();
        var deadline = DateTime.UtcNow + Patience.Long;
        while (feed.LagSeconds < 1) { Assert.True(DateTime.UtcNow < deadline, $"lag {feed.LagSeconds}"); await Task.Delay(100); }

        using (var http = a.Http(alice.AccessToken))
            Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsJsonAsync("/api/auth/logout", new { })).StatusCode);
        Assert.Equal(4503, await socket.ReceiveCloseAsync(TimeSpan.FromSeconds(5)));
        await open.RollbackAsync();
    }

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task ADatabaseFromANewerBuildIsRefusedAtStartAndLeftAsItWas(Store store)
    {
        using var database = new TempDatabase(store);
        await using (var first = new BalanceApplication(databasePath: database.Location, store: store)) await first.LoginAsync("alice");
        string version = store == Store.Postgres ? "SELECT max(version) FROM schema_version" : "PRAGMA user_version";
        long newer = Convert.ToInt64(await ScalarAsync(store, database, version)) + 1;
        string bump = store == Store.Postgres ? $"UPDATE schema_version SET version = {newer}" : $"PRAGMA user_version = {newer}";
        await ExecuteAsync(store, database, bump);
        await using var second = new BalanceApplication(databasePath: database.Location, store: store);
        var refused = Assert.ThrowsAny<Exception>(() => second.BaseAddress);
        Assert.Contains("made by a newer Balance", Flatten(refused));
        Assert.Equal(newer, Convert.ToInt64(await ScalarAsync(store, database, version)));
    }

    // One node of the cluster on the shared database, in this process: its own NodeId, the test's settings.
    private static BalanceApplication Node(TempDatabase database, string id, Dictionary<string, string?>? settings = null) =>
        new(new(settings ?? []) { ["Balance:NodeId"] = id }, database.Location, store: Store.Postgres);

    private static string Flatten(Exception e) => e.InnerException is null ? e.Message : $"{e.Message} | {Flatten(e.InnerException)}";

    private static async Task ExecuteAsync(Store store, TempDatabase database, string sql)
    {
        await using var c = Connect(store, database);
        await c.ExecuteAsync(sql);
    }

    private static async Task<object?> ScalarAsync(Store store, TempDatabase database, string sql)
    {
        await using var c = Connect(store, database);
        return await c.ExecuteScalarAsync(sql);
    }

    private static System.Data.Common.DbConnection Connect(Store store, TempDatabase database) => store == Store.Postgres
        ? new NpgsqlConnection(database.Location)
        : new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={database.FilePath};Pooling=False");
}
