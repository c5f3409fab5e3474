using Dapper;
using Npgsql;

namespace Balance.Tests;

// The PostgreSQL ledger names its users without foreign keys (their per-row locks cost the writer up to half its
// throughput): what the keys guarded is held by the writer's rules (a missing player or a poster who is not an operator
// here is refused: RestTests) and by triggers, which refuse to delete or re-key a user or to change the ledger; a
// database made by the schema before is upgraded in place at start.
public sealed class SchemaTests
{
    [Fact]
    public async Task UsersAreNeverDeletedAndTheLedgerIsAppendOnly()
    {
        using var database = new TempDatabase(Store.Postgres);
        await using var app = new BalanceApplication(databasePath: database.Location, store: Store.Postgres);
        var op = await app.LoginAsync("operator");
        var bob = await app.LoginAsync("bob");
        await app.PostOkAsync(op.AccessToken, new { user_id = bob.UserId, type = "deposit", amount = "5.00", currency = "USD" });

        await using var c = new NpgsqlConnection(database.Location);
        foreach (string sql in new[]
        {
            $"DELETE FROM users WHERE id = '{bob.UserId}'",
            "TRUNCATE users CASCADE",
            $"UPDATE users SET id = gen_random_uuid() WHERE id = '{bob.UserId}'",
            "DELETE FROM ledger",
            "UPDATE ledger SET amount = amount + 1",
            "TRUNCATE ledger",
        })
        {
            var refused = await Assert.ThrowsAsync<PostgresException>(() => c.ExecuteAsync(sql));
            Assert.Equal(PostgresErrorCodes.RestrictViolation, refused.SqlState);
        }
        Assert.Equal(1, await c.ExecuteScalarAsync<int>("SELECT count(*) FROM users WHERE id = @id", new { id = Guid.Parse(bob.UserId) }));
        Assert.Equal(500L, await c.ExecuteScalarAsync<long>("SELECT amount FROM ledger WHERE user_id = @id", new { id = Guid.Parse(bob.UserId) }));
    }

    [Fact]
    public async Task ADatabaseOfSchemaOneIsUpgradedInPlaceAndKeepsItsLedger()
    {
        using var database = new TempDatabase(Store.Postgres);
        string bob;
        await using (var first = new BalanceApplication(databasePath: database.Location, store: Store.Postgres))
        {
            var op = await first.LoginAsync("operator");
            bob = (await first.LoginAsync("bob")).UserId;
            await first.PostOkAsync(op.AccessToken, new { user_id = bob, type = "deposit", amount = "7.00", currency = "USD" });
        }
        await using (var c = new NpgsqlConnection(database.Location))
            await c.ExecuteAsync("""
                DROP TRIGGER users_never_deleted ON users;
                DROP TRIGGER ledger_append_only ON ledger;
                ALTER TABLE ledger ADD CONSTRAINT ledger_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
                                   ADD CONSTRAINT ledger_posted_by_fkey FOREIGN KEY (posted_by) REFERENCES users (id);
                UPDATE schema_version SET version = 1;
                """);

        await using var second = new BalanceApplication(databasePath: database.Location, store: Store.Postgres);
        var op2 = await second.LoginAsync("operator");
        var after = await second.PostOkAsync(op2.AccessToken, new { user_id = bob, type = "deposit", amount = "1.00", currency = "USD" });
        Assert.Equal("8.00", after.GetProperty("balance").GetString());
        await using var check = new NpgsqlConnection(database.Location);
        Assert.Equal(Balance.Storage.Postgres.PostgresDatabase.SchemaVersion, await check.ExecuteScalarAsync<int>("SELECT max(version) FROM schema_version"));
        Assert.Equal(0, await check.ExecuteScalarAsync<int>(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'ledger'::regclass AND conname IN ('ledger_user_id_fkey', 'ledger_posted_by_fkey')"));
        Assert.Equal(2, await check.ExecuteScalarAsync<int>(
            "SELECT count(*) FROM pg_trigger WHERE tgname IN ('users_never_deleted', 'ledger_append_only') AND NOT tgisinternal"));
        Assert.Equal(2, await check.ExecuteScalarAsync<int>("SELECT count(*) FROM ledger WHERE user_id = @id", new { id = Guid.Parse(bob) }));
    }

    // Schema 4: a username is looked up by its normal form (`username = @key`, one query for both engines), so
    // PostgreSQL needs an index on the column itself; schema 3's only index was on lower(username).
    [Fact]
    public async Task ADatabaseOfSchemaThreeGetsTheIndexItsUsernameLookupUses()
    {
        using var database = new TempDatabase(Store.Postgres);
        await using (var first = new BalanceApplication(databasePath: database.Location, store: Store.Postgres))
            await first.LoginAsync("bob");
        await using (var c = new NpgsqlConnection(database.Location))
            await c.ExecuteAsync("DROP INDEX users_username_normal; UPDATE schema_version SET version = 3;");

        await using var second = new BalanceApplication(databasePath: database.Location, store: Store.Postgres);
        var bob = await second.LoginAsync("BOB"); // any spelling: the service looks up the normal form
        Assert.False(string.IsNullOrEmpty(bob.UserId));
        await using var check = new NpgsqlConnection(database.Location);
        await check.OpenAsync();
        Assert.Equal(4, await check.ExecuteScalarAsync<int>("SELECT max(version) FROM schema_version"));
        await check.ExecuteAsync("SET enable_seqscan = off"); // a demo table is small enough to scan; ask whether the index can serve
        string plan = string.Join("\n", await check.QueryAsync<string>("EXPLAIN SELECT id FROM users WHERE username = 'bob'"));
        Assert.Contains("users_username_normal", plan);
    }
}
