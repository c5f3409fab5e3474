using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using Balance.Auth;
using Balance.Postings;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Balance.Storage.Postgres;

// Every node's view of what every node committed. The ledger is the change log: one feed per node, on a connection
// of its own, reads ledger rows past its cursor (tx, seq) but only below the horizon — the oldest transaction still
// running (pg_snapshot_xmin) — because every transaction below it has ended, so no row can still appear behind the
// cursor (a plain `seq > last` skips rows that commit out of seq order). Rows already committed above the horizon —
// behind some long transaction — go out at once too, without moving the cursor, so one open transaction anywhere in
// the cluster does not hold every other node's balances back; they come again when the cursor passes them, and a
// socket sends each wallet version once. Ended logins are read from the same starting point with no upper bound: each is
// marked ended in this node's Sessions (its REST routes refuse the login's tokens) and then offered to the socket hub
// (EndedLogins), which closes its sockets. Both streams are IChangeFeed's. The feed wakes on the doorbell (one LISTEN per node) and polls every 250 ms, so a lost NOTIFY only
// delays. After a gap (connection dropped, PostgreSQL restarted) it reconnects and catches up from the cursor: nothing
// committed meanwhile is missed.
public sealed class ChangeFeed : BackgroundService, IChangeFeed
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);
    private const int Page = 5_000;

    private readonly Sessions _sessions;
    private readonly AuthOptions _auth;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly string _connectionString;
    private readonly Channel<CommittedChange> _changes = Channel.CreateUnbounded<CommittedChange>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly Channel<string> _endedLogins = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private string _tx = "0", _revokedFrom = "0"; // the cursor: every row up to (_tx, _seq) was read; every login ended below _revokedFrom
    private long _seq = -1;
    private long _aheadSeq = -1; // the newest row sent ahead of the cursor
    private int _rung; // a doorbell came while reading: read again before waiting
    private long _caughtUp; // TimeProvider timestamp of the last complete read
    private double _waiting; // seconds the oldest committed row the cursor has not passed has waited

    public long Rows, Gaps, Revocations;
    public ChannelReader<CommittedChange> Changes => _changes.Reader;
    public ChannelReader<string> EndedLogins => _endedLogins.Reader;

    /// How far behind the feed may be, in seconds: since its last complete read, or how long the oldest committed row
    /// its cursor has not passed has waited (behind a long transaction), whichever is longer.
    public double LagSeconds => Math.Max(_time.GetElapsedTime(Volatile.Read(ref _caughtUp)).TotalSeconds, Volatile.Read(ref _waiting));

    public ChangeFeed(PostgresDatabase db, Sessions sessions, IOptions<AuthOptions> auth, IOptions<NodeOptions> node, TimeProvider time, ILogger<ChangeFeed> log)
    {
        (_sessions, _auth, _time, _log) = (sessions, auth.Value, time, log);
        // Its own connection, outside the pool: a LISTEN must not go back to the pool, and an operator finds it by name.
        _connectionString = new NpgsqlConnectionStringBuilder(db.ConnectionString) { Pooling = false, ApplicationName = $"balance feed {node.Value.NodeId}", KeepAlive = 10 }.ConnectionString;
        _caughtUp = time.GetTimestamp();
    }

    // The starting horizon is taken before the first request: a change below it was committed before any socket of
    // this node could open, so its snapshot shows it; one at or above it comes through the feed.
    public override async Task StartAsync(CancellationToken ct)
    {
        await using (var connection = new NpgsqlConnection(_connectionString))
        {
            await connection.OpenAsync(ct);
            string horizon = await HorizonAsync(connection, ct);
            (_tx, _seq, _revokedFrom) = (horizon, -1, horizon);
            // Logins ended below it, even those committed after Sessions loaded at start.
            await using var ended = new NpgsqlCommand("SELECT id FROM sessions WHERE revoked_tx < $1::xid8 AND access_expires_at > $2", connection)
            {
                Parameters = { new() { Value = horizon }, new() { Value = Timestamps.Format((_time.GetUtcNow() - _auth.ClockSkew).UtcDateTime) } },
            };
            await using var r = await ended.ExecuteReaderAsync(ct);
            while (await r.ReadAsync(ct)) Ended(r.GetString(0));
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
                connection.Notification += (_, _) => Volatile.Write(ref _rung, 1);
                await using (var listen = new NpgsqlCommand($"LISTEN {Doorbell.Channel}", connection)) await listen.ExecuteNonQueryAsync(ct);
                await RewindAsync(connection, ct);
                backoff = Poll;
                while (true)
                {
                    Volatile.Write(ref _rung, 0);
                    while (await ReadAsync(connection, ct)) { } // a full page: there is more behind it
                    if (Volatile.Read(ref _rung) == 0) await connection.WaitAsync(Poll, ct); // the doorbell, or the poll
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
        _endedLogins.Writer.TryComplete();
    }

    // A login another node ended: marked here first (REST refuses its tokens), then offered to the hub. Each once: false
    // when this node knew it already (ended here, or read before).
    private bool Ended(string sessionId)
    {
        if (!_sessions.MarkRevoked(sessionId, here: false)) return false;
        _endedLogins.Writer.TryWrite(sessionId);
        return true;
    }

    private static async Task<string> HorizonAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", connection);
        return (string)(await command.ExecuteScalarAsync(ct))!;
    }

    // After a crash PostgreSQL may hand out again a transaction id that it had handed out but never logged. A cursor
    // set from a horizon past such an id would skip the rows of its second use, so on every (re)connect the cursors go
    // back to the horizon when it is below them; rows read twice are dropped by the sockets' version check.
    private async Task RewindAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        string horizon = await HorizonAsync(connection, ct);
        ulong h = ulong.Parse(horizon, CultureInfo.InvariantCulture);
        if (h < ulong.Parse(_tx, CultureInfo.InvariantCulture)) (_tx, _seq) = (horizon, -1);
        if (h < ulong.Parse(_revokedFrom, CultureInfo.InvariantCulture)) _revokedFrom = horizon;
    }

    // One read up to the horizon, and what is committed past it; true when a full page came back and more is waiting.
    private async Task<bool> ReadAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        string horizon;
        await using (var first = new NpgsqlCommand("""
            SELECT pg_snapshot_xmin(pg_current_snapshot())::text,
                   (SELECT created_at FROM ledger WHERE (tx, seq) > ($1::xid8, $2) ORDER BY tx, seq LIMIT 1)
            """, connection) { Parameters = { new() { Value = _tx }, new() { Value = _seq } } })
        await using (var r = await first.ExecuteReaderAsync(ct))
        {
            await r.ReadAsync(ct);
            horizon = r.GetString(0);
            double waited = r.IsDBNull(1) ? 0 : (_time.GetUtcNow().UtcDateTime - Timestamps.Parse(r.GetString(1))).TotalSeconds;
            Volatile.Write(ref _waiting, Math.Max(0, waited));
        }
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("""
                    SELECT tx::text, seq, user_id, currency, balance_after, version, transaction_id, type, created_at FROM ledger
                    WHERE (tx, seq) > ($1::xid8, $2) AND tx < $3::xid8
                    ORDER BY tx, seq LIMIT $4
                    """) { Parameters = { new() { Value = _tx }, new() { Value = _seq }, new() { Value = horizon }, new() { Value = Page } } },
                new NpgsqlBatchCommand("""
                    SELECT seq, user_id, currency, balance_after, version, transaction_id, type, created_at FROM ledger
                    WHERE tx >= $1::xid8 AND seq > $2 ORDER BY seq LIMIT $3
                    """) { Parameters = { new() { Value = horizon }, new() { Value = _aheadSeq }, new() { Value = Page } } },
                new NpgsqlBatchCommand("SELECT id FROM sessions WHERE revoked_tx >= $1::xid8")
                    { Parameters = { new() { Value = _revokedFrom } } },
            },
        };
        int rows = 0;
        await using (var r = await batch.ExecuteReaderAsync(ct))
        {
            while (await r.ReadAsync(ct))
            {
                rows++;
                (_tx, _seq) = (r.GetString(0), r.GetInt64(1));
                Publish(r, 2);
            }
            await r.NextResultAsync(ct);
            while (await r.ReadAsync(ct))
            {
                _aheadSeq = r.GetInt64(0);
                Publish(r, 1);
            }
            await r.NextResultAsync(ct);
            while (await r.ReadAsync(ct))
                if (Ended(r.GetString(0))) Interlocked.Increment(ref Revocations);
        }
        _revokedFrom = horizon;
        Interlocked.Add(ref Rows, rows);
        if (rows < Page) Volatile.Write(ref _caughtUp, _time.GetTimestamp());
        return rows == Page;
    }

    // Columns from `at`: user_id, currency, balance_after, version, transaction_id, type, created_at.
    private void Publish(NpgsqlDataReader r, int at)
    {
        var change = new BalanceChange(r.GetGuid(at), r.GetString(at + 1), r.GetInt64(at + 2), r.GetInt64(at + 3), r.GetString(at + 4), r.GetString(at + 5), r.GetString(at + 6));
        _changes.Writer.TryWrite(new CommittedChange(change, Stopwatch.GetTimestamp()));
    }
}
