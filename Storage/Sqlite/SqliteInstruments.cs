using System.Diagnostics.Metrics;

namespace Balance.Storage.Sqlite;

// What SQLite says of the writer's connection, read on the running service: the durability promise rests on it.
internal sealed class SqliteInstruments(SqliteDatabase db, SqliteLedgerStore store, Checkpointer checkpoints) : IStorageInstruments
{
    public void Create(Meter meter)
    {
        meter.CreateObservableGauge("balance.ledger.synchronous", () => Volatile.Read(ref store.Synchronous), "{level}",
            "What a ledger commit gets before its answer, as PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL (the WAL fsynced: by SQLite in COMMIT, or by the writer's WAL flusher), 3 EXTRA (-1 before its first commit).");
        meter.CreateObservableGauge("balance.ledger.wal_flusher", () => Volatile.Read(ref store.WalFlusherOn), "{flag}",
            "1 when the ledger writer commits with synchronous=NORMAL and a thread of its own fsyncs the WAL before any answer or read, overlapping the next batch; 0 when SQLite fsyncs in COMMIT (-1 before its first commit).");
        meter.CreateObservableCounter("balance.ledger.wal_fsyncs", () => store.WalFlushes, "{fsync}",
            "fsyncs of the WAL by the ledger's WAL flusher; each covers every commit before it.");
        meter.CreateObservableGauge("balance.ledger.journal_wal", () => Volatile.Read(ref store.JournalWal), "{flag}",
            "1 when the ledger writer's connection runs in WAL journal mode, 0 when not (-1 before its first commit).");
        meter.CreateObservableGauge("balance.wal.pages", () => checkpoints.WalPages, "{page}",
            $"Frames in SQLite's WAL at the last background checkpoint; it restarts near {Checkpointer.BackstopPages}. Growing without bound means checkpoints fall behind.");
        meter.CreateObservableGauge("balance.wal.file_bytes", WalFileBytes, "By", "Size of SQLite's WAL file (-wal) on disk.");
        meter.CreateObservableGauge("balance.wal.page_size", () => Volatile.Read(ref store.PageSize), "By",
            "SQLite's page size: a WAL frame holds one page (-1 before the ledger writer's first commit).");
    }

    private long WalFileBytes()
    {
        try { return new FileInfo(db.FilePath + "-wal") is { Exists: true } wal ? wal.Length : 0; }
        catch (IOException) { return 0; }
    }
}
