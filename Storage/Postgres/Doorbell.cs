using Npgsql;

namespace Balance.Storage.Postgres;

// One NOTIFY after a batch commits (PostgresLedgerSession) or a login ends here (Auth/Sessions.MarkRevoked), so every
// node's feed looks now instead of at its next poll. Never inside the ledger's transaction: NOTIFY takes a
// cluster-wide lock at commit, and a full notification queue fails the commit that carries it. Rings coalesce; a lost
// ring only delays until the feed's next poll.
public sealed class Doorbell(PostgresDatabase db, ILogger<Doorbell> log) : BackgroundService, IDoorbell
{
    public const string Channel = "balance_changes";
    private readonly PostgresDatabase _db = db;
    private readonly ILogger _log = log;
    private readonly SemaphoreSlim _signal = new(0, 1);
    private int _rung;

    public void Ring()
    {
        if (Interlocked.Exchange(ref _rung, 1) == 0) _signal.Release();
    }

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        try
        {
            while (true)
            {
                await _signal.WaitAsync(ct);
                Volatile.Write(ref _rung, 0); // a ring from now on is another NOTIFY: it may carry a newer commit
                try
                {
                    await using var connection = await _db.DataSource.OpenConnectionAsync(ct);
                    await using var notify = new NpgsqlCommand($"NOTIFY {Channel}", connection);
                    await notify.ExecuteNonQueryAsync(ct);
                }
                catch (Exception e) when (e is NpgsqlException or TimeoutException)
                {
                    _log.LogDebug(e, "NOTIFY failed; the feeds will see the change at their next poll");
                }
            }
        }
        catch (OperationCanceledException) { }
    }
}
