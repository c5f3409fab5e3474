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
    // 2: users.disabled_at (an older build would let a disabled user log in), usernames lowered (auth).
    public const int SchemaVersion = 2;

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
        using var stream = typeof(SqliteDatabase).Assembly.GetManifestResourceStream("balance.db.sql")
            ?? throw new InvalidOperationException("balance.db.sql is not embedded in the assembly.");
        string schema = await new StreamReader(stream).ReadToEndAsync();
        await using var connection = await OpenAsync(ct);
        long found = await connection.ExecuteScalarAsync<long>("PRAGMA user_version");
        if (found > SchemaVersion)
            throw new InvalidOperationException($"{FilePath} has schema version {found}, made by a newer Balance; this build knows version {SchemaVersion}. Run the newer build, or restore a backup.");
        await connection.ExecuteAsync(schema);
        // Databases made before wallets.last_transaction_id: add it and fill it from the ledger, once. (They keep
        // their old UNIQUE (user_id, currency, version) on the ledger: same guarantee, one more index to write.)
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
        await Balance.Auth.Users.UpgradeSqliteAsync(connection);
        await connection.ExecuteAsync($"PRAGMA user_version = {SchemaVersion}");
    }

    // Beside the database file, readable by its owner alone, so tokens survive a restart.
    public Task<byte[]> DevelopmentSigningKeyAsync(CancellationToken ct = default)
    {
        string path = FilePath + ".key";
        if (File.Exists(path)) return Task.FromResult(Convert.FromBase64String(File.ReadAllText(path).Trim()));
        byte[] key = RandomNumberGenerator.GetBytes(64);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, Convert.ToBase64String(key));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return Task.FromResult(key);
    }

}

public sealed class SqliteOptions
{
    // FULL: an acknowledged transaction survives power loss. NORMAL trades that for speed (WAL stays consistent).
    [System.ComponentModel.DataAnnotations.RegularExpression("(?i)^(FULL|NORMAL|EXTRA)$", ErrorMessage = "Balance:Synchronous must be FULL, EXTRA or NORMAL.")]
    public string Synchronous { get; set; } = "FULL";
}
