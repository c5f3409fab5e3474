using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Balance.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

// The SQLite ledger as a log (schema 3, its key hashes one row per batch since schema 4): the upgrade of a schema-1
// or schema-3 file in place, the Idempotency-Key window, and the writer's in-memory state against the ledger it is built from.
public sealed class SqliteLogTests
{
    /// Puts a database the service made back into schema 1's shape, rows unchanged: the ledger with its own indexes
    /// (idempotency key, per player), the wallets table filled from the ledger, user_version 1. firstShape: also the
    /// very first schema's (no wallets.last_transaction_id, a UNIQUE (user_id, currency, version) on the ledger).
    internal static void DowngradeToSchemaOne(string db, bool firstShape = false)
    {
        SqliteConnection.ClearAllPools();
        using var stream = typeof(SqliteLogTests).Assembly.GetManifestResourceStream("schema-1.db.sql")!;
        string schema = new StreamReader(stream).ReadToEnd();
        string Part(string from)
        {
            int s = schema.IndexOf(from, StringComparison.Ordinal);
            return schema[s..(schema.IndexOf(");", s, StringComparison.Ordinal) + 2)];
        }
        using var c = new SqliteConnection($"Data Source={db};Pooling=False");
        c.Open();
        void Exec(string sql) { using var cmd = c.CreateCommand(); cmd.CommandText = sql; cmd.ExecuteNonQuery(); }
        Exec("PRAGMA foreign_keys = OFF");
        Exec("BEGIN");
        Exec(Part("CREATE TABLE IF NOT EXISTS ledger (").Replace("CREATE TABLE IF NOT EXISTS ledger (", "CREATE TABLE ledger_v1 ("));
        Exec(Part("CREATE TABLE IF NOT EXISTS wallets (").Replace("CREATE TABLE IF NOT EXISTS wallets (", "CREATE TABLE wallets_v1 ("));
        Exec("""
            INSERT INTO ledger_v1 (seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at)
            SELECT seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at FROM ledger ORDER BY seq;
            INSERT INTO wallets_v1 (user_id, currency, balance, version, updated_at, last_transaction_id)
            SELECT user_id, currency, balance, version, updated_at, last_transaction_id FROM wallets;
            DROP VIEW wallets; DROP TABLE ledger; DROP TABLE ledger_key_runs; DROP TABLE wallet_checkpoint; DROP TABLE ledger_meta;
            ALTER TABLE ledger_v1 RENAME TO ledger; ALTER TABLE wallets_v1 RENAME TO wallets;
            CREATE INDEX ledger_by_user ON ledger (user_id, seq);
            PRAGMA user_version = 1;
            """);
        if (firstShape) Exec("ALTER TABLE wallets DROP COLUMN last_transaction_id; CREATE UNIQUE INDEX first_schema_wallet_version ON ledger (user_id, currency, version);");
        Exec("COMMIT");
        Exec("PRAGMA foreign_keys = ON");
    }

    /// Puts a database the service made back into schema 3's shape: the key hashes one row per ledger row (ledger_keys).
    private static void DowngradeToSchemaThree(string db)
    {
        SqliteConnection.ClearAllPools();
        using var c = new SqliteConnection($"Data Source={db};Pooling=False");
        c.Open();
        using var tx = c.BeginTransaction();
        using var create = c.CreateCommand();
        create.CommandText = "CREATE TABLE ledger_keys (seq INTEGER PRIMARY KEY, key_hash INTEGER NOT NULL)";
        create.ExecuteNonQuery();
        using var insert = c.CreateCommand();
        insert.CommandText = "INSERT INTO ledger_keys (seq, key_hash) VALUES ($seq, $hash)";
        var seq = insert.Parameters.Add("$seq", SqliteType.Integer);
        var hash = insert.Parameters.Add("$hash", SqliteType.Integer);
        foreach (var (first, run) in KeyRuns(c))
            for (int i = 0; i < run.Length / 8; i++)
            {
                (seq.Value, hash.Value) = (first + i, LedgerState.KeyHashAt(run, i));
                insert.ExecuteNonQuery();
            }
        create.CommandText = "DROP TABLE ledger_key_runs; PRAGMA user_version = 3;";
        create.ExecuteNonQuery();
        tx.Commit();
    }

    private static List<(long First, byte[] Hashes)> KeyRuns(SqliteConnection c)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT first_seq, hashes FROM ledger_key_runs ORDER BY first_seq";
        using var r = cmd.ExecuteReader();
        var runs = new List<(long, byte[])>();
        while (r.Read()) runs.Add((r.GetInt64(0), r.GetFieldValue<byte[]>(1)));
        return runs;
    }

    /// The key runs hold every ledger row's key hash once, in seq order, each the keyed hash of that row's key.
    internal static void AssertKeyRunsTileTheLedger(string db)
    {
        SqliteConnection.ClearAllPools();
        using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
        c.Open();
        byte[] seed = LedgerState.Seed(c);
        var keys = new List<(long Seq, string Key)>();
        using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT seq, idempotency_key FROM ledger ORDER BY seq";
            using var r = cmd.ExecuteReader();
            while (r.Read()) keys.Add((r.GetInt64(0), r.GetString(1)));
        }
        var covered = new List<(long Seq, long Hash)>();
        foreach (var (first, run) in KeyRuns(c))
            for (int i = 0; i < run.Length / 8; i++) covered.Add((first + i, LedgerState.KeyHashAt(run, i)));
        Assert.Equal(keys.Select(k => (k.Seq, LedgerState.KeyHash(seed, k.Key))), covered);
    }

    private static long Scalar(string db, string sql)
    {
        using var c = new SqliteConnection($"Data Source={db};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    [Fact]
    public async Task ASchemaOneDatabaseIsUpgradedInPlaceKeepingEveryRowBalanceHistoryPageAndKey()
    {
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        Login op, alice, bob;
        string key = InvariantTests.NewKey(), firstId;
        List<JsonElement> all, alices, bobs;
        JsonElement[] aliceBalances, bobBalances;
        await using (var app = new BalanceApplication(databasePath: db))
        {
            op = await app.LoginAsync("operator");
            alice = await app.LoginAsync("alice");
            bob = await app.LoginAsync("bob");
            firstId = (await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "EUR" }, key)).GetProperty("transaction_id").GetString()!;
            await app.PostOkAsync(op.AccessToken, new { user_id = bob.UserId, type = "deposit", amount = "10.00", currency = "USD" });
            for (int i = 0; i < 4; i++)
            {
                var bet = await app.PostOkAsync(op.AccessToken, new { user_id = i % 2 == 0 ? alice.UserId : bob.UserId, type = "bet", amount = "1.25", currency = "USD" });
                if (i == 1) await app.PostOkAsync(op.AccessToken, new { type = "rollback", reverses = bet.GetProperty("transaction_id").GetString() });
                await app.PostOkAsync(op.AccessToken, new { user_id = bob.UserId, type = "win", amount = "0.50", currency = "USD" });
            }
            using var http = app.Http(op.AccessToken);
            all = await InvariantTests.PageHistoryAsync(http, null, 2);
            alices = await InvariantTests.PageHistoryAsync(http, alice.UserId, 2);
            bobs = await InvariantTests.PageHistoryAsync(http, bob.UserId, 3);
            aliceBalances = (await app.Http(alice.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
            bobBalances = (await app.Http(bob.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
        }
        var rowsBefore = LedgerAudit.Read(db).Rows;
        DowngradeToSchemaOne(db);
        Assert.Equal(1, Scalar(db, "PRAGMA user_version"));
        Assert.Equal(rowsBefore, LedgerAudit.Read(db).Rows);

        await using (var app = new BalanceApplication(databasePath: db))
        {
            using var http = app.Http(op.AccessToken);
            // Every row, balance, history page (all, per player) as before; the old key still binds.
            Assert.Equal(rowsBefore, LedgerAudit.Read(db).Rows);
            Assert.Equal(all.Select(e => e.ToString()), (await InvariantTests.PageHistoryAsync(http, null, 2)).Select(e => e.ToString()));
            Assert.Equal(alices.Select(e => e.ToString()), (await InvariantTests.PageHistoryAsync(http, alice.UserId, 2)).Select(e => e.ToString()));
            Assert.Equal(bobs.Select(e => e.ToString()), (await InvariantTests.PageHistoryAsync(http, bob.UserId, 3)).Select(e => e.ToString()));
            Assert.Equal(aliceBalances.Select(b => b.ToString()), (await app.Http(alice.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/balances"))!.Select(b => b.ToString()));
            Assert.Equal(bobBalances.Select(b => b.ToString()), (await app.Http(bob.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/balances"))!.Select(b => b.ToString()));
            var replay = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "EUR" }, key);
            Assert.Equal(HttpStatusCode.Created, replay.StatusCode);
            Assert.Equal(firstId, (await replay.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("transaction_id").GetString());
            var conflict = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "6.00", currency = "EUR" }, key);
            Assert.Equal(HttpStatusCode.Conflict, conflict.StatusCode);
            // And the ledger goes on from where it was: next seq, next version, on the player's history chain.
            var win = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "2.00", currency = "USD" });
            var page = await InvariantTests.PageHistoryAsync(http, alice.UserId, 50);
            Assert.Equal(win.GetProperty("transaction_id").GetString(), page[0].GetProperty("transaction_id").GetString());
            Assert.Equal(alices.Select(e => e.ToString()), page.Skip(1).Select(e => e.ToString()));
            var audit = LedgerAudit.Read(db);
            Assert.Equal(rowsBefore, audit.Rows.Take(rowsBefore.Count));
            Assert.Equal(rowsBefore[^1].Seq + 1, audit.Rows[^1].Seq);
            audit.AssertConsistent();
        }
        Assert.Equal(SqliteDatabase.SchemaVersion, Scalar(db, "PRAGMA user_version"));
        Assert.Equal(0, Scalar(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('ledger_by_user', 'sqlite_autoindex_ledger_2')")); // the per-player and key indexes are gone
        AssertKeyRunsTileTheLedger(db);
        Assert.Equal(0, Scalar(db, "SELECT COUNT(*) FROM (SELECT user_prev, LAG(seq) OVER (PARTITION BY user_id ORDER BY seq) AS lag FROM ledger) WHERE user_prev IS NOT lag"));
    }

    [Fact]
    public async Task AnUpgradeIsRefusedAndChangesNothingWhenAWalletDisagreesWithItsLedger()
    {
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        await using (var app = new BalanceApplication(databasePath: db))
        {
            var op = await app.LoginAsync("operator");
            var alice = await app.LoginAsync("alice");
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "EUR" });
        }
        DowngradeToSchemaOne(db);
        using (var c = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "UPDATE wallets SET balance = balance + 1 WHERE currency = 'EUR'";
            Assert.Equal(1, cmd.ExecuteNonQuery());
        }
        var rows = LedgerAudit.Read(db).Rows;
        await using (var app = new BalanceApplication(databasePath: db))
        {
            var failure = await Assert.ThrowsAnyAsync<Exception>(() => app.LoginAsync("operator"));
            Assert.Contains("differ from their ledger", failure.ToString());
        }
        SqliteConnection.ClearAllPools();
        Assert.Equal(1, Scalar(db, "PRAGMA user_version"));
        Assert.Equal(rows, LedgerAudit.Read(db).Rows);
        Assert.Equal(1, Scalar(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'wallets'"));
    }

    [Fact]
    public async Task ASchemaThreeDatabaseGetsItsKeyHashesAsRunsAndEveryKeyStillBinds()
    {
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        Login op, alice;
        (string Key, string Id)[] posted;
        await using (var app = new BalanceApplication(databasePath: db))
        {
            op = await app.LoginAsync("operator");
            alice = await app.LoginAsync("alice");
            // Side by side, so batches hold several postings and runs several hashes.
            posted = await Task.WhenAll(Enumerable.Range(0, 40).Select(async _ =>
            {
                string key = InvariantTests.NewKey();
                var r = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "0.01", currency = "USD" }, key);
                return (key, r.GetProperty("transaction_id").GetString()!);
            }));
        }
        AssertKeyRunsTileTheLedger(db);
        long rows = Scalar(db, "SELECT COUNT(*) FROM ledger");
        DowngradeToSchemaThree(db);
        Assert.Equal(rows, Scalar(db, "SELECT COUNT(*) FROM ledger_keys"));

        await using (var app = new BalanceApplication(databasePath: db))
        {
            foreach (var (key, id) in posted)
            {
                var replay = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "0.01", currency = "USD" }, key);
                Assert.Equal(HttpStatusCode.Created, replay.StatusCode);
                Assert.Equal("true", replay.Headers.GetValues("Idempotent-Replayed").Single());
                Assert.Equal(id, (await replay.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("transaction_id").GetString());
            }
            Assert.Equal(HttpStatusCode.Conflict, (await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "0.02", currency = "USD" }, posted[0].Key)).StatusCode);
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
            LedgerAudit.Read(db).AssertConsistent();
        }
        Assert.Equal(SqliteDatabase.SchemaVersion, Scalar(db, "PRAGMA user_version"));
        Assert.Equal(0, Scalar(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger_keys'"));
        Assert.Equal(rows + 1, Scalar(db, "SELECT COUNT(*) FROM ledger"));
        AssertKeyRunsTileTheLedger(db);
    }

    [Fact]
    public async Task AKeyBindsForTheWindowAndIsANewPostingAfterIt()
    {
        // On a fake clock: a replay must not fall out of the window because a loaded box took two seconds to answer.
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var app = new BalanceApplication(new() { ["Balance:IdempotencyWindow"] = "00:00:02" })
        {
            ConfigureTestServices = services => services.AddSingleton<TimeProvider>(clock),
        };
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        string key = InvariantTests.NewKey();
        var first = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" }, key);
        var again = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" }, key);
        Assert.Equal("true", again.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(first.GetProperty("transaction_id").GetString(), (await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("transaction_id").GetString());
        Assert.Equal(HttpStatusCode.Conflict, (await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "2.00", currency = "USD" }, key)).StatusCode);
        clock.Advance(TimeSpan.FromSeconds(2.5));
        // Past the window the key is forgotten: the same request is a second deposit.
        var later = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" }, key);
        Assert.NotEqual(first.GetProperty("transaction_id").GetString(), later.GetProperty("transaction_id").GetString());
        Assert.Equal(first.GetProperty("version").GetInt64() + 1, later.GetProperty("version").GetInt64());
        Assert.Equal(2, LedgerAudit.Read(app.DatabasePath).Rows.Count(r => r.IdempotencyKey == key));
    }

    [Fact]
    public async Task TheWriterStateIsRebuiltFromTheLedgerPastAStaleCheckpoint()
    {
        // The checkpoint is written at most once a second: postings right after one are only in the ledger. A restart
        // replays them; a checkpoint pointing further back (as after a crash) changes nothing either.
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        Login op, alice;
        JsonElement[] balances;
        await using (var app = new BalanceApplication(databasePath: db))
        {
            op = await app.LoginAsync("operator");
            alice = await app.LoginAsync("alice");
            for (int i = 0; i < 5; i++) await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "0.10", currency = i % 2 == 0 ? "USD" : "EUR" });
            balances = (await app.Http(alice.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
        }
        SqliteConnection.ClearAllPools();
        using (var c = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "DELETE FROM wallet_checkpoint WHERE currency = 'EUR'; UPDATE ledger_meta SET value = '1' WHERE name = 'checkpoint_seq'";
            cmd.ExecuteNonQuery();
        }
        await using (var app = new BalanceApplication(databasePath: db))
        {
            Assert.Equal(balances.Select(b => b.ToString()), (await app.Http(alice.AccessToken).GetFromJsonAsync<JsonElement[]>("/api/balances"))!.Select(b => b.ToString()));
            var next = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "0.10", currency = "EUR" });
            Assert.Equal(balances.Single(b => b.GetProperty("currency").GetString() == "EUR").GetProperty("version").GetInt64() + 1, next.GetProperty("version").GetInt64());
            LedgerAudit.Read(db).AssertConsistent();
        }
    }
}
