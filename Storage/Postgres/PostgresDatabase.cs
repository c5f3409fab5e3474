using System.Data.Common;
using System.Security.Cryptography;
using Dapper;
using Npgsql;

namespace Balance.Storage.Postgres;

// The PostgreSQL database every node shares: its data source (Npgsql's pool), the schema, the dialect.
public sealed class PostgresDatabase : IDatabase, IAsyncDisposable
{
    // schema_version of the schema this build writes; a database with a higher one was made by a newer build.
    // 2: the ledger's foreign keys to users replaced by triggers that refuse deleting users or changing the ledger.
    // 3: idempotency keys unique per poster (ledger_by_key), no longer across the whole ledger; users.disabled_at,
    //    usernames in their normal form, refresh-token indexes for housekeeping, login_failures keys (auth).
    // 4: an index on the username's normal form, which every lookup compares (Auth/Users.cs).
    public const int SchemaVersion = 4;
    // Any constant both nodes agree on: the advisory lock that lets one node at a time apply the schema.
    private const long SchemaLock = 0x42616c616e6365; // "Balance"

    public NpgsqlDataSource DataSource { get; }
    public string ConnectionString { get; }

    public PostgresDatabase(Microsoft.Extensions.Options.IOptions<ConnectionStrings> connection, ILoggerFactory loggers)
    {
        string given = connection.Value.Balance is { Length: > 0 } cs && !cs.StartsWith("Data Source=", StringComparison.OrdinalIgnoreCase)
            ? cs
            : throw new InvalidOperationException("Balance:Store=Postgres needs ConnectionStrings:Balance to be an Npgsql connection string (Host=…;Database=…;Username=…;Password=…).");
        var builder = new NpgsqlConnectionStringBuilder(given);
        if (string.IsNullOrEmpty(builder.ApplicationName)) builder.ApplicationName = "balance";
        // A wallet lock held past 5 s, or a transaction left idle, is a fault: fail that batch (503) rather than let
        // every posting of the database queue behind it.
        builder.Options = $"{builder.Options} -c lock_timeout=5000 -c idle_in_transaction_session_timeout=30000".Trim();
        if (builder.Timeout == 15) builder.Timeout = 5; // Npgsql's default connect timeout: a lost database answers 503 in seconds
        ConnectionString = builder.ConnectionString;
        DataSource = new NpgsqlDataSourceBuilder(ConnectionString).UseLoggerFactory(loggers).Build();
    }

    public Task LockRowAsync(DbTransaction tx, string table, string keyColumn, object key, bool exclusive) =>
        tx.Connection!.ExecuteAsync($"SELECT 1 FROM {table} WHERE {keyColumn} = @key {(exclusive ? "FOR UPDATE" : "FOR SHARE")}", new { key }, tx);

    // Writable: the server answers, is no read-only standby and does not default transactions to read-only. Many
    // writers share the server, so a write lock is nobody's to prove.
    public async Task<string?> WhyNotWritableAsync(bool writerIsCommitting, CancellationToken ct = default)
    {
        await using var connection = await OpenAsync(ct);
        await connection.ExecuteScalarAsync<long>(new CommandDefinition("SELECT count(*) FROM users LIMIT 1", cancellationToken: ct));
        var (recovery, readOnly) = await connection.QuerySingleAsync<(bool, string)>(new CommandDefinition(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')", cancellationToken: ct));
        return recovery || readOnly == "on" ? "the database is read-only" : null;
    }

    public async Task<DbConnection> OpenAsync(CancellationToken ct = default) => await DataSource.OpenConnectionAsync(ct);

    public async Task InitializeAsync(CancellationToken ct = default)
    {
        using var stream = typeof(PostgresDatabase).Assembly.GetManifestResourceStream("balance.postgres.sql")
            ?? throw new InvalidOperationException("balance.postgres.sql is not embedded in the assembly.");
        string schema = await new StreamReader(stream).ReadToEndAsync(ct);
        await using var connection = await DataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        // Held to the end of this transaction: a second node starting now waits here, then finds the schema made.
        await connection.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_xact_lock(@SchemaLock)", new { SchemaLock }, tx, cancellationToken: ct));
        if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition("SELECT to_regclass('schema_version') IS NOT NULL", transaction: tx, cancellationToken: ct)))
        {
            int found = await connection.ExecuteScalarAsync<int?>(new CommandDefinition("SELECT max(version) FROM schema_version", transaction: tx, cancellationToken: ct)) ?? 0;
            if (found > SchemaVersion)
                throw new InvalidOperationException($"The database has schema version {found}, made by a newer Balance; this build knows version {SchemaVersion}. Run the newer build, or restore a backup.");
            // Already this version: applying the script again would take table locks (CREATE INDEX IF NOT EXISTS does)
            // that stall every running node's postings and logins for the length of this transaction.
            if (found == SchemaVersion) { await tx.CommitAsync(ct); return; }
        }
        await connection.ExecuteAsync(new CommandDefinition(schema, transaction: tx, cancellationToken: ct));
        await connection.ExecuteAsync(new CommandDefinition("""
            DELETE FROM schema_version;
            INSERT INTO schema_version (version) VALUES (@SchemaVersion);
            """, new { SchemaVersion }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
    }

    // Kept in the database, so every node of it signs and accepts the same tokens; the first node to start makes it.
    public async Task<byte[]> DevelopmentSigningKeyAsync(CancellationToken ct = default)
    {
        await using var connection = await DataSource.OpenConnectionAsync(ct);
        string candidate = Convert.ToBase64String(RandomNumberGenerator.GetBytes(64));
        await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO settings (name, value) VALUES ('development_signing_key', @candidate) ON CONFLICT (name) DO NOTHING", new { candidate }, cancellationToken: ct));
        string key = await connection.QuerySingleAsync<string>(new CommandDefinition(
            "SELECT value FROM settings WHERE name = 'development_signing_key'", cancellationToken: ct));
        return Convert.FromBase64String(key);
    }

    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}
