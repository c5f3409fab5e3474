using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance.Tests;

// SQLite's numbered upgrade steps (Storage/SqliteDatabase.Steps) on a file made before versions were numbered
// (user_version 0): the ledger in schema 1's shape, sessions without access_expires_at, refresh tokens without
// replaced_by. It opens, is upgraded in place in one step run, and a login made before the upgrade still refreshes.
public sealed class SqliteUpgradeStepsTests
{
    [Fact]
    public async Task AFileMadeBeforeVersionsWereNumberedIsUpgradedInPlaceAndItsLoginsLive()
    {
        using var temp = new TempDatabase();
        Login before;
        await using (var app = new BalanceApplication(databasePath: temp.FilePath)) before = await app.LoginAsync("alice");
        SqliteConnection.ClearAllPools();
        SqliteLogTests.DowngradeToSchemaOne(temp.FilePath);
        await using (var old = new SqliteConnection($"Data Source={temp.FilePath};Pooling=False"))
            await old.ExecuteAsync("ALTER TABLE sessions DROP COLUMN access_expires_at; ALTER TABLE refresh_tokens DROP COLUMN replaced_by; PRAGMA user_version = 0;");
        SqliteConnection.ClearAllPools();

        await using (var app = new BalanceApplication(databasePath: temp.FilePath))
        {
            using var http = app.Http();
            var refreshed = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = before.RefreshToken });
            Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
            string access = (await refreshed.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("access_token").GetString()!;
            using var alice = app.Http(access);
            Assert.Equal("100.00", (await alice.GetFromJsonAsync<JsonElement>("/api/balance?currency=USD")).GetProperty("balance").GetString());
        }
        SqliteConnection.ClearAllPools();
        await using var check = new SqliteConnection($"Data Source={temp.FilePath};Mode=ReadOnly;Pooling=False");
        Assert.Equal(SqliteDatabase.SchemaVersion, await check.ExecuteScalarAsync<long>("PRAGMA user_version"));
        Assert.Equal(0, await check.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE access_expires_at IS NULL"));
        Assert.Equal(1, await check.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM pragma_table_info('refresh_tokens') WHERE name = 'replaced_by'"));
        Assert.Equal(1, await check.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM pragma_table_info('ledger') WHERE name = 'user_prev'"));
    }
}
