using Microsoft.Extensions.Options;
using System.Collections.Concurrent;

namespace Balance.Auth;

// The service-wide password-hash budget. A PBKDF2 check costs tens of milliseconds of one core by design: run on
// request threads without a bound, a login flood takes every core and stalls the ledger's writer (BENCHMARKS.md, "Auth under hostile load"). Here
// hashes run only on Auth:PasswordHashConcurrency threads of their own, never on the thread pool that serves postings,
// with at most Auth:PasswordHashQueue waiting; a hash past that is refused at once (the caller answers 503 +
// Retry-After) instead of queueing behind thousands. A waiting login is bounded by (queue / threads) hashes.
public sealed class PasswordBudget : IDisposable
{
    private readonly BlockingCollection<Action> _queue;
    private readonly Thread[] _threads;
    private long _refused, _done;

    public PasswordBudget(IOptions<AuthOptions> options) : this(options.Value.PasswordHashConcurrency, options.Value.PasswordHashQueue) { }

    public PasswordBudget(int concurrency, int queue)
    {
        Concurrency = concurrency;
        // BlockingCollection's bound counts waiting items only: a worker has taken what it runs.
        _queue = new BlockingCollection<Action>(new ConcurrentQueue<Action>(), queue);
        QueueLimit = queue;
        _threads = new Thread[concurrency];
        for (int i = 0; i < concurrency; i++)
        {
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"password-hash-{i}", Priority = ThreadPriority.BelowNormal };
            _threads[i].Start();
        }
    }

    public int Concurrency { get; }
    public int QueueLimit { get; }
    public long Refused => Interlocked.Read(ref _refused);
    public long Done => Interlocked.Read(ref _done);

    /// True (and counted as refused) when no hash would be taken now: lets a caller refuse before any other work
    /// (a database read) done for it.
    public bool RefuseIfFull()
    {
        if (_queue.Count < QueueLimit) return false;
        Interlocked.Increment(ref _refused);
        return true;
    }

    /// The hash's result, or null at once when the budget is spent (nothing was run).
    public Task<T>? TryRun<T>(Func<T> hash)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Run()
        {
            try { done.SetResult(hash()); }
            catch (Exception e) { done.SetException(e); }
            finally { Interlocked.Increment(ref _done); }
        }
        bool taken;
        try { taken = _queue.TryAdd(Run); }
        catch (InvalidOperationException) { taken = false; } // disposed: the service is stopping
        if (taken) return done.Task;
        Interlocked.Increment(ref _refused);
        return null;
    }

    private void Work()
    {
        try
        {
            while (true)
            {
                _queue.Take()();
            }
        }
        catch (InvalidOperationException) { } // CompleteAdding (stopping); ObjectDisposedException is one too
    }

    public void Dispose() => _queue.CompleteAdding();
}
