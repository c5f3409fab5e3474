using Balance.Postings;

namespace Balance.Storage.Sqlite;

// Balance:Synchronous=FULL without the writer waiting for the disk. With SQLite's own synchronous=FULL, every COMMIT
// fsyncs the WAL before it returns, and the writer — the one serial step — waits for the disk before it can start the
// next batch. Instead the writer's connection commits with synchronous=NORMAL (the batch's frames are written to the
// WAL file, not yet forced to disk) and this thread fsyncs the WAL while the writer works on the next batch: the WAL
// writer and group commit of PostgreSQL. One fsync covers every commit returned before it began.
//
// Nothing leaves the process before the fsync that covers it: a batch's answers and pushes run here, after it (After),
// and a read waits for it before it answers with what it read (FlushedAsync) — a read may see a batch the moment it
// commits, so it waits for every commit begun before it finished reading. A failed fsync fails the store for good: what
// was committed may not be on disk (and the kernel may have dropped the pages it could not write), so every waiting
// answer gets "outcome unknown", and every later batch and read fails until a restart rebuilds the state from the disk
// — PostgreSQL's answer to the same failure.
internal sealed class WalFlusher : IDisposable
{
    private readonly string _walPath;
    private readonly WalSync _sync;
    private readonly ILogger _log;
    private readonly object _gate = new();
    private readonly Queue<(long Commit, Action<Exception?> Then)> _after = new();
    private readonly List<(long Commit, TaskCompletionSource Done)> _readers = [];
    // Commits begun, commits returned (committed or not), and the highest a finished fsync covers; under _gate.
    private long _started, _returned, _flushed;
    private Exception? _failed;
    private bool _stopping;
    private readonly Thread _thread;

    /// fsyncs of the WAL so far.
    public long Flushes;

    public WalFlusher(string walPath, WalSync sync, ILogger log)
    {
        (_walPath, _sync, _log) = (walPath, sync, log);
        _thread = new Thread(Run) { IsBackground = true, Name = "ledger wal flusher", Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    /// Throws once an fsync has failed.
    public void ThrowIfFailed()
    {
        lock (_gate) if (_failed is { } failed) throw failed;
    }

    /// The writer, right before a COMMIT: the commit's number.
    public long Starting()
    {
        lock (_gate)
        {
            if (_failed is { } failed) throw failed;
            return ++_started;
        }
    }

    /// The writer, after that COMMIT returned or threw.
    public void Returned(long commit)
    {
        lock (_gate)
        {
            _returned = Math.Max(_returned, commit);
            if (_after.Count > 0 || _readers.Count > 0) Monitor.Pulse(_gate);
        }
    }

    /// Runs `then` on this thread once an fsync covers `commit` (with null), or once an fsync failed (with the failure);
    /// in the order given.
    public void After(long commit, Action<Exception?> then)
    {
        lock (_gate)
        {
            _after.Enqueue((commit, then));
            Monitor.Pulse(_gate);
        }
    }

    /// Completes once every commit begun before the call is covered by an fsync: at once when none is waiting for one.
    public Task FlushedAsync()
    {
        lock (_gate)
        {
            if (_failed is { } failed) return Task.FromException(failed);
            if (_started <= _flushed) return Task.CompletedTask;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _readers.Add((_started, done));
            Monitor.Pulse(_gate);
            return done.Task;
        }
    }

    /// Blocks until everything given to After so far has run.
    public void Drain()
    {
        using var drained = new ManualResetEventSlim();
        long last;
        lock (_gate) last = _returned;
        After(last, _ => drained.Set());
        drained.Wait();
    }

    private void Run()
    {
        var ready = new List<Action<Exception?>>();
        var readers = new List<TaskCompletionSource>();
        while (true)
        {
            long target;
            bool flush;
            lock (_gate)
            {
                while (true)
                {
                    flush = _failed is null && _returned > _flushed && (_after.Count > 0 || _readers.Count > 0);
                    if (flush || Due()) break;
                    if (_stopping)
                    {
                        // Every commit has returned by now (the writer stops first), so nothing is left but what no
                        // fsync can cover: a read that came in as the service stopped.
                        foreach (var (_, done) in _readers) done.TrySetException(new ServiceStoppingException());
                        return;
                    }
                    Monitor.Wait(_gate);
                }
                target = _returned;
            }
            Exception? error = null;
            if (flush)
            {
                try
                {
                    _sync.Sync(_walPath);
                    Interlocked.Increment(ref Flushes);
                }
                catch (Exception ex)
                {
                    error = ex;
                    _log.LogCritical(ex, "The fsync of the ledger's WAL failed: committed batches may not be on disk. Every batch and read fails from now on; restart the service to rebuild its state from the disk");
                }
            }
            Exception? failed;
            lock (_gate)
            {
                if (error is not null) _failed ??= new CommitOutcomeUnknownException(error, "The fsync of the ledger's WAL after COMMIT failed; the outcome is unknown.");
                else if (flush) _flushed = Math.Max(_flushed, target);
                failed = _failed;
                while (_after.Count > 0 && (failed is not null || _after.Peek().Commit <= _flushed)) ready.Add(_after.Dequeue().Then);
                for (int i = _readers.Count - 1; i >= 0; i--)
                    if (failed is not null || _readers[i].Commit <= _flushed)
                    {
                        readers.Add(_readers[i].Done);
                        _readers.RemoveAt(i);
                    }
            }
            foreach (var then in ready)
            {
                try { then(failed); }
                catch (Exception ex) { _log.LogCritical(ex, "A batch's completion after its WAL fsync failed"); }
            }
            foreach (var reader in readers)
                if (failed is null) reader.TrySetResult();
                else reader.TrySetException(failed);
            ready.Clear();
            readers.Clear();
        }

        bool Due() =>
            (_after.Count > 0 && (_failed is not null || _after.Peek().Commit <= _flushed))
            || _readers.Exists(r => _failed is not null || r.Commit <= _flushed);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.Pulse(_gate);
        }
        _thread.Join();
    }
}

/// Makes what was written to the WAL file durable: fsync. A seam for tests, which hold it (a slow disk) or fail it.
public class WalSync
{
    public virtual void Sync(string walPath)
    {
        using var wal = new FileStream(walPath, new FileStreamOptions
        {
            Mode = FileMode.Open, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite | FileShare.Delete, BufferSize = 0,
        });
        wal.Flush(flushToDisk: true);
    }
}
