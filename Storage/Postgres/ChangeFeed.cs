using System.Diagnostics;
using System.Threading.Channels;
using Balance.Auth;
using Balance.Postings;
using Npgsql;

namespace Balance.Storage.Postgres;

// Every node's view of what every node committed. The ledger is the change log: one feed per node, on a connection
// of its own, reads ledger rows past its cursor (tx, seq) but only below the horizon — the oldest transaction still
// running (pg_snapshot_xmin) — because every transaction below it has ended, so no row can still appear behind the
// cursor (a plain `seq > last` skips rows that commit out of seq order). It reads ended logins the same way and closes
// their sockets here too. It wakes on the doorbell (one LISTEN per node) and polls every 250 ms, so a lost NOTIFY only
// delays. After a gap (connection dropped, PostgreSQL restarted) it reconnects and catches up from the cursor: nothing
// committed meanwhile is missed.
public sealed class ChangeFeed : BackgroundService, IChangeFeed
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);
    private const int Page = 5_000;

    private readonly PostgresDatabase _db;
    private readonly Sessions _sessions;
    private readonly AuthOptions _auth;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly string _connectionString;
    private readonly Channel<CommittedChange> _changes = Channel.CreateUnbounded<CommittedChange>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private string _tx = "0", _revokedFrom = "0"; // the cursor: every row up to (_tx, _seq) was read; every login ended below _revokedFrom
    private long _seq = -1;
    private long _caughtUp; // TimeProvider timestamp of the last poll that reached the horizon
    private double _horizonAge; // seconds the oldest running writer has held the horizon back

    public long Rows, Gaps, Revocations;
    public ChannelReader<CommittedChange> Changes => _changes.Reader;

    /// How far behind the feed may be, in seconds: since its last complete read, or since the oldest transaction
    /// still running began (rows behind it wait), whichever is longer.
    public double LagSeconds => Math.Max(_time.GetElapsedTime(Volatile.Read(ref _caughtUp)).TotalSeconds, Volatile.Read(ref _horizonAge));

    public ChangeFeed(PostgresDatabase db, Sessions sessions, AuthOptions auth, IConfiguration config, TimeProvider time, ILogger<ChangeFeed> log)
    {
        (_db, _sessions, _auth, _time, _log) = (db, sessions, auth, time, log);
        string node = config["Balance:NodeId"] is { Length: > 0 } id ? id : $"{Environment.MachineName}-{Environment.ProcessId}";
        // Its own connection, outside the pool: a LISTEN must not go back to the pool, and an operator finds it by name.
        _connectionString = new NpgsqlConnectionStringBuilder(db.ConnectionString) { Pooling = false, ApplicationName = $"balance feed {node}", KeepAlive = 10 }.ConnectionString;
        _caughtUp = time.GetTimestamp();
    }

    // The starting horizon is taken before the first request: a change below it was committed before any socket of
    // this node could open, so its snapshot shows it; one at or above it comes through the feed.
    public override async Task StartAsync(CancellationToken ct)
    {
        await using (var connection = new NpgsqlConnection(_connectionString))
        {
            await connection.OpenAsync(ct);
            string horizon = (await Horizon(connection, ct)).Xmin;
            (_tx, _seq, _revokedFrom) = (horizon, -1, horizon);
            // Logins ended below it, even those committed after Sessions loaded at start.
            await using var ended = new NpgsqlCommand("SELECT id FROM sessions WHERE revoked_tx < $1::xid8 AND access_expires_at > $2", connection)
            {
                Parameters = { new() { Value = horizon }, new() { Value = Logins.Stamp((_time.GetUtcNow() - _auth.ClockSkew).UtcDateTime) } },
            };
            await using var r = await ended.ExecuteReaderAsync(ct);
            while (await r.ReadAsync(ct)) _sessions.MarkRevoked(r.GetString(0));
        }
        await base.StartAsync(ct);
    }

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        var backoff = Poll;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await using var connection = new NpgsqlConnection(_connectionString);
                await connection.OpenAsync(ct);
                await using (var listen = new NpgsqlCommand($"LISTEN {Doorbell.Channel}", connection)) await listen.ExecuteNonQueryAsync(ct);
                backoff = Poll;
                while (true)
                {
                    while (await ReadAsync(connection, ct)) { } // a full page: there is more behind it
                    await connection.WaitAsync(Poll, ct); // the doorbell, or the poll
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
            catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException)
            {
                // A gap: reconnect and read on from the cursor. The lag metric grows meanwhile.
                Interlocked.Increment(ref Gaps);
                _log.LogWarning("Change feed lost its connection ({Reason}); reconnecting in {Delay} ms, then catching up", e.Message, (int)backoff.TotalMilliseconds);
                try { await Task.Delay(backoff, _time, ct); } catch (OperationCanceledException) { break; }
                backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 2_000));
            }
        }
        _changes.Writer.TryComplete();
    }

    private static async Task<(string Xmin, double OldestWriterSeconds)> Horizon(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT pg_snapshot_xmin(pg_current_snapshot())::text,
                   (SELECT coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8 FROM pg_stat_activity WHERE backend_xid IS NOT NULL)
            """, connection);
        await using var r = await command.ExecuteReaderAsync(ct);
        await r.ReadAsync(ct);
        return (r.GetString(0), r.GetDouble(1));
    }

    // One read up to the horizon; true when a full page came back and more is waiting.
    private async Task<bool> ReadAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        var (horizon, oldest) = await Horizon(connection, ct);
        Volatile.Write(ref _horizonAge, oldest);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("""
                    SELECT tx::text, seq, user_id, currency, balance_after, version, transaction_id, type, created_at FROM ledger
                    WHERE (tx, seq) > ($1::xid8, $2) AND tx < $3::xid8
                    ORDER BY tx, seq LIMIT $4
                    """) { Parameters = { new() { Value = _tx }, new() { Value = _seq }, new() { Value = horizon }, new() { Value = Page } } },
                new NpgsqlBatchCommand("SELECT id FROM sessions WHERE revoked_tx >= $1::xid8 AND revoked_tx < $2::xid8")
                    { Parameters = { new() { Value = _revokedFrom }, new() { Value = horizon } } },
            },
        };
        int rows = 0;
        await using (var r = await batch.ExecuteReaderAsync(ct))
        {
            while (await r.ReadAsync(ct))
            {
                rows++;
                (_tx, _seq) = (r.GetString(0), r.GetInt64(1));
                var change = new BalanceChange(r.GetGuid(2), r.GetString(3), r.GetInt64(4), r.GetInt64(5), r.GetString(6), r.GetString(7), r.GetString(8));
                _changes.Writer.TryWrite(new CommittedChange(change, Stopwatch.GetTimestamp()));
            }
            await r.NextResultAsync(ct);
            while (await r.ReadAsync(ct))
            {
                Interlocked.Increment(ref Revocations);
                _sessions.MarkRevoked(r.GetString(0));
            }
        }
        _revokedFrom = horizon;
        Interlocked.Add(ref Rows, rows);
        if (rows < Page) Volatile.Write(ref _caughtUp, _time.GetTimestamp());
        return rows == Page;
    }
}
