namespace Balance.Postings;

// What the ledger's rules need from a database, and nothing more: one implementation per engine
// (Storage/Sqlite, Storage/Postgres). The rules themselves — idempotency, rollback once, no overdraft, versions that step by
// one — live once, in Ledger.cs.
public interface ILedgerStore
{
    /// The writer loop's session: one connection, kept open for batch after batch; replaced after a failed batch.
    ILedgerSession OpenSession();

    /// Every wallet of the player, newest balance each (the snapshot a socket starts with).
    Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default);

    /// Ledger entries newest first, `limit` of them before the entry `before`; null when `before` is not one of them.
    Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default);
}

// One batch of postings in one transaction: Begin, then each posting's reads and its one Write, then Commit. A Write
// the store refuses leaves nothing of its posting behind, so that posting fails alone and the batch goes on.
public interface ILedgerSession : IDisposable
{
    /// Opens the batch's transaction. The batch is given whole, as a hint an engine may use to lock and read what it
    /// touches at once (PostgreSQL: every wallet in sorted order, then their keys and reversals; SQLite's single
    /// writer holds that state already and takes no hint); the rules then ask one posting at a time.
    void Begin(IReadOnlyList<Posting> postings);
    /// Throws StoreConflictException when a constraint refused the batch as a whole (nothing of it is written),
    /// PostingRefusedByStoreException when the store refused some posting's data (nothing of the batch is written), and
    /// CommitOutcomeUnknownException when the database may or may not have committed it.
    void Commit();
    void Rollback();
    /// Runs `then` once what this session has committed is durable, each in commit order: at once where COMMIT
    /// returns durable (PostgreSQL), after the WAL's fsync where it overlaps the next batch (SQLite). `then` gets null,
    /// or the exception that leaves the outcome unknown (the fsync failed). Dispose runs every pending one first.
    void WhenDurable(Action<Exception?> then);

    /// The entry this poster wrote with this key: keys belong to their poster, so another operator's same key is
    /// a different posting.
    LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey);
    LedgerEntry? FindById(string transactionId);
    bool IsReversed(string transactionId);
    /// Null when there is no such user.
    string? RoleOf(Guid userId);
    /// The wallet's balance and version, (0, 0) when it does not exist yet.
    (long Balance, long Version) ReadWallet(Guid userId, string currency);
    /// Moves the wallet to entry.Version — exactly one past the version read — and appends the ledger row. Throws, with
    /// nothing of this posting written and the batch intact: StoreConflictException when the wallet is no longer at the
    /// version before or a constraint of the store refused the row (a rule raced us); PostingRefusedByStoreException
    /// when the store refused the row's data. Any other exception fails the batch.
    void Write(LedgerEntry entry, string idempotencyKey, Guid postedBy);
}

// One ledger row, as stored.
public sealed record LedgerEntry(string TransactionId, Guid UserId, string Type, long Amount, string Currency,
    long BalanceAfter, long Version, string RequestHash, string? Reference, string? Reverses, string CreatedAt)
{
    public TransactionResult ToResult() => new(TransactionId, UserId, Type, Money.Format(Amount, Currency), Currency,
        Money.Format(BalanceAfter, Currency), Version, CreatedAt, Reference, Reverses);
}

// A write lost to a concurrent one (a wallet that moved, a key or reversal taken meanwhile): retry with the same key.
public sealed class StoreConflictException(string message, Exception? inner = null) : Exception(message, inner);

// The store refused a posting's data for a reason that is no rule of the ledger and no outage (PostgreSQL refuses a NUL
// in text, SQLite a value too big): deterministic, so the same data would be refused again. Thrown by Write
// (with that posting undone, the batch intact) or by Begin/Commit (the batch undone whole; the writer then runs its
// postings alone, so only the refused one fails).
public sealed class PostingRefusedByStoreException(Exception inner) : Exception($"The database refused the posting's data: {inner.Message}", inner);

// The connection died while the database was committing, or the fsync after a commit failed: the batch may be durable or not. Its postings are answered
// 503 "retry with the same Idempotency-Key", which is safe either way; never a definite failure.
public sealed class CommitOutcomeUnknownException(Exception inner, string message = "The database connection was lost during COMMIT; the outcome is unknown.")
    : Exception(message, inner);

// A commit could not be made durable (the fsync of SQLite's WAL failed): what the writer holds in memory may be more
// than the disk holds, so the store refuses every batch and read until a restart rebuilds it from the disk. The
// batches that were waiting for that fsync are answered CommitOutcomeUnknownException.
public sealed class DurabilityLostException(Exception inner)
    : Exception($"A commit could not be made durable ({inner.Message}); restart the service.", inner);
