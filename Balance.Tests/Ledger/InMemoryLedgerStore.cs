namespace Balance.Tests;

// The ledger's store seam (ILedgerStore / ILedgerSession) in memory, for the rules' unit tests: a batch works on a copy
// of the committed state, a Write that conflicts changes nothing of it, Commit publishes the copy. It keeps
// the engines' contract — Write moves a wallet exactly one version past the one read, a key and a reversal are unique —
// and lets a test make the store refuse a write or a whole batch the way a database would.
public sealed class InMemoryLedgerStore : ILedgerStore
{
    private readonly object _gate = new();
    private State _committed = new();

    public Dictionary<Guid, string> Users { get; } = [];

    /// Called before every Write with the entry about to be written: throw StoreConflictException to refuse it.
    public Action<LedgerEntry>? BeforeWrite { get; set; }
    /// How many of the next Commits fail as a whole with StoreConflictException (nothing of the batch written).
    public int CommitConflicts { get; set; }
    public int Commits { get; private set; }
    public int Rollbacks { get; private set; }

    public Guid AddUser(string role)
    {
        var id = Guid.NewGuid();
        lock (_gate) Users[id] = role;
        return id;
    }

    public IReadOnlyList<LedgerEntry> Entries { get { lock (_gate) return [.. _committed.Entries]; } }

    public (long Balance, long Version) Wallet(Guid userId, string currency)
    {
        lock (_gate) return _committed.Wallets.TryGetValue((userId, currency), out var w) ? w : (0, 0);
    }

    public ILedgerSession OpenSession() => new Session(this);

    public Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default)
    {
        lock (_gate)
            return Task.FromResult<IReadOnlyList<BalanceChange>>([.. _committed.Wallets
                .Where(w => w.Key.UserId == userId)
                .Select(w => new BalanceChange(userId, w.Key.Currency, w.Value.Balance, w.Value.Version, null, null, null))]);
    }

    public Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default)
    {
        lock (_gate)
        {
            var newestFirst = _committed.Entries.Where(e => userId is null || e.UserId == userId).Reverse().ToList();
            int start = 0;
            if (before is not null)
            {
                int at = newestFirst.FindIndex(e => e.TransactionId == before);
                if (at < 0) return Task.FromResult<(IReadOnlyList<TransactionResult>, string?)?>(null);
                start = at + 1;
            }
            var page = newestFirst.Skip(start).Take(limit).Select(e => e.ToResult()).ToList();
            string? next = start + limit < newestFirst.Count ? page[^1].TransactionId : null;
            return Task.FromResult<(IReadOnlyList<TransactionResult>, string?)?>((page, next));
        }
    }

    private sealed class State
    {
        public Dictionary<(Guid UserId, string Currency), (long Balance, long Version)> Wallets { get; init; } = [];
        public List<LedgerEntry> Entries { get; init; } = [];
        public Dictionary<(Guid PostedBy, string Key), LedgerEntry> ByKey { get; init; } = [];
        public HashSet<string> Reversed { get; init; } = new(StringComparer.Ordinal);

        public State Copy() => new()
        {
            Wallets = new(Wallets), Entries = [.. Entries], ByKey = new(ByKey), Reversed = new(Reversed, StringComparer.Ordinal),
        };
    }

    private sealed class Session(InMemoryLedgerStore store) : ILedgerSession
    {
        private State? _tx;
        private State Tx => _tx ?? throw new InvalidOperationException("no batch open: Begin first");

        public void Begin(IReadOnlyList<Posting> postings)
        {
            if (_tx is not null) throw new InvalidOperationException("a batch is already open");
            lock (store._gate) _tx = store._committed.Copy();
        }

        public void Commit()
        {
            var tx = Tx;
            _tx = null;
            lock (store._gate)
            {
                if (store.CommitConflicts > 0)
                {
                    store.CommitConflicts--;
                    throw new StoreConflictException("UNIQUE constraint failed (a key another node took)");
                }
                store._committed = tx;
                store.Commits++;
            }
        }

        public void WhenDurable(Action<Exception?> then) => then(null);

        public void Rollback()
        {
            _tx = null;
            store.Rollbacks++;
        }

        public LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey) => Tx.ByKey.GetValueOrDefault((postedBy, idempotencyKey));
        public LedgerEntry? FindById(string transactionId) => Tx.Entries.Find(e => e.TransactionId == transactionId);
        public bool IsReversed(string transactionId) => Tx.Reversed.Contains(transactionId);
        public string? RoleOf(Guid userId) { lock (store._gate) return store.Users.GetValueOrDefault(userId); }
        public (long Balance, long Version) ReadWallet(Guid userId, string currency) => Tx.Wallets.TryGetValue((userId, currency), out var w) ? w : (0, 0);

        public void Write(LedgerEntry entry, string idempotencyKey, Guid postedBy)
        {
            var tx = Tx;
            store.BeforeWrite?.Invoke(entry);
            var (_, version) = ReadWallet(entry.UserId, entry.Currency);
            if (entry.Version != version + 1) throw new StoreConflictException($"wallet moved: at v{version}, write of v{entry.Version}");
            // Every check before any change: a refused Write leaves nothing of its posting behind (the seam's contract).
            if (tx.ByKey.ContainsKey((postedBy, idempotencyKey))) throw new StoreConflictException("idempotency key taken");
            if (entry.Reverses is not null && tx.Reversed.Contains(entry.Reverses)) throw new StoreConflictException("already reversed");
            tx.ByKey.Add((postedBy, idempotencyKey), entry);
            if (entry.Reverses is not null) tx.Reversed.Add(entry.Reverses);
            tx.Wallets[(entry.UserId, entry.Currency)] = (entry.BalanceAfter, entry.Version);
            tx.Entries.Add(entry);
        }

        public void Dispose() => _tx = null;
    }
}
