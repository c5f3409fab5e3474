using System.Net;
using System.Net.Http.Json;
using Dapper;
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
        await using var a = new BalanceApplication(new(settings) { ["Balance:NodeId"] = "a" }, database.Location, store: Store.Postgres);
        await using var b = new BalanceApplication(new(settings) { ["Balance:NodeId"] = "b" }, database.Location, store: Store.Postgres);
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
        await using var a = new BalanceApplication(new() { ["Balance:NodeId"] = "a" }, database.Location, store: Store.Postgres);
        await using var b = new BalanceApplication(new() { ["Balance:NodeId"] = "b" }, database.Location, store: Store.Postgres);
        var login = await a.LoginAsync("alice");
        using var http = b.Http(login.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode);
        await using var connection = new NpgsqlConnection(database.Location);
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT count(*) FROM settings WHERE name = 'development_signing_key'"));
        Assert.Equal(1, await connection.ExecuteScalarAsync<int>("SELECT count(*) FROM users WHERE lower(username) = 'alice'"));
    }

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task ADatabaseFromANewerBuildIsRefusedAtStartAndLeftAsItWas(Store store)
    {
        using var database = new TempDatabase(store);
        await using (var first = new BalanceApplication(databasePath: database.Location, store: store)) await first.LoginAsync("alice");
        string bump = store == Store.Postgres ? "UPDATE schema_version SET version = version + 1" : "PRAGMA user_version = 2";
        await ExecuteAsync(store, database, bump);
        await using var second = new BalanceApplication(databasePath: database.Location, store: store);
        var refused = Assert.ThrowsAny<Exception>(() => second.BaseAddress);
        Assert.Contains("made by a newer Balance", Flatten(refused));
        string version = store == Store.Postgres ? "SELECT max(version) FROM schema_version" : "PRAGMA user_version";
        Assert.Equal(2L, Convert.ToInt64(await ScalarAsync(store, database, version)));
    }

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
