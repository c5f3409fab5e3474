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
    // 1: the first numbered files. 2: idempotency keys unique per poster, (posted_by, idempotency_key), no longer across
    //    the whole ledger; users.disabled_at (an older build would let a disabled user log in), usernames in their
    //    normal form (auth). 3: the ledger as a log (no wallets table, no key or per-player index: the writer's memory
    //    holds them). 4: the keys' hashes one row per batch (ledger_key_runs), not one per posting (ledger_keys).
    //    The upgrade steps are Steps, below.
    public const int SchemaVersion = 4;

    public string ConnectionString { get; }
    public string FilePath { get; }
    // Why this file's commits can no longer be trusted to be on disk (the WAL's fsync failed), or null: readiness
    // reports it until a restart.
    internal string? DurabilityLost;
    private readonly string _synchronous;

    public SqliteDatabase(IOptions<ConnectionStrings> connection, IOptions<SqliteOptions> options)
    {
        var builder = new SqliteConnectionStringBuilder(connection.Value.Balance ?? "Data Source=balance.db")
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


    public Task<string?> WhyNotWritableAsync(bool writerIsCommitting, CancellationToken ct = default) =>
        SqliteReadiness.WhyNotWritableAsync(this, writerIsCommitting, ct);
    public Task LockRowAsync(DbTransaction tx, string table, string keyColumn, object key, bool exclusive) =>
        Task.CompletedTask; // a write transaction is BEGIN IMMEDIATE: one writer at a time

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
        // A file with a ledger older than the build's is upgraded first, step by step; a new file is made by the schema.
        bool made = await connection.ExecuteScalarAsync<bool>("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger')");
        if (made && found < SchemaVersion) await UpgradeAsync(connection, found, schema);
        await connection.ExecuteAsync(schema);
        // A database's own secret for the Idempotency-Keys' hashes (LedgerState.KeyHash), made once.
        await connection.ExecuteAsync("INSERT OR IGNORE INTO ledger_meta (name, value) VALUES ('key_seed', @seed)", new { seed = Convert.ToHexString(RandomNumberGenerator.GetBytes(32)) });
        if (found < SchemaVersion) await connection.ExecuteAsync($"PRAGMA user_version = {SchemaVersion}");
    }

    // The upgrades, numbered like PostgreSQL's schema_version: step N brings a file of any older version to N, and runs
    // only on a file whose PRAGMA user_version is below N. (Schema 2's ledger change, idempotency keys unique per poster
    // instead of across the ledger, has no step of its own: step 3 rebuilds any older ledger without the global key.
    // Its users part runs with step 3 too: the first files stamped version 2 lack it.)
    private static readonly (int Version, Func<SqliteConnection, SqliteTransaction, string, Task> Apply)[] Steps =
    [
        (1, ColumnsBeforeVersionsAsync),
        (3, LedgerAsLogAsync),
        (3, UsersInNormalFormAsync),
        (4, KeyRunsAsync),
    ];

    // Every pending step in one transaction, foreign keys checked before the commit: a file is upgraded whole or not
    // at all (a refused step leaves it as it was, its user_version with it).
    private static async Task UpgradeAsync(SqliteConnection connection, long found, string schema)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await connection.ExecuteAsync("PRAGMA foreign_keys = OFF"); // tables are rebuilt (SQLite's 12-step ALTER); checked below
        long cache = await connection.ExecuteScalarAsync<long>("PRAGMA cache_size");
        await connection.ExecuteAsync("PRAGMA cache_size = -262144"); // 256 MiB while the tables and index are rebuilt, not 2
        try
        {
            await using var tx = (SqliteTransaction)await connection.BeginTransactionAsync();
            foreach (var (version, apply) in Steps)
                if (found < version) await apply(connection, tx, schema);
            long broken = (await connection.QueryAsync("PRAGMA foreign_key_check", transaction: tx)).Count();
            if (broken > 0) throw new InvalidOperationException($"The upgrade to schema {SchemaVersion} would leave {broken} broken reference(s); not made.");
            await connection.ExecuteAsync($"PRAGMA user_version = {SchemaVersion}", transaction: tx);
            await tx.CommitAsync();
        }
        finally
        {
            await connection.ExecuteAsync($"PRAGMA foreign_keys = ON; PRAGMA cache_size = {cache};");
        }
        long rows = await connection.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM ledger");
        Console.Error.WriteLine($"Balance: upgraded the SQLite database from schema {found} to {SchemaVersion} ({rows} ledger rows) in {sw.Elapsed.TotalSeconds:F1} s");
    }

    // Step 1. Files made before versions were numbered come in several shapes: each column of that time is added where
    // it is missing. A session's access tokens could be valid as long as its newest refresh token, so that is the
    // conservative start of access_expires_at.
    private static async Task ColumnsBeforeVersionsAsync(SqliteConnection connection, SqliteTransaction tx, string schema)
    {
        if (await LacksAsync(connection, tx, "sessions", "access_expires_at"))
            await connection.ExecuteAsync("""
                ALTER TABLE sessions ADD COLUMN access_expires_at TEXT;
                UPDATE sessions SET access_expires_at = COALESCE(
                    (SELECT MAX(r.expires_at) FROM refresh_tokens r WHERE r.session_id = sessions.id), expires_at);
                """, transaction: tx);
        if (await LacksAsync(connection, tx, "refresh_tokens", "replaced_by"))
            await connection.ExecuteAsync("ALTER TABLE refresh_tokens ADD COLUMN replaced_by TEXT", transaction: tx);
    }

    // Step 3 (below).
    private static async Task LedgerAsLogAsync(SqliteConnection connection, SqliteTransaction tx, string schema)
    {
        // An older build committed this rebuild and wrote user_version after it: a file it left between the two (a
        // crash) has the log already.
        if (await LacksAsync(connection, tx, "ledger", "user_prev")) await UpgradeToLogAsync(connection, tx, schema);
    }

    // Schema 2's users part: an account may be disabled (disabled_at), and every username is in its normal form, ASCII
    // lower case (Auth/Users.cs). The column is UNIQUE COLLATE NOCASE, so no two names collide when lowered.
    private static async Task UsersInNormalFormAsync(SqliteConnection connection, SqliteTransaction tx, string schema)
    {
        if (await LacksAsync(connection, tx, "users", "disabled_at"))
            await connection.ExecuteAsync("ALTER TABLE users ADD COLUMN disabled_at TEXT", transaction: tx);
        // BINARY: the column's NOCASE would find 'AlIcE' equal to 'alice' and lower nothing.
        await connection.ExecuteAsync("UPDATE users SET username = lower(username) WHERE username COLLATE BINARY <> lower(username)", transaction: tx);
    }

    private static async Task<bool> LacksAsync(SqliteConnection connection, SqliteTransaction tx, string table, string column)
    {
        var columns = (await connection.QueryAsync<string>($"SELECT name FROM pragma_table_info('{table}')", transaction: tx)).ToList();
        return columns.Count > 0 && !columns.Contains(column);
    }

    // Step 3: schema 1 or 2 → 3, every row kept: the ledger rebuilt without its idempotency-key and per-player indexes,
    // each row given its player's previous row (user_prev) and its key's hash (ledger_keys); the wallets table, checked
    // against the ledger, becomes a checkpoint (each wallet's newest row) and the view `wallets`.
    private static async Task UpgradeToLogAsync(SqliteConnection connection, SqliteTransaction tx, string schema)
    {
        // The new tables' definitions, from the schema itself; the ledger under another name until the old one is gone.
        string Part(string from) => SchemaPart(schema, from);
        string newLedger = Part("CREATE TABLE IF NOT EXISTS ledger (").Replace("CREATE TABLE IF NOT EXISTS ledger (", "CREATE TABLE ledger_log (");
        await connection.ExecuteAsync(Part("CREATE TABLE IF NOT EXISTS ledger_meta ("), transaction: tx);
        await connection.ExecuteAsync("INSERT OR IGNORE INTO ledger_meta (name, value) VALUES ('key_seed', @seed)",
            new { seed = Convert.ToHexString(RandomNumberGenerator.GetBytes(32)) }, tx);
        byte[] seed = Convert.FromHexString(await connection.ExecuteScalarAsync<string>("SELECT value FROM ledger_meta WHERE name = 'key_seed'", transaction: tx) ?? "");
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, seed); // keyed once for every row
        connection.CreateFunction("balance_key_hash", (string key) => LedgerState.KeyHash(hmac, key), isDeterministic: true);
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
        // Schema 3's shape of the key hashes, a row per ledger row; step 4 gathers them into runs.
        await connection.ExecuteAsync("CREATE TABLE ledger_keys (seq INTEGER PRIMARY KEY, key_hash INTEGER NOT NULL)", transaction: tx);
        await connection.ExecuteAsync("INSERT INTO ledger_keys (seq, key_hash) SELECT seq, balance_key_hash(idempotency_key) FROM ledger ORDER BY seq", transaction: tx);
        connection.CreateFunction<string, long>("balance_key_hash", null); // gone with its HMAC; the pooled handle keeps no stale function
        await connection.ExecuteAsync("DROP TABLE ledger; ALTER TABLE ledger_log RENAME TO ledger; DROP TABLE wallets;", transaction: tx);
        await connection.ExecuteAsync(Part("CREATE TABLE IF NOT EXISTS wallet_checkpoint ("), transaction: tx);
        await connection.ExecuteAsync("""
            INSERT INTO wallet_checkpoint (user_id, currency, seq) SELECT user_id, currency, MAX(seq) FROM ledger GROUP BY user_id, currency;
            INSERT INTO ledger_meta (name, value) VALUES ('checkpoint_seq', (SELECT COALESCE(MAX(seq), 0) FROM ledger));
            """, transaction: tx);
    }

    // Step 4: schema 3's key hashes, one row per ledger row (ledger_keys), become runs (ledger_key_runs): one row per
    // stretch of consecutive seqs, at most KeyRunOnUpgrade long, each hash kept with its seq.
    private static async Task KeyRunsAsync(SqliteConnection connection, SqliteTransaction tx, string schema)
    {
        await connection.ExecuteAsync(SchemaPart(schema, "CREATE TABLE IF NOT EXISTS ledger_key_runs ("), transaction: tx);
        if (!await connection.ExecuteScalarAsync<bool>("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_keys')", transaction: tx))
            return;
        await using var insert = connection.CreateCommand();
        insert.Transaction = tx;
        insert.CommandText = "INSERT INTO ledger_key_runs (first_seq, hashes) VALUES ($first, $hashes)";
        var first = insert.Parameters.Add("$first", SqliteType.Integer);
        var hashes = insert.Parameters.Add("$hashes", SqliteType.Blob);
        var run = new byte[KeyRunOnUpgrade * sizeof(long)];
        int n = 0;
        long start = 0;
        void Flush()
        {
            if (n == 0) return;
            first.Value = start;
            hashes.Value = run[..(n * sizeof(long))];
            insert.ExecuteNonQuery();
            n = 0;
        }
        await using (var read = connection.CreateCommand())
        {
            read.Transaction = tx;
            read.CommandText = "SELECT seq, key_hash FROM ledger_keys ORDER BY seq";
            await using var r = await read.ExecuteReaderAsync();
            while (await r.ReadAsync())
            {
                long seq = r.GetInt64(0);
                if (n > 0 && (seq != start + n || n == KeyRunOnUpgrade)) Flush();
                if (n == 0) start = seq;
                LedgerState.PutKeyHash(run, n++, r.GetInt64(1));
            }
        }
        Flush();
        await connection.ExecuteAsync("DROP TABLE ledger_keys", transaction: tx);
    }

    private const int KeyRunOnUpgrade = 256;

    // One CREATE statement of the schema, by its first words.
    private static string SchemaPart(string schema, string from)
    {
        int s = schema.IndexOf(from, StringComparison.Ordinal);
        return schema[s..(schema.IndexOf(");", s, StringComparison.Ordinal) + 2)];
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
