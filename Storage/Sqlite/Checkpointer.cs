using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance.Storage.Sqlite;

// WAL checkpoints off the ledger writer's path. SQLite's autocheckpoint runs inside the commit that crosses its
// threshold, so every few hundred postings one batch also waited while the WAL was copied into the database
// file and synced. This loop copies committed pages in the background instead (PASSIVE: it never blocks a
// writer or a reader). Autocheckpoint stays on as the backstop, at BackstopPages: a WAL can only restart from its
// beginning after a checkpoint that catches up completely between two commits, which the writer's own
// checkpoint does — cheaply, because by then this loop has already copied nearly every page.
public sealed class Checkpointer(SqliteDatabase db, ILogger<Checkpointer> log) : BackgroundService
{
    // 64 MiB of WAL with 4 KiB pages: large enough that the writer runs its own checkpoint (inside a commit) rarely,
    // small enough that the WAL still restarts; a WAL that keeps growing costs more per fsync than one overwritten
    // (measured in BENCHMARKS.md).
    public const int BackstopPages = 16_000;
    // Once a second: each run copies the newest version of every page the WAL holds, and with the ledger as a log most
    // of those are the few tail pages each batch rewrites; run more often, it copies the same pages again and again
    // (bytes written per posting by interval: BENCHMARKS.md, "The ledger as a log").
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(1);

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
            bool first = true; // one right away: balance.wal.pages is known from the start
            while (first || await timer.WaitForNextTickAsync(ct))
            {
                first = false;
                if (yieldTicks > 0) { yieldTicks--; continue; }
                try
                {
                    connection ??= await db.OpenAsync(ct);
                    var (_, walPages, _) = await connection.QuerySingleAsync<(long Busy, long Log, long Checkpointed)>("PRAGMA wal_checkpoint(PASSIVE)");
                    Volatile.Write(ref _walPages, walPages);
                    // Only one checkpoint runs at a time, and the writer's own (the backstop) fails at once while this
                    // one runs: past the backstop, step aside for a few ticks so the writer's checkpoint can finish
                    // and let the WAL restart, instead of chasing a WAL that keeps growing under steady load.
                    if (walPages >= BackstopPages) yieldTicks = 1;
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
