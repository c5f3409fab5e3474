using System.ComponentModel.DataAnnotations;
using System.Diagnostics;
using System.Threading.Channels;
using Balance.Auth;
using Balance.Operability;
using Balance.Postings;
using Balance.Storage;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Balance;

// Money: the rules. Every posting goes through one writer loop that batches whatever is waiting into one store
// transaction (group commit), answers each request only after that commit is durable (the store says when:
// ILedgerSession.WhenDurable), and only then publishes the changes — in commit order — to Changes. The store (ILedgerStore) knows the SQL; this file knows the rules.
public sealed class Ledger : IHostedService
{
    private readonly ILedgerStore _store;
    private readonly TimeProvider _time;
    private readonly LogSampler _failedCommits;
    private readonly ILogger _log;
    private readonly int _maxBatch;
    // Synchronous continuations: a posting wakes the writer thread directly, not through a thread-pool work item.
    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
    private readonly Channel<CommittedChange> _changes = Channel.CreateUnbounded<CommittedChange>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true }); // read by the socket hub alone
    private Thread? _writer;

    public ChannelReader<CommittedChange> Changes => _changes.Reader;
    public LedgerStats Stats { get; } = new();

    /// Postings taken and waiting for the writer to start their batch: the writer's backlog. Counted here: a
    /// single-reader channel cannot count itself.
    public int Queued => Volatile.Read(ref _queued);
    private int _queued;

    // The request hash is computed on the caller's thread: the writer loop is the serial step, keep it lean.
    private sealed record Work(Posting Posting, string Hash, TaskCompletionSource<PostOutcome> Done);

    public sealed class LedgerStats
    {
        public long Postings, Batches; // postings answered after their batch committed (whatever each answer), and those batches
        // Stopwatch timestamps of the writer's last commit and last failed batch (0: never): the readiness check's
        // evidence that the database takes writes, without a probe competing with the writer for the lock.
        public long LastCommitAt, LastFailureAt;
        public event Action<int, double>? Committed; // batch size, milliseconds
        internal void Report(int size, double ms) { Interlocked.Increment(ref Batches); Interlocked.Add(ref Postings, size); Committed?.Invoke(size, ms); }

        /// The writer committed within `window` and has not failed since.
        public bool CommittedWithin(TimeSpan window)
        {
            long commit = Volatile.Read(ref LastCommitAt);
            return commit != 0 && commit > Volatile.Read(ref LastFailureAt) && Stopwatch.GetElapsedTime(commit) < window;
        }
    }

    public Ledger(ILedgerStore store, TimeProvider time, IOptions<LedgerOptions> options, ILoggerFactory loggers)
    {
        (_store, _time) = (store, time);
        _failedCommits = new LogSampler(time, TimeSpan.FromSeconds(1));
        _log = loggers.CreateLogger("Balance.Audit"); // one structured line per committed change
        _maxBatch = options.Value.MaxBatch;
    }

    public Task StartAsync(CancellationToken ct)
    {
        // A thread of its own: the writer is the one serial step every posting passes through, so it must
        // not queue behind request work on the thread pool, and it blocks in fsync by design.
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "ledger writer", Priority = ThreadPriority.AboveNormal };
        _writer.Start();
        return Task.CompletedTask;
    }

    // Stops taking postings, commits and publishes every one already taken, then completes Changes. Called when the
    // host begins to stop (by the socket hub, which must push those commits before it closes the sockets), and again
    // at the end; a posting that arrives after it is answered 503.
    public Task CompleteAsync(CancellationToken ct)
    {
        _work.Writer.TryComplete();
        return _writer is null ? Task.CompletedTask : _stopped.Task.WaitAsync(ct);
    }

    public Task StopAsync(CancellationToken ct) => CompleteAsync(ct);

    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task<PostOutcome> PostAsync(Posting posting)
    {
        var done = new TaskCompletionSource<PostOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var work = new Work(posting, posting.Hash(), done);
        Interlocked.Increment(ref _queued);
        if (!_work.Writer.TryWrite(work))
        {
            Interlocked.Decrement(ref _queued);
            throw new ServiceStoppingException();
        }
        return await done.Task;
    }

    private void WriteLoop()
    {
        var batch = new List<Work>(_maxBatch);
        var postings = new List<Posting>(_maxBatch);
        var results = new List<PostOutcome>(_maxBatch);
        var changes = new List<BalanceChange>(_maxBatch);
        ILedgerSession? session = null;
        while (_work.Reader.TryPeek(out _) || _work.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            postings.Clear();
            while (batch.Count < _maxBatch && _work.Reader.TryRead(out var item)) { batch.Add(item); postings.Add(item.Posting); }
            Interlocked.Add(ref _queued, -batch.Count);
            results.Clear();
            changes.Clear();
            var started = Stopwatch.GetTimestamp();
            bool replace = false;
            try
            {
                session ??= _store.OpenSession();
                Run(session, batch, postings, results, changes);
            }
            catch (PostingRefusedByStoreException ex) when (batch.Count > 1)
            {
                // The store refused the data of some posting of the batch, and the batch with it (PostgreSQL writes
                // set-based: which posting is not known). One posting's bad data must never fail its batch-mates: each
                // runs again alone, and only the refused one fails.
                _log.LogWarning(ex, "The store refused a batch of {Count} postings for one's data; running each alone", batch.Count);
                if (!RunAlone(session!, batch, results, changes))
                {
                    Volatile.Write(ref Stats.LastFailureAt, Stopwatch.GetTimestamp());
                    replace = true;
                }
            }
            catch (Exception ex)
            {
                // Nothing of this batch is durable: fail every request of it, publish nothing, and start the
                // next batch on a fresh connection.
                LogFailedCommit(ex, batch.Count);
                Volatile.Write(ref Stats.LastFailureAt, Stopwatch.GetTimestamp());
                foreach (var work in batch) work.Done.TrySetException(ex);
                session?.Dispose();
                session = null;
                continue;
            }
            // Committed: answered and published once the store says it is durable, in commit order (SQLite: after the
            // WAL's fsync, on the flusher's thread, while this thread goes on with the next batch).
            var committed = new CommittedBatch([.. batch], [.. results], [.. changes], started);
            session!.WhenDurable(error => Complete(committed, error));
            if (replace)
            {
                session.Dispose();
                session = null;
            }
        }
        session?.Dispose();
        _changes.Writer.TryComplete();
        _stopped.TrySetResult();
    }

    private sealed record CommittedBatch(Work[] Batch, PostOutcome[] Results, BalanceChange[] Changes, long Started);

    // A committed batch, once durable: whatever happens here, every request of it gets its answer, and the thread
    // lives on (a dead writer or flusher thread would leave every later request waiting forever).
    private void Complete(CommittedBatch c, Exception? notDurable)
    {
        var (batch, results, changes) = (c.Batch, c.Results, c.Changes);
        if (notDurable is not null)
        {
            // Committed, but its fsync failed (or the service stopped first): it may not be on disk. Nothing of it is
            // published, and every request of it is answered "outcome unknown" (a retry with the same
            // Idempotency-Key is safe either way).
            Volatile.Write(ref Stats.LastFailureAt, Stopwatch.GetTimestamp());
            var unknown = new CommitOutcomeUnknownException(notDurable, $"The batch committed, but whether it reached the disk is not known: {notDurable.Message}");
            foreach (var work in batch) work.Done.TrySetException(unknown);
            return;
        }
        try
        {
            long committed = Stopwatch.GetTimestamp();
            if (committed > Volatile.Read(ref Stats.LastFailureAt)) Volatile.Write(ref Stats.LastCommitAt, committed);
            foreach (var change in changes) _changes.Writer.TryWrite(new CommittedChange(change, committed));
            Stats.Report(batch.Length, Stopwatch.GetElapsedTime(c.Started, committed).TotalMilliseconds);
            if (_log.IsEnabled(LogLevel.Information))
                for (int i = 0; i < batch.Length; i++)
                    if (results[i] is PostOutcome.Committed { Replayed: false, Result: var r })
                        _log.LogInformation("Committed {TransactionType} {TransactionId} for {UserId} by {PostedBy}: {Amount} {Currency}, balance {Balance} v{Version}, reference {Reference}",
                            r.Type, r.TransactionId, r.UserId, batch[i].Posting.PostedBy, r.Amount, r.Currency, r.Balance, r.Version, r.Reference);
        }
        catch (Exception ex)
        {
            _log.LogCritical(ex, "After committing {Count} postings, publishing or logging them failed", batch.Length);
        }
        finally
        {
            for (int i = 0; i < batch.Length; i++)
                if (results[i] is Failed failed) batch[i].Done.TrySetException(failed.Error);
                else batch[i].Done.TrySetResult(results[i]);
        }
    }

    // A posting that did not commit because of what the store did, not a rule: its request gets the error itself.
    private sealed record Failed(Exception Error) : PostOutcome;

    // An outage fails every batch, and each batch's requests get their 503: the log gets the first failure in full
    // and then one line a second, counting the batches since (LogSampler), not a stack trace per batch.
    private void LogFailedCommit(Exception ex, int postings)
    {
        if (_failedCommits.TryTake(out int unlogged))
            _log.LogError(ex, "Commit of {Count} postings failed; none was applied (and {Unlogged} more failed batches since the last line)", postings, unlogged);
    }

    // Each posting of a batch whose data the store refused, in its own transaction, in arrival order. Answers each by
    // its own outcome; false when the store failed for another reason (an outage) on the way: that posting and those
    // after it fail with that error, those before it stay committed, and the session must be replaced.
    private bool RunAlone(ILedgerSession session, List<Work> batch, List<PostOutcome> results, List<BalanceChange> changes)
    {
        results.Clear();
        changes.Clear();
        var one = new List<Work>(1);
        var posting = new List<Posting>(1);
        for (int i = 0; i < batch.Count; i++)
        {
            one.Clear(); one.Add(batch[i]);
            posting.Clear(); posting.Add(batch[i].Posting);
            try { Run(session, one, posting, results, changes); }
            catch (PostingRefusedByStoreException ex)
            {
                _log.LogError(ex, "The store refused the data of posting {Key} by {PostedBy}; it alone was not applied", batch[i].Posting.IdempotencyKey, batch[i].Posting.PostedBy);
                results.Add(new Failed(ex));
            }
            catch (Exception ex)
            {
                LogFailedCommit(ex, batch.Count - i);
                for (; i < batch.Count; i++) results.Add(new Failed(ex));
                return false;
            }
        }
        return true;
    }

    // One transaction for the whole batch, each posting isolated, so a conflict of one undoes only that one (and so does
    // data the store refused, where the store can tell which posting's it was). A store that refuses the batch as a
    // whole (another node took a key or a reversal meanwhile, and a constraint caught it) gets it again once: the rerun
    // reads what the other node committed and answers each posting by it. Throws when the batch cannot commit, with
    // what it added to results and changes taken back.
    private void Run(ILedgerSession session, List<Work> batch, List<Posting> postings, List<PostOutcome> results, List<BalanceChange> changes)
    {
        int resultsBefore = results.Count, changesBefore = changes.Count;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                session.Begin(postings);
                foreach (var work in batch)
                {
                    try
                    {
                        var (outcome, change) = Apply(session, work.Posting, work.Hash);
                        results.Add(outcome);
                        if (change is not null) changes.Add(change);
                    }
                    catch (StoreConflictException) // its Write lost a race, and was undone alone; the batch goes on
                    {
                        results.Add(PostOutcome.Refuse(Refusal.Conflict));
                    }
                    catch (PostingRefusedByStoreException ex) // undone alone; the batch goes on
                    {
                        _log.LogError(ex, "The store refused the data of posting {Key} by {PostedBy}; it alone was not applied", work.Posting.IdempotencyKey, work.Posting.PostedBy);
                        results.Add(new Failed(ex));
                    }
                }
                session.Commit();
                return;
            }
            catch (Exception ex)
            {
                results.RemoveRange(resultsBefore, results.Count - resultsBefore);
                changes.RemoveRange(changesBefore, changes.Count - changesBefore);
                session.Rollback();
                if (ex is StoreConflictException && attempt == 1)
                {
                    _log.LogWarning("The store refused a batch of {Count} postings as a whole ({Reason}); running it again", batch.Count, ex.Message);
                    continue;
                }
                throw;
            }
        }
    }

    // The rules of one posting, in order: the poster is an operator of this ledger; a key this poster already used answers with its first
    // result (or a conflict for another body); a rollback undoes one bet, of its owner, once; credits cannot overflow;
    // debits cannot overdraw; the wallet's version steps by exactly one.
    private (PostOutcome Outcome, BalanceChange? Change) Apply(ILedgerSession s, Posting p, string hash)
    {
        // A signed token is not proof that its user is in this database (a signing key shared with another deployment,
        // a database restored from before the account): every ledger row names an operator that exists here.
        if (s.RoleOf(p.PostedBy) != Roles.Operator)
            return (PostOutcome.Refuse(Refusal.NotAnOperator), null);
        if (s.FindByKey(p.PostedBy, p.IdempotencyKey) is { } earlier)
            return (earlier.RequestHash == hash ? new PostOutcome.Committed(earlier.ToResult(), Replayed: true) : new PostOutcome.IdempotencyConflict(), null);

        Guid userId;
        string currency;
        long amount = p.Amount;
        if (p.Type == TxTypes.Rollback)
        {
            var bet = s.FindById(p.Reverses!);
            if (bet is null) return (PostOutcome.Refuse(Refusal.TransactionNotFound, p.Reverses), null);
            if (bet.Type != TxTypes.Bet) return (PostOutcome.Refuse(Refusal.NotReversible, p.Reverses, bet.Type), null);
            if (p.UserId is { } given && given != bet.UserId) return (PostOutcome.Refuse(Refusal.UserMismatch), null);
            if (s.IsReversed(bet.TransactionId)) return (new PostOutcome.AlreadyReversed(bet.TransactionId), null);
            (userId, currency, amount) = (bet.UserId, bet.Currency, bet.Amount);
        }
        else
        {
            userId = p.UserId!.Value;
            currency = p.Currency!;
            string? role = s.RoleOf(userId); // also: the user exists
            if (role is null) return (PostOutcome.Refuse(Refusal.UserNotFound, userId), null);
            if (role != Roles.Player) return (PostOutcome.Refuse(Refusal.NotAPlayer), null);
        }

        var (balance, version) = s.ReadWallet(userId, currency);
        long after;
        if (TxTypes.IsCredit(p.Type))
        {
            try { after = checked(balance + amount); }
            catch (OverflowException) { return (PostOutcome.Refuse(Refusal.BalanceOverflow), null); }
        }
        else
        {
            after = balance - amount;
            if (after < 0) return (new PostOutcome.InsufficientFunds(Money.Format(balance, currency), currency), null);
        }

        string now = Timestamps.Format(_time.GetUtcNow().UtcDateTime);
        var entry = new LedgerEntry(Guid.CreateVersion7().ToString(), userId, p.Type, amount, currency, after, version + 1, hash, p.Reference, p.Reverses, now);
        s.Write(entry, p.IdempotencyKey, p.PostedBy);
        return (new PostOutcome.Committed(entry.ToResult(), Replayed: false), new BalanceChange(userId, currency, after, entry.Version, entry.TransactionId, p.Type, now));
    }

    /// The wallet a posting moves if the rules let it: its own (player, currency), or for a rollback the reversed bet's;
    /// null when it can move none (the bet is unknown or no bet, the user is unknown or no player). An engine that
    /// locks wallets before the rules run (PostgreSQL) asks this, so it locks what Apply will move and nothing else.
    public static (Guid UserId, string Currency)? WalletMoved(Posting p, LedgerEntry? reversed, string? userRole) =>
        p.Type == TxTypes.Rollback
            ? reversed is { Type: TxTypes.Bet } bet ? (bet.UserId, bet.Currency) : null
            : userRole == Roles.Player ? (p.UserId!.Value, p.Currency!) : null;

    // ---- reads ----

    public Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default) => _store.WalletsAsync(userId, ct);

    public Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default) =>
        _store.HistoryAsync(userId, limit, before, ct);
}

public sealed class LedgerOptions
{
    // The most postings group-committed in one transaction.
    [Range(1, 10_000)]
    public int MaxBatch { get; set; } = 256;
}

public static class LedgerRegistration
{
    // Money: the ledger's writer loop over the engine's ILedgerStore (AddStorage); its committed changes are read by the socket hub.
    public static WebApplicationBuilder AddLedger(this WebApplicationBuilder builder)
    {
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddOptions<LedgerOptions>().BindConfiguration(NodeOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<Ledger>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Ledger>());
        return builder;
    }
}
