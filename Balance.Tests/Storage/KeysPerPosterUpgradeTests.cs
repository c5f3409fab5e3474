using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Balance.Tests;

// An Idempotency-Key is unique per poster, (posted_by, idempotency_key). A database whose keys are unique across the
// whole ledger (an older schema) is upgraded in place at start, on both engines: every ledger row kept as it was,
// the old constraint gone, and from then on two operators may use one key. (Two operators, one key, on a fresh
// database: RestTests.TwoOperatorsWithOneKeyAndOneBodyPostTwoTransactionsAndEachReplaysItsOwn, on both engines.)
public sealed class KeysPerPosterUpgradeTests
{
    [Fact]
    public async Task ASqliteDatabaseWithGlobalKeysIsUpgradedInPlaceKeepingEveryRow()
    {
        using var temp = new TempDatabase();
        var (op, alice, bobKey) = await PostSomeAsync(temp.FilePath, Store.Sqlite);
        // Schema 3 (the ledger as a log) has no wallets table: the whole file goes back to schema 1's shape.
        SqliteLogTests.DowngradeToSchemaOne(temp.FilePath);
        string before;
        await using (var c = new SqliteConnection($"Data Source={temp.FilePath};Pooling=False"))
        {
            c.Open();
            Assert.Equal(1, await GlobalKeyIndexesAsync(c)); // the old shape, as schema 1 made it
            before = await SqliteLedgerTextAsync(c);
        }

        await using (var app = new BalanceApplication(databasePath: temp.FilePath))
            await TwoOperatorsShareAKeyAsync(app, op, alice, bobKey);

        await AssertUpgradedKeepingEveryRowAsync(temp.FilePath, before, async c =>
        {
            Assert.Equal(0, await GlobalKeyIndexesAsync(c));
            // Schema 3: no index on the key at all; the ledger writer checks (posted_by, key) in memory (SqliteLogTests).
            Assert.Equal(0, await c.ExecuteScalarAsync<long>("SELECT count(*) FROM pragma_index_list('ledger') AS i WHERE (SELECT group_concat(name) FROM pragma_index_info(i.name)) LIKE '%idempotency_key%'"));
        });
    }

    // A file stamped schema 2, as the first builds of it left one: keys unique per poster (ledger_by_key), the users
    // part not yet there (no disabled_at, a name not in its normal form). Step 3 rebuilds its ledger as a log and
    // brings its users along; every row kept.
    [Fact]
    public async Task ASqliteDatabaseOfSchemaTwoIsUpgradedInPlaceKeepingEveryRow()
    {
        using var temp = new TempDatabase();
        var (op, alice, bobKey) = await PostSomeAsync(temp.FilePath, Store.Sqlite);
        SqliteLogTests.DowngradeToSchemaOne(temp.FilePath);
        string before;
        await using (var c = new SqliteConnection($"Data Source={temp.FilePath};Pooling=False"))
        {
            c.Open();
            string ledger = await c.ExecuteScalarAsync<string>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger'") ?? "";
            string perPoster = System.Text.RegularExpressions.Regex.Replace(ledger, @"(idempotency_key\s+TEXT\s+NOT NULL)\s+UNIQUE", "$1");
            Assert.NotEqual(ledger, perPoster);
            perPoster = System.Text.RegularExpressions.Regex.Replace(perPoster, @"^CREATE TABLE\s+""?ledger""?", "CREATE TABLE ledger_v2");
            await c.ExecuteAsync("PRAGMA foreign_keys = OFF");
            await c.ExecuteAsync($"""
                BEGIN;
                {perPoster};
                INSERT INTO ledger_v2 SELECT * FROM ledger ORDER BY seq;
                DROP TABLE ledger;
                ALTER TABLE ledger_v2 RENAME TO ledger;
                CREATE INDEX ledger_by_user ON ledger (user_id, seq);
                CREATE UNIQUE INDEX ledger_by_key ON ledger (posted_by, idempotency_key);
                ALTER TABLE users DROP COLUMN disabled_at;
                UPDATE users SET username = 'AlIcE' WHERE username = 'alice';
                PRAGMA user_version = 2;
                COMMIT;
                """);
            await c.ExecuteAsync("PRAGMA foreign_keys = ON");
            Assert.Equal(0, await GlobalKeyIndexesAsync(c));
            Assert.Empty(await c.QueryAsync("PRAGMA foreign_key_check"));
            before = await SqliteLedgerTextAsync(c);
        }
        SqliteConnection.ClearAllPools();

        await using (var app = new BalanceApplication(databasePath: temp.FilePath))
        {
            await TwoOperatorsShareAKeyAsync(app, op, alice, bobKey);
            Assert.Equal(alice.UserId, (await app.LoginAsync("alice")).UserId); // its name in normal form
        }

        await AssertUpgradedKeepingEveryRowAsync(temp.FilePath, before, async c =>
        {
            Assert.Equal(1, await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM pragma_table_info('ledger') WHERE name = 'user_prev'"));
            Assert.Equal(1, await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM pragma_table_info('users') WHERE name = 'disabled_at'"));
        });
    }

    // The upgraded file, read-only: the newest schema, its shape (shape), every old row as it was in its place and the
    // three TwoOperatorsShareAKeyAsync posted after them, sound foreign keys, and wallets that are their ledgers.
    private static async Task AssertUpgradedKeepingEveryRowAsync(string db, string before, Func<SqliteConnection, Task> shape)
    {
        SqliteConnection.ClearAllPools();
        await using (var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False"))
        {
            c.Open();
            Assert.Equal(Balance.Storage.Sqlite.SqliteDatabase.SchemaVersion, await c.ExecuteScalarAsync<long>("PRAGMA user_version"));
            await shape(c);
            string after = await SqliteLedgerTextAsync(c);
            Assert.StartsWith(before, after); // every old row, as it was, in its place; the new ones after it
            Assert.Equal(3, after.Split('\n').Length - before.Split('\n').Length);
            Assert.Empty(await c.QueryAsync("PRAGMA foreign_key_check"));
        }
        LedgerAudit.Read(db).AssertConsistent();
    }

    [Fact]
    public async Task APostgresDatabaseOfSchemaTwoIsUpgradedInPlaceKeepingEveryRow()
    {
        using var database = new TempDatabase(Store.Postgres);
        var (op, alice, bobKey) = await PostSomeAsync(database.Location, Store.Postgres);
        string before;
        await using (var c = new NpgsqlConnection(database.Location))
        {
            await c.ExecuteAsync("""
                DROP INDEX ledger_by_key;
                ALTER TABLE ledger ADD CONSTRAINT ledger_idempotency_key_key UNIQUE (idempotency_key);
                UPDATE schema_version SET version = 2;
                """);
            before = await PostgresLedgerTextAsync(c);
        }

        await using (var app = new BalanceApplication(databasePath: database.Location, store: Store.Postgres))
            await TwoOperatorsShareAKeyAsync(app, op, alice, bobKey);

        await using (var c = new NpgsqlConnection(database.Location))
        {
            Assert.Equal(Balance.Storage.Postgres.PostgresDatabase.SchemaVersion, await c.ExecuteScalarAsync<int>("SELECT max(version) FROM schema_version"));
            Assert.Equal(0, await c.ExecuteScalarAsync<int>("SELECT count(*) FROM pg_constraint WHERE conrelid = 'ledger'::regclass AND conname = 'ledger_idempotency_key_key'"));
            Assert.Equal("CREATE UNIQUE INDEX ledger_by_key ON public.ledger USING btree (posted_by, idempotency_key)",
                await c.ExecuteScalarAsync<string>("SELECT pg_get_indexdef('ledger_by_key'::regclass)"));
            string after = await PostgresLedgerTextAsync(c);
            Assert.StartsWith(before, after);
            Assert.Equal(3, after.Split('\n').Length - before.Split('\n').Length);
        }
        LedgerAudit.Read(database.Location).AssertConsistent();
    }

    // A deposit, a bet and its rollback by the operator (the rollback's reference to its bet must survive a rebuild),
    // and a deposit to bob with the key returned.
    private static async Task<(Login Op, Login Alice, string BobKey)> PostSomeAsync(string location, Store store)
    {
        await using var app = new BalanceApplication(databasePath: location, store: store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        using (var admin = app.Http(op.AccessToken))
            Assert.Equal(HttpStatusCode.Created, (await admin.PostAsJsonAsync("/api/users", new { username = "cashier2", password = "password123", role = "operator" })).StatusCode);
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "EUR" }, "old-1");
        var bet = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "1.25", currency = "USD" }, "old-2");
        await app.PostOkAsync(op.AccessToken, new { type = "rollback", reverses = bet.GetProperty("transaction_id").GetString() }, "old-3");
        await app.PostOkAsync(op.AccessToken, new { user_id = bob.UserId, type = "deposit", amount = "2.00", currency = "USD" }, "old-4");
        return (op, alice, "old-4");
    }

    // On the upgraded database: the operator's old key still replays its first answer; a second operator using that key
    // with the same body posts a transaction of its own, and replays it in turn; both keep their rules for another body.
    private static async Task TwoOperatorsShareAKeyAsync(BalanceApplication app, Login op, Login alice, string key)
    {
        var op2 = await app.LoginAsync("cashier2", "password123");
        var bob = await app.LoginAsync("bob");
        var body = new { user_id = bob.UserId, type = "deposit", amount = "2.00", currency = "USD" };
        var replay = await app.PostTransactionAsync(op.AccessToken, body, key);
        Assert.Equal(HttpStatusCode.Created, replay.StatusCode);
        Assert.Equal("true", replay.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal("2.00", (await replay.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("balance").GetString());

        var theirs = await app.PostOkAsync(op2.AccessToken, body, key);
        Assert.Equal("4.00", theirs.GetProperty("balance").GetString());
        var theirReplay = await app.PostTransactionAsync(op2.AccessToken, body, key);
        Assert.Equal("true", theirReplay.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(theirs.ToString(), (await theirReplay.Content.ReadFromJsonAsync<JsonElement>()).ToString());
        Assert.Equal(HttpStatusCode.Conflict, (await app.PostTransactionAsync(op2.AccessToken, body with { amount = "3.00" }, key)).StatusCode);

        // Keys new since the upgrade behave alike; and alice's rolled-back bet stays rolled back once.
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" }, "new-1");
        await app.PostOkAsync(op2.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" }, "new-1");
    }

    private static Task<long> GlobalKeyIndexesAsync(SqliteConnection c) => c.ExecuteScalarAsync<long>("""
        SELECT count(*) FROM pragma_index_list('ledger') AS i
        WHERE i."unique" AND (SELECT group_concat(name) FROM pragma_index_info(i.name)) = 'idempotency_key'
        """);

    private static async Task<string> SqliteLedgerTextAsync(SqliteConnection c) => string.Join("\n", await c.QueryAsync<string>("""
        SELECT seq || '|' || transaction_id || '|' || user_id || '|' || type || '|' || amount || '|' || currency || '|' || balance_after || '|' ||
            version || '|' || idempotency_key || '|' || request_hash || '|' || coalesce(reference, '-') || '|' || coalesce(reverses, '-') || '|' ||
            posted_by || '|' || created_at FROM ledger ORDER BY seq
        """)) + "\n";

    private static async Task<string> PostgresLedgerTextAsync(NpgsqlConnection c) => string.Join("\n", await c.QueryAsync<string>("""
        SELECT concat_ws('|', seq, tx, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash,
            coalesce(reference, '-'), coalesce(reverses, '-'), posted_by, created_at) FROM ledger ORDER BY seq
        """)) + "\n";
}
