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
// — PostgreSQL's answer to the same failure. The fsync goes through a descriptor the writer's session opened before
// its first commit and keeps until its last is covered (Attach): Linux reports a write-back error only to descriptors
// open when it happened, and once to each, so a descriptor opened per fsync could miss an error that SQLite's own
// checkpoint fsync took first.
internal sealed class WalFlusher : IDisposable
{
    private readonly WalSync _sync;
    private readonly ILogger _log;
    private readonly Action<Exception> _onFailure;
    private FileStream? _wal; // the current session's descriptor of the -wal file; under _gate
    private readonly object _gate = new();
    private readonly Queue<(long Commit, Action<Exception?> Then)> _after = new();
    private readonly List<(long Commit, TaskCompletionSource Done)> _readers = [];
    // Commits begun, commits returned (committed or not), and the highest a finished fsync covers; under _gate.
    private long _started, _returned, _flushed;
    private Exception? _failed;
    private bool _stopping, _exited;
    private readonly Thread _thread;

    /// fsyncs of the WAL so far.
    public long Flushes;

    public WalFlusher(WalSync sync, ILogger log, Action<Exception> onFailure)
    {
        (_sync, _log, _onFailure) = (sync, log, onFailure);
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
            if (_stopping) throw new ServiceStoppingException();
            return ++_started;
        }
    }

    /// A writer's session, before its first commit: the descriptor its commits are fsynced through.
    public void Attach(FileStream wal)
    {
        lock (_gate) _wal = wal;
    }

    /// The session, after Drain, as it closes its connection.
    public void Detach(FileStream wal)
    {
        lock (_gate) if (ReferenceEquals(_wal, wal)) _wal = null;
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
        Exception? late;
        lock (_gate)
        {
            if (!_exited)
            {
                _after.Enqueue((commit, then));
                Monitor.Pulse(_gate);
                return;
            }
            late = _failed ?? new ServiceStoppingException();
        }
        then(late);
    }

    /// Completes once every commit begun before the call is covered by an fsync: at once when none is waiting for one.
    public Task FlushedAsync()
    {
        lock (_gate)
        {
            if (_failed is { } failed) return Task.FromException(failed);
            if (_started <= _flushed) return Task.CompletedTask;
            if (_stopping) return Task.FromException(new ServiceStoppingException());
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
            FileStream? wal;
            lock (_gate)
            {
                while (true)
                {
                    flush = _failed is null && _returned > _flushed && (_after.Count > 0 || _readers.Count > 0);
                    if (flush || Due()) break;
                    if (_stopping)
                    {
                        // The writer has stopped and drained first, so nothing is left but what no fsync can cover
                        // (a read that came in as the service stopped): it fails, nothing waits for ever.
                        _exited = true;
                        foreach (var (_, done) in _readers) readers.Add(done);
                        _readers.Clear();
                        while (_after.Count > 0) ready.Add(_after.Dequeue().Then);
                        break;
                    }
                    Monitor.Wait(_gate);
                }
                target = _returned;
                wal = _wal;
            }
            if (_exited)
            {
                var stopping = new ServiceStoppingException();
                foreach (var then in ready)
                {
                    try { then(stopping); }
                    catch (Exception ex) { _log.LogCritical(ex, "A batch's completion at stop failed"); }
                }
                foreach (var reader in readers) reader.TrySetException(stopping);
                return;
            }
            Exception? error = null;
            if (flush)
            {
                try
                {
                    _sync.Sync(wal ?? throw new InvalidOperationException("A commit is waiting for its fsync, but no session holds the WAL open."));
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
                if (error is not null && _failed is null)
                {
                    _failed = new DurabilityLostException(error);
                    _onFailure(_failed);
                }
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

    // After the writer stopped (and drained): ends the thread. A flusher stuck in an fsync that never returns is left
    // to the process's exit rather than holding the host's stop forever; anything asked of it after this fails fast.
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.Pulse(_gate);
        }
        if (!_thread.Join(TimeSpan.FromSeconds(10))) _log.LogCritical("The ledger's WAL flusher did not stop within 10 s (an fsync that does not return)");
    }
}

/// Makes what was written to the WAL file durable: fsync of a descriptor of it. A seam for tests, which hold it (a
/// slow disk) or fail it.
public class WalSync
{
    public virtual void Sync(FileStream wal) => wal.Flush(flushToDisk: true);

    /// The -wal file, opened for fsync only (never written here). It exists: SQLite opens it on a WAL database's first
    /// read, with the database file's mode.
    public static FileStream Open(string walPath) => new(walPath, new FileStreamOptions
    {
        Mode = FileMode.Open, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite | FileShare.Delete, BufferSize = 0,
    });
}
