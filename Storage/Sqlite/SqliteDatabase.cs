using System.Data.Common;
using System.Security.Cryptography;
using Dapper;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Balance.Storage.Sqlite;

// The SQLite file: where it lives, how a connection is opened, the schema and its upgrades.
public sealed class SqliteDatabase : IDatabase
{
    // PRAGMA user_version of the schema this build writes. A database with a higher one was made by a newer build:
    // starting on it could misread or damage what that build wrote, so start is refused.
    // 2: idempotency keys unique per poster, (posted_by, idempotency_key), no longer across the whole ledger;
    //    users.disabled_at (an older build would let a disabled user log in), usernames in their normal form (auth).
    // 3: the ledger as a log (no wallets table, no key or per-player index: the writer's memory holds them).
    public const int SchemaVersion = 3;

    public string ConnectionString { get; }
    public string FilePath { get; }
    private readonly string _synchronous;

    public SqliteDatabase(IConfiguration config, IOptions<SqliteOptions> options)
    {
        var builder = new SqliteConnectionStringBuilder(config.GetConnectionString("Balance") ?? "Data Source=balance.db")
        {
            Pooling = true,
            // Microsoft.Data.Sqlite retries a busy database until this many seconds have passed, on top of
            // busy_timeout; keep both at 5 s so a locked database is answered 503 in seconds, not after 30+ s per queued batch.
            DefaultTimeout = 5,
        };
        if (builder.Mode is SqliteOpenMode.Memory || builder.DataSource is "" or ":memory:")
            throw new InvalidOperationException("ConnectionStrings:Balance must name a database file; an in-memory ledger would lose money on restart.");
        FilePath = Path.GetFullPath(builder.DataSource);
        builder.DataSource = FilePath;
        ConnectionString = builder.ToString();
        _synchronous = options.Value.Synchronous.ToUpperInvariant();
    }

    public string Engine => "sqlite";
    public string UsernameIs => "username = @username"; // the column is COLLATE NOCASE
    public string? LockRefreshToken => null; // a write transaction is BEGIN IMMEDIATE: one writer at a time

    async Task<DbConnection> IDatabase.OpenAsync(CancellationToken ct) => await OpenAsync(ct);

    public async Task<SqliteConnection> OpenAsync(CancellationToken ct = default)
    {
        var connection = new SqliteConnection(ConnectionString);
        await connection.OpenAsync(ct);
        // Per-connection settings; cheap on a pooled connection.
        await connection.ExecuteAsync($"PRAGMA synchronous = {_synchronous}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = {Checkpointer.BackstopPages}; PRAGMA journal_size_limit = 67108864;");
        return connection;
    }

    public async Task InitializeAsync(CancellationToken ct = default)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
        // Readable by its owner alone: SQLite would create the file 0644 (less the umask), and gives the -wal and -shm
        // files the mode of the database file, so an empty file made here first (a valid empty database) sets all three.
        if (!File.Exists(FilePath) && !OperatingSystem.IsWindows())
            try { using (File.Open(FilePath, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = OwnerOnly })) { } }
            catch (IOException) when (File.Exists(FilePath)) { /* made meanwhile by another process: SQLite opens it */ }
        using var stream = typeof(SqliteDatabase).Assembly.GetManifestResourceStream("balance.db.sql")
            ?? throw new InvalidOperationException("balance.db.sql is not embedded in the assembly.");
        string schema = await new StreamReader(stream).ReadToEndAsync();
        await using var connection = await OpenAsync(ct);
        long found = await connection.ExecuteScalarAsync<long>("PRAGMA user_version");
        if (found > SchemaVersion)
            throw new InvalidOperationException($"{FilePath} has schema version {found}, made by a newer Balance; this build knows version {SchemaVersion}. Run the newer build, or restore a backup.");
        if ((await connection.QueryAsync<string>("SELECT name FROM pragma_table_info('ledger')")).ToList() is { Count: > 0 } ledgerColumns && !ledgerColumns.Contains("user_prev"))
            await UpgradeToLogAsync(connection, schema);
        await connection.ExecuteAsync(schema);
        // A database's own secret for the Idempotency-Keys' hashes (LedgerState.KeyHash), made once.
        await connection.ExecuteAsync("INSERT OR IGNORE INTO ledger_meta (name, value) VALUES ('key_seed', @seed)", new { seed = Convert.ToHexString(RandomNumberGenerator.GetBytes(32)) });
        // Databases made before wallets.last_transaction_id: add it and fill it from the ledger, once. (Since schema 3,
        // wallets is a view of the ledger that has the column, and any schema-1 or -2 ledger was rebuilt above.)
        if (!(await connection.QueryAsync<string>("SELECT name FROM pragma_table_info('wallets')")).Contains("last_transaction_id"))
        {
            await using var tx = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync("""
                ALTER TABLE wallets ADD COLUMN last_transaction_id TEXT;
                UPDATE wallets SET last_transaction_id = (SELECT l.transaction_id FROM ledger l
                    WHERE l.user_id = wallets.user_id AND l.currency = wallets.currency AND l.version = wallets.version);
                """, transaction: tx);
            await tx.CommitAsync();
        }
        // Databases made before logins were remembered past their first expiry: a session's access tokens could be
        // valid as long as its newest refresh token, so that is the conservative start of access_expires_at.
        if (!(await connection.QueryAsync<string>("SELECT name FROM pragma_table_info('sessions')")).Contains("access_expires_at"))
        {
            await using var tx = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync("""
                ALTER TABLE sessions ADD COLUMN access_expires_at TEXT;
                UPDATE sessions SET access_expires_at = COALESCE(
                    (SELECT MAX(r.expires_at) FROM refresh_tokens r WHERE r.session_id = sessions.id), expires_at);
                """, transaction: tx);
            await tx.CommitAsync();
        }
        if (!(await connection.QueryAsync<string>("SELECT name FROM pragma_table_info('refresh_tokens')")).Contains("replaced_by"))
            await connection.ExecuteAsync("ALTER TABLE refresh_tokens ADD COLUMN replaced_by TEXT");
        // Schema 2's step (keys per poster), a no-op once UpgradeToLogAsync rebuilt the ledger without global keys.
        if (found < 2) await KeysPerPosterAsync(connection);
        await Balance.Auth.Users.UpgradeSqliteAsync(connection);
        await connection.ExecuteAsync($"PRAGMA user_version = {SchemaVersion}");
    }

    // Schema 1 or 2 → 3, in one transaction, every row kept: the ledger rebuilt without its idempotency-key and per-player
    // indexes, each row given its player's previous row (user_prev) and its key's hash (ledger_keys); the wallets
    // table, checked against the ledger, becomes a checkpoint (each wallet's newest row) and the view `wallets`.
    private static async Task UpgradeToLogAsync(SqliteConnection connection, string schema)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        // The new tables' definitions, from the schema itself; the ledger under another name until the old one is gone.
        string Part(string from)
        {
            int s = schema.IndexOf(from, StringComparison.Ordinal);
            return schema[s..(schema.IndexOf(");", s, StringComparison.Ordinal) + 2)];
        }
        string newLedger = Part("CREATE TABLE IF NOT EXISTS ledger (").Replace("CREATE TABLE IF NOT EXISTS ledger (", "CREATE TABLE ledger_log (");
        await connection.ExecuteAsync("PRAGMA foreign_keys = OFF"); // the table is rebuilt (SQLite's 12-step ALTER); checked below
        long cache = await connection.ExecuteScalarAsync<long>("PRAGMA cache_size");
        await connection.ExecuteAsync("PRAGMA cache_size = -262144"); // 256 MiB while the tables and index are rebuilt, not 2
        try
        {
            await using var tx = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync(Part("CREATE TABLE IF NOT EXISTS ledger_meta ("), transaction: tx);
            await connection.ExecuteAsync("INSERT OR IGNORE INTO ledger_meta (name, value) VALUES ('key_seed', @seed)",
                new { seed = Convert.ToHexString(RandomNumberGenerator.GetBytes(32)) }, tx);
            byte[] seed = Convert.FromHexString(await connection.ExecuteScalarAsync<string>("SELECT value FROM ledger_meta WHERE name = 'key_seed'", transaction: tx) ?? "");
            connection.CreateFunction("balance_key_hash", (string key) => LedgerState.KeyHash(seed, key), isDeterministic: true);
            // The wallets table must be what its ledger says; if not, stop here and change nothing.
            long wrong = await connection.ExecuteScalarAsync<long>("""
                SELECT COUNT(*) FROM wallets w LEFT JOIN (SELECT user_id, currency, balance_after, version, MAX(seq) FROM ledger GROUP BY user_id, currency) l
                    ON l.user_id = w.user_id AND l.currency = w.currency
                WHERE w.version > 0 AND (l.version IS NOT w.version OR l.balance_after IS NOT w.balance)
                """, transaction: tx);
            if (wrong > 0)
                throw new InvalidOperationException($"{wrong} wallet(s) differ from their ledger's newest row; the upgrade to schema {SchemaVersion} was not made. Restore a backup or repair the wallets first.");
            await connection.ExecuteAsync(newLedger, transaction: tx);
            await connection.ExecuteAsync("""
                INSERT INTO ledger_log (seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key,
                                        request_hash, reference, reverses, posted_by, created_at, user_prev)
                SELECT seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key,
                       request_hash, reference, reverses, posted_by, created_at, LAG(seq) OVER (PARTITION BY user_id ORDER BY seq)
                FROM ledger ORDER BY seq;
                """, transaction: tx);
            await connection.ExecuteAsync(Part("CREATE TABLE IF NOT EXISTS ledger_keys ("), transaction: tx);
            await connection.ExecuteAsync("INSERT INTO ledger_keys (seq, key_hash) SELECT seq, balance_key_hash(idempotency_key) FROM ledger ORDER BY seq", transaction: tx);
            await connection.ExecuteAsync("DROP TABLE ledger; ALTER TABLE ledger_log RENAME TO ledger; DROP TABLE wallets;", transaction: tx);
            await connection.ExecuteAsync(Part("CREATE TABLE IF NOT EXISTS wallet_checkpoint ("), transaction: tx);
            await connection.ExecuteAsync("""
                INSERT INTO wallet_checkpoint (user_id, currency, seq) SELECT user_id, currency, MAX(seq) FROM ledger GROUP BY user_id, currency;
                INSERT INTO ledger_meta (name, value) VALUES ('checkpoint_seq', (SELECT COALESCE(MAX(seq), 0) FROM ledger));
                """, transaction: tx);
            long broken = (await connection.QueryAsync("PRAGMA foreign_key_check", transaction: tx)).Count();
            if (broken > 0) throw new InvalidOperationException($"The upgrade to schema {SchemaVersion} would leave {broken} broken reference(s); not made.");
            await tx.CommitAsync();
        }
        finally
        {
            await connection.ExecuteAsync($"PRAGMA foreign_keys = ON; PRAGMA cache_size = {cache};");
        }
        long rows = await connection.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM ledger");
        Console.Error.WriteLine($"Balance: upgraded the SQLite ledger to schema {SchemaVersion} ({rows} rows) in {sw.Elapsed.TotalSeconds:F1} s");
    }

    // Schema 2. Before it, the ledger declared idempotency_key UNIQUE across every poster, and SQLite cannot drop a
    // column's constraint: the table is rebuilt in one transaction (SQLite's documented twelve steps, with foreign
    // keys off so dropping the old table touches no row), every row and seq kept, AUTOINCREMENT's counter with it.
    // The new table is spelled out here rather than read from balance.db.sql: this step upgrades to schema 2, and
    // must keep meaning that when the schema file moves on.
    private static async Task KeysPerPosterAsync(SqliteConnection connection)
    {
        bool globalKeys = await connection.ExecuteScalarAsync<bool>("""
            SELECT EXISTS (SELECT 1 FROM pragma_index_list('ledger') AS i
                WHERE i."unique" AND (SELECT group_concat(name) FROM pragma_index_info(i.name)) = 'idempotency_key')
            """);
        if (!globalKeys) return; // made by this schema
        await connection.ExecuteAsync("PRAGMA foreign_keys = OFF"); // a no-op inside a transaction, so before it
        try
        {
            await using var tx = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync("""
                CREATE TABLE ledger_schema2 (
                    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
                    transaction_id  TEXT    NOT NULL UNIQUE,
                    user_id         TEXT    NOT NULL REFERENCES users (id),
                    type            TEXT    NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'bet', 'win', 'rollback')),
                    amount          INTEGER NOT NULL CHECK (amount > 0),
                    currency        TEXT    NOT NULL,
                    balance_after   INTEGER NOT NULL CHECK (balance_after >= 0),
                    version         INTEGER NOT NULL,
                    idempotency_key TEXT    NOT NULL,
                    request_hash    TEXT    NOT NULL,
                    reference       TEXT,
                    reverses        TEXT UNIQUE REFERENCES ledger (transaction_id),
                    posted_by       TEXT    NOT NULL REFERENCES users (id),
                    created_at      TEXT    NOT NULL
                );
                INSERT INTO ledger_schema2 (seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at)
                    SELECT seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at
                    FROM ledger ORDER BY seq;
                UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'ledger'), 0)) WHERE name = 'ledger_schema2';
                DROP TABLE ledger;
                ALTER TABLE ledger_schema2 RENAME TO ledger;
                CREATE INDEX ledger_by_user ON ledger (user_id, seq);
                CREATE UNIQUE INDEX ledger_by_key ON ledger (posted_by, idempotency_key);
                """, transaction: tx);
            if ((await connection.QueryAsync("PRAGMA foreign_key_check", transaction: tx)).Any())
                throw new InvalidOperationException("Rebuilding the ledger for schema 2 found rows that name a missing user or transaction; nothing was changed.");
            await tx.CommitAsync();
        }
        finally
        {
            await connection.ExecuteAsync("PRAGMA foreign_keys = ON");
        }
    }

    // Beside the database file, readable by its owner alone, so tokens survive a restart.
    public Task<byte[]> DevelopmentSigningKeyAsync(CancellationToken ct = default)
    {
        string path = FilePath + ".key";
        if (File.Exists(path)) return Task.FromResult(Convert.FromBase64String(File.ReadAllText(path).Trim()));
        byte[] key = RandomNumberGenerator.GetBytes(64);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        // Created 0600, not chmod-ed after the key is in it: no moment where another user could read it.
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = OwnerOnly;
        try { using (var writer = new StreamWriter(path, options)) writer.Write(Convert.ToBase64String(key)); }
        catch (IOException) when (File.Exists(path)) { return DevelopmentSigningKeyAsync(ct); } // another process made it first
        return Task.FromResult(key);
    }

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

}

public sealed class SqliteOptions
{
    // FULL: an acknowledged transaction survives power loss. NORMAL trades that for speed (WAL stays consistent).
    [System.ComponentModel.DataAnnotations.RegularExpression("(?i)^(FULL|NORMAL|EXTRA)$", ErrorMessage = "Balance:Synchronous must be FULL, EXTRA or NORMAL.")]
    public string Synchronous { get; set; } = "FULL";

    // How long an Idempotency-Key is remembered (SQLite: the writer keeps the window's keys in memory). A retry within
    // it answers the first result; after it, the same key is a new posting. At least one second.
    [System.ComponentModel.DataAnnotations.Range(typeof(TimeSpan), "00:00:01", "3650.00:00:00", ErrorMessage = "Balance:IdempotencyWindow must be between 1 second and 3650 days.")]
    public TimeSpan IdempotencyWindow { get; set; } = TimeSpan.FromDays(7);
}
