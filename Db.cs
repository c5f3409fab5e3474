using System.Data;
using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance;

// Storage plumbing: where the database lives, how a connection is opened, the schema.
public sealed class Database
{
    public string ConnectionString { get; }
    public string FilePath { get; }
    private readonly string _synchronous;
    private readonly TimeProvider _time;

    public Database(IConfiguration config, TimeProvider time)
    {
        _time = time;
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
        // FULL: an acknowledged transaction survives power loss. NORMAL trades that for speed (WAL stays consistent).
        _synchronous = (config["Balance:Synchronous"] ?? "FULL").ToUpperInvariant() switch
        {
            "FULL" => "FULL",
            "NORMAL" => "NORMAL",
            "EXTRA" => "EXTRA",
            var other => throw new InvalidOperationException($"Balance:Synchronous must be FULL, EXTRA or NORMAL, not '{other}'."),
        };
    }

    public async Task<SqliteConnection> OpenAsync(CancellationToken ct = default)
    {
        var connection = new SqliteConnection(ConnectionString);
        await connection.OpenAsync(ct);
        // Per-connection settings; cheap on a pooled connection.
        await connection.ExecuteAsync($"PRAGMA synchronous = {_synchronous}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = {Checkpointer.BackstopPages}; PRAGMA journal_size_limit = 67108864;");
        return connection;
    }

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
        using var stream = typeof(Database).Assembly.GetManifestResourceStream("balance.db.sql")
            ?? throw new InvalidOperationException("balance.db.sql is not embedded in the assembly.");
        string schema = await new StreamReader(stream).ReadToEndAsync();
        await using var connection = await OpenAsync();
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
    }

    public string Now() => _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
}

// WAL checkpoints off the ledger writer's path. SQLite's autocheckpoint runs inside the commit that crosses its
// threshold, so every few hundred postings one batch also waited while the WAL was copied into the database
// file and synced. This loop copies committed pages in the background instead (PASSIVE: it never blocks a
// writer or a reader). Autocheckpoint stays on as the backstop, at BackstopPages: a WAL can only restart from its
// beginning after a checkpoint that catches up completely between two commits, which the writer's own
// checkpoint does — cheaply, because by then this loop has already copied nearly every page.
public sealed class Checkpointer(Database db, ILogger<Checkpointer> log) : BackgroundService
{
    // 64 MiB of WAL with 4 KiB pages. The ledger alone (64 concurrent posters, this repo's 2-core box) did
    // ~5,700-6,300 postings/s with 4,000 pages and ~6,500-7,400 with 16,000: the writer runs its own
    // checkpoint (inside a commit) four times less often. Much larger was slower again: the WAL then rarely
    // restarts and keeps growing, and appending to a growing file costs more per fsync than overwriting.
    public const int BackstopPages = 16_000;
    private static readonly TimeSpan Every = TimeSpan.FromMilliseconds(50);

    // Frames in the WAL at the last background checkpoint (-1 before the first): should stay near or below
    // BackstopPages; a WAL that keeps growing means checkpoints cannot keep up (balance.wal.pages).
    public long WalPages => Volatile.Read(ref _walPages);
    private long _walPages = -1;

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        bool failing = false;
        int yieldTicks = 0;
        using var timer = new PeriodicTimer(Every);
        SqliteConnection? connection = null;
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                if (yieldTicks > 0) { yieldTicks--; continue; }
                try
                {
                    connection ??= await db.OpenAsync(ct);
                    var (_, walPages, _) = await connection.QuerySingleAsync<(long Busy, long Log, long Checkpointed)>("PRAGMA wal_checkpoint(PASSIVE)");
                    Volatile.Write(ref _walPages, walPages);
                    // Only one checkpoint runs at a time, and the writer's own (the backstop) fails at once while this
                    // one runs: past the backstop, step aside for a few ticks so the writer's checkpoint can finish
                    // and let the WAL restart, instead of chasing a WAL that keeps growing under steady load.
                    if (walPages >= BackstopPages) yieldTicks = 4;
                    if (failing) log.LogInformation("Background WAL checkpoints work again");
                    failing = false;
                }
                catch (SqliteException ex)
                {
                    // Locked or full disk: the ledger answers 503 on its own; log the change once, not every tick.
                    if (!failing) log.LogWarning(ex, "Background WAL checkpoint failed; retrying every {Interval} ms", Every.TotalMilliseconds);
                    failing = true;
                    connection?.Dispose();
                    connection = null;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        finally
        {
            connection?.Dispose();
        }
    }
}

// SQLite stores GUIDs as TEXT; Dapper needs to be told how to read them back.
public sealed class GuidHandler : SqlMapper.TypeHandler<Guid>
{
    public override Guid Parse(object value) => Guid.Parse((string)value);
    public override void SetValue(IDbDataParameter parameter, Guid value) => parameter.Value = value.ToString();
}

public sealed class DatabaseHealthCheck(Database db) : Microsoft.Extensions.Diagnostics.HealthChecks.IHealthCheck
{
    public async Task<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult> CheckHealthAsync(
        Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext context, CancellationToken ct = default)
    {
        try
        {
            await using var connection = await db.OpenAsync(ct);
            await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM users LIMIT 1");
            return Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy();
        }
        catch (SqliteException ex)
        {
            return Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Unhealthy("database unreachable", ex);
        }
    }
}

// Development only: the demo accounts of the contract, created on first start.
public sealed class Demo(Users users, Ledger ledger, ILogger<Demo> log) : IHostedService
{
    public const string Password = "demo1234";

    public async Task StartAsync(CancellationToken ct)
    {
        var op = await users.FindAsync("operator") ?? await users.CreateAsync("operator", Password, Roles.Operator);
        var alice = await users.FindAsync("alice") ?? await users.CreateAsync("alice", Password, Roles.Player);
        if (await users.FindAsync("bob") is null) await users.CreateAsync("bob", Password, Roles.Player);
        // A fixed idempotency key makes the opening deposit happen once, however often we start.
        var outcome = await ledger.PostAsync(new Posting(alice!.Id, TxTypes.Deposit, 100_00, "USD", "demo opening balance", null, op!.Id, "demo-seed-alice-opening-deposit"));
        if (outcome is PostOutcome.Committed { Replayed: false }) log.LogInformation("Demo accounts ready: alice, bob, operator (password {Hint})", "see README");
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}

// Outside Development there are no demo accounts: the first operator comes from configuration
// (Auth:BootstrapOperator:Username / :Password), created once if missing. The password is never logged.
public sealed class BootstrapOperator(Users users, IConfiguration config, ILogger<BootstrapOperator> log) : IHostedService
{
    public async Task StartAsync(CancellationToken ct)
    {
        string? username = config["Auth:BootstrapOperator:Username"], password = config["Auth:BootstrapOperator:Password"];
        if (string.IsNullOrEmpty(username) || string.IsNullOrEmpty(password) || await users.FindAsync(username) is not null) return;
        if (!Users.IsValidUsername(username) || password.Length < 12)
            throw new InvalidOperationException("Auth:BootstrapOperator needs a valid username and a password of at least 12 characters.");
        var user = await users.CreateAsync(username, password, Roles.Operator);
        log.LogInformation("Bootstrap operator {Username} created as {UserId}", username, user?.Id);
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}
