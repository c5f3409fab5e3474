using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;

namespace Balance.Tests;

// SQLite's in-place upgrade of the users table (schema 1 → 2): names lowered into their normal form, disabled_at added.
// (PostgreSQL's schema 3 runs the same steps in balance.postgres.sql; SchemaTests upgrades a schema-1 database there.)
public sealed class AuthUpgradeTests
{
    [Fact]
    public async Task ASchemaOneSqliteDatabaseGetsNormalNamesAndDisablingInPlace()
    {
        using var temp = new TempDatabase();
        await using (var app = new BalanceApplication(databasePath: temp.FilePath)) await app.LoginAsync("alice");
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        await using (var old = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={temp.FilePath}"))
            await old.ExecuteAsync("UPDATE users SET username = 'AlIcE' WHERE username = 'alice'; ALTER TABLE users DROP COLUMN disabled_at; PRAGMA user_version = 1;");
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        await using (var app = new BalanceApplication(databasePath: temp.FilePath))
        {
            var alice = await app.LoginAsync("ALICE");
            var op = await app.LoginAsync("operator");
            using var admin = app.Http(op.AccessToken);
            var disabled = await admin.PatchAsJsonAsync($"/api/users/{alice.UserId}", new { disabled = true });
            Assert.Equal(HttpStatusCode.OK, disabled.StatusCode);
            Assert.Equal("alice", (await disabled.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("username").GetString());
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        await using var check = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={temp.FilePath}");
        Assert.Equal(SqliteDatabase.SchemaVersion, await check.ExecuteScalarAsync<int>("PRAGMA user_version"));
        Assert.Equal(1, await check.ExecuteScalarAsync<int>("SELECT count(*) FROM users WHERE username = 'alice' AND disabled_at IS NOT NULL"));
    }
}
