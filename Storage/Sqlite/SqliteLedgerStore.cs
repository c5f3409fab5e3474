using System.Security.Cryptography;
using Balance.Postings;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Balance.Storage.Sqlite;

// The ledger's store on SQLite, as a log. The writer's memory (LedgerState) holds what indexes held: every wallet,
// the window's Idempotency-Keys, each player's newest row. A batch checks every rule against it, appends its ledger
// rows (and one row of their key hashes) in one BEGIN IMMEDIATE transaction, commits, and moves the state; its answers
// wait for the WAL's fsync, which overlaps the next batch (WalFlusher), and so does every read. So a posting writes rows that land at the end of their tables, not pages spread over random indexes
// (BENCHMARKS.md, "The ledger as a log"). Balances are read from the state (never older than the last answered
// posting); history pages follow each player's chain of rows (user_prev) from its head.
public sealed class SqliteLedgerStore(SqliteDatabase db, IOptions<SqliteOptions> options, TimeProvider time, ILoggerFactory? loggers = null, WalSync? walSync = null)
    : ILedgerStore, IDisposable
{
    // What SQLite says of the writer's own connection, read when it opens (-1 before): the durability promise rests
    // on it, so an operator (and the durability test) can see it on the running service rather than trust the code.
    // Synchronous is what a commit gets before its answer: FULL (2) also when the connection runs NORMAL and the
    // flusher fsyncs the WAL (WalFlusher = 1).
    public long Synchronous = -1, JournalWal = -1, PageSize = -1, WalFlusherOn = -1;
    // How often the writer's state was built from the ledger: once at start, again only after a commit whose outcome
    // was unknown or rows written by another hand.
    public long Loads;

    internal TimeSpan Window { get; } = options.Value.IdempotencyWindow;
    internal TimeProvider Time => time;
    private readonly Lock _loading = new();
    private LedgerState? _state;
    private byte[]? _seed;

    // Balance:Synchronous=FULL on Linux, in WAL mode: the WAL's fsync runs on a thread of its own (made with the first
    // session), overlapping the next batch. EXTRA and NORMAL keep SQLite's own behaviour.
    private readonly bool _overlap = OperatingSystem.IsLinux() && string.Equals(options.Value.Synchronous, "FULL", StringComparison.OrdinalIgnoreCase);
    private WalFlusher? _flusher;
    internal WalFlusher? Flusher => Volatile.Read(ref _flusher);

    /// fsyncs of the WAL by the flusher so far (0 without one).
    public long WalFlushes => Flusher is { } f ? Volatile.Read(ref f.Flushes) : 0;

    // A read answers only what is on disk: it waits for the fsync that covers every commit it may have seen.
    private Task Flushed(CancellationToken ct) => Flusher is { } f ? f.FlushedAsync().WaitAsync(ct) : Task.CompletedTask;

    /// The state as last committed, built from the database on first use.
    internal LedgerState State
    {
        get
        {
            if (Volatile.Read(ref _state) is { } state) return state;
            lock (_loading)
            {
                if (_state is not null) return _state;
                using var c = db.OpenAsync().GetAwaiter().GetResult();
                using var tx = c.BeginTransaction(deferred: true);
                Reload(c);
                return _state!;
            }
        }
    }

    internal LedgerState? Loaded => Volatile.Read(ref _state);

    internal byte[] Seed => _seed ?? throw new InvalidOperationException("The ledger state is not loaded.");

    /// Rebuilds the state from the ledger on this connection (inside its transaction): at start, and whenever the
    /// ledger's end is not where the state says (a commit whose outcome was unknown, or a row written by hand).
    internal LedgerState Reload(SqliteConnection c)
    {
        lock (_loading)
        {
            _seed ??= LedgerState.Seed(c);
            var state = LedgerState.Load(c, time.GetUtcNow().UtcDateTime, Window);
            Volatile.Write(ref _state, state);
            Interlocked.Increment(ref Loads);
            return state;
        }
    }

    public ILedgerSession OpenSession()
    {
        var connection = db.OpenAsync().GetAwaiter().GetResult();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA synchronous";
            Volatile.Write(ref Synchronous, (long)command.ExecuteScalar()!);
            command.CommandText = "PRAGMA page_size";
            Volatile.Write(ref PageSize, (long)command.ExecuteScalar()!);
            command.CommandText = "PRAGMA journal_mode";
            Volatile.Write(ref JournalWal, string.Equals((string?)command.ExecuteScalar(), "wal", StringComparison.OrdinalIgnoreCase) ? 1 : 0);
            // The writer checks what the ledger's foreign keys check, before it writes: the poster and the player exist
            // (RoleOf, from users, which are never deleted) and a reversed bet exists (FindById). Left on, SQLite looks
            // both users up again in the users index for every row inserted, plus the bet: CPU on the one serial step.
            // Every other connection keeps them on.
            command.CommandText = "PRAGMA foreign_keys = OFF";
            command.ExecuteNonQuery();
            if (_overlap && Volatile.Read(ref JournalWal) == 1)
            {
                // The flusher fsyncs what COMMIT wrote to the WAL before anything of it is answered or read.
                command.CommandText = "PRAGMA synchronous = NORMAL";
                command.ExecuteNonQuery();
                lock (_loading) _flusher ??= new WalFlusher(walSync ?? new WalSync(),
                    (loggers ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).CreateLogger("Balance.Ledger"),
                    failure => Volatile.Write(ref db.DurabilityLost, failure.Message));
                Volatile.Write(ref WalFlusherOn, 1);
                Volatile.Write(ref Synchronous, 2);
            }
            else Volatile.Write(ref WalFlusherOn, 0);
        }
        return new SqliteLedgerSession(this, connection, WalFlusherOn == 1 ? _flusher : null, db.FilePath + "-wal");
    }

    public void Dispose() => Flusher?.Dispose();

    // From the writer's state: every wallet of the player as last committed, by currency in ordinal order; the
    // default currency at 0 when the player has no wallet in it yet.
    public async Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default)
    {
        var state = State;
        var rows = state.Users.TryGetValue(userId, out var user) ? new List<BalanceChange>(Volatile.Read(ref user.Wallets)) : [];
        if (!rows.Any(r => r.Currency == Money.DefaultCurrency))
            rows.Insert(0, new BalanceChange(userId, Money.DefaultCurrency, 0, 0, null, null, null));
        await Flushed(ct);
        return rows;
    }

    public async Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default)
    {
        // The head first, then the read transaction: a head read from the state is committed, so the snapshot has it.
        long head = userId is { } id ? State.HeadOf(id) : 0;
        await using var c = await db.OpenAsync(ct);
        if (userId is null)
        {
            var all = await LedgerReads.HistoryAsync(c, null, limit, before, ct);
            await Flushed(ct);
            return all;
        }
        long start = head;
        if (before is not null)
        {
            await using var find = c.CreateCommand();
            find.CommandText = "SELECT user_prev FROM ledger WHERE transaction_id = $before AND user_id = $user";
            find.Parameters.AddWithValue("$before", before);
            find.Parameters.AddWithValue("$user", userId.Value.ToString());
            await using var r = await find.ExecuteReaderAsync(ct);
            if (!await r.ReadAsync(ct)) return null;
            start = r.IsDBNull(0) ? 0 : r.GetInt64(0);
        }
        var rows = new List<LedgerEntry>(limit + 1);
        if (start > 0)
        {
            // The player's rows newest first: each names the one before it.
            await using var walk = c.CreateCommand();
            walk.CommandText = $"""
                WITH RECURSIVE chain (seq, n) AS (
                    SELECT $start, 1
                    UNION ALL
                    SELECT l.user_prev, chain.n + 1 FROM chain JOIN ledger l ON l.seq = chain.seq
                    WHERE chain.n < $take AND l.user_prev IS NOT NULL)
                SELECT {LedgerReads.RowColumns} FROM chain JOIN ledger ON ledger.seq = chain.seq ORDER BY chain.n
                """;
            walk.Parameters.AddWithValue("$start", start);
            walk.Parameters.AddWithValue("$take", limit + 1);
            await using var r = await walk.ExecuteReaderAsync(ct);
            while (await r.ReadAsync(ct)) rows.Add(LedgerReads.Entry(r));
        }
        string? next = rows.Count > limit ? rows[limit - 1].TransactionId : null;
        await Flushed(ct);
        return (rows.Take(limit).Select(e => e.ToResult()).ToList(), next);
    }
}

// The writer loop's connection, kept open, with its statements prepared once. Each batch: BEGIN IMMEDIATE; the rules
// read the state (and the batch's own staged changes); each posting appends its ledger row; the batch's key hashes go
// in one row (a run: the rows' seqs are consecutive); COMMIT; then the staged changes move the state. A failed or rolled-back batch leaves the state as it was.
internal sealed class SqliteLedgerSession : ILedgerSession
{
    private readonly SqliteLedgerStore _store;
    private readonly SqliteConnection _c;
    private readonly WalFlusher? _flusher; // null: COMMIT itself is durable (or as durable as configured)
    private readonly FileStream? _wal;    // the -wal file, open from before this session's first commit to after its last fsync
    private long _lastCommit;             // the flusher's number of this session's last COMMIT
    private readonly SqliteCommand _begin, _commit, _rollback, _last, _bySeq, _byId, _reversed, _role, _checkpoint, _checkpointSeq;
    private readonly WriterStatement _insert, _insertKeys; // once per posting, once per batch: SQLite's C API, bound by position
    private LedgerState _state = null!;

    // The batch's changes, applied to the state after COMMIT.
    private readonly Dictionary<(Guid, string), (BalanceChange Wallet, long Seq)> _wallets = [];
    private readonly Dictionary<Guid, long> _heads = [];
    private readonly List<(long Hash, long Seq)> _keys = []; // in seq order, one per row written
    private byte[] _run = new byte[64 * sizeof(long)];
    private readonly Dictionary<long, List<long>> _keysByHash = [];
    private long _next; // the next row's seq
    private readonly List<long> _candidates = [];
    private bool _inBatch;

    public SqliteLedgerSession(SqliteLedgerStore store, SqliteConnection connection, WalFlusher? flusher, string walPath)
    {
        (_store, _c, _flusher) = (store, connection, flusher);
        if (flusher is not null)
        {
            _wal = WalSync.Open(walPath);
            flusher.Attach(_wal);
        }
        _begin = Prepare("BEGIN IMMEDIATE");
        _commit = Prepare("COMMIT");
        _rollback = Prepare("ROLLBACK");
        _last = Prepare("SELECT COALESCE(MAX(seq), 0) FROM ledger");
        _bySeq = Prepare($"SELECT {LedgerReads.RowColumns}, idempotency_key, posted_by FROM ledger WHERE seq = $seq", "$seq");
        _byId = Prepare($"SELECT {LedgerReads.RowColumns} FROM ledger WHERE transaction_id = $id", "$id");
        _reversed = Prepare("SELECT EXISTS (SELECT 1 FROM ledger WHERE reverses = $id)", "$id");
        _role = Prepare("SELECT role FROM users WHERE id = $user", "$user");
        _insert = new WriterStatement(_c, """
            INSERT INTO ledger (seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at, user_prev)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
            """);
        _insertKeys = new WriterStatement(_c, "INSERT INTO ledger_key_runs (first_seq, hashes) VALUES (?1, ?2)");
        _checkpoint = Prepare("INSERT INTO wallet_checkpoint (user_id, currency, seq) VALUES ($user, $currency, $seq) ON CONFLICT (user_id, currency) DO UPDATE SET seq = excluded.seq",
            "$user", "$currency", "$seq");
        _checkpointSeq = Prepare("INSERT INTO ledger_meta (name, value) VALUES ('checkpoint_seq', $seq) ON CONFLICT (name) DO UPDATE SET value = excluded.value", "$seq");
    }

    private SqliteCommand Prepare(string sql, params string[] names)
    {
        var command = _c.CreateCommand();
        command.CommandText = sql;
        foreach (string name in names) command.Parameters.Add(new SqliteParameter { ParameterName = name });
        return command;
    }

    private static SqliteCommand With(SqliteCommand command, params object?[] values)
    {
        for (int i = 0; i < values.Length; i++) command.Parameters[i].Value = values[i] ?? DBNull.Value;
        return command;
    }

    // Roles, remembered: a user's role never changes and users are never deleted. An unknown user is asked again.
    private readonly Dictionary<Guid, string> _roles = [];

    public void Begin(IReadOnlyList<Posting> postings)
    {
        _flusher?.ThrowIfFailed();
        _begin.ExecuteNonQuery();
        _inBatch = true;
        Clear();
        // The ledger ends where the state says, or the state is rebuilt (inside this transaction, so nothing moves
        // meanwhile): after a COMMIT whose outcome was not known, or rows written by another hand.
        long last = (long)_last.ExecuteScalar()!;
        var state = _store.Loaded;
        if (state is null || last != state.LastSeq) state = _store.Reload(_c);
        _state = state;
        _next = state.LastSeq + 1;
    }

    public void Commit()
    {
        var now = _store.Time.GetUtcNow().UtcDateTime;
        if (_keys.Count > 0) WriteKeyRun();
        bool checkpoint = (_state.Dirty.Count > 0 || _wallets.Count > 0) && now - _lastCheckpoint >= CheckpointEvery;
        if (checkpoint)
        {
            // Each moved wallet's newest row, as of the end of this batch: where the next start replays from.
            foreach (var ((user, currency), seq) in _state.Dirty)
                if (!_wallets.ContainsKey((user, currency))) With(_checkpoint, user.ToString(), currency, seq).ExecuteNonQuery();
            foreach (var ((user, currency), (_, seq)) in _wallets) With(_checkpoint, user.ToString(), currency, seq).ExecuteNonQuery();
            With(_checkpointSeq, (_next - 1).ToString(System.Globalization.CultureInfo.InvariantCulture)).ExecuteNonQuery();
        }
        long number = _flusher?.Starting() ?? 0;
        try { _commit.ExecuteNonQuery(); }
        finally { _flusher?.Returned(number); }
        _lastCommit = number;
        _inBatch = false;
        // Committed: move the state.
        foreach (var (key, (wallet, seq)) in _wallets)
        {
            _state.Apply(wallet, seq);
            _state.Dirty[key] = seq;
        }
        foreach (var (hash, seq) in _keys) _state.AddKey(hash, seq);
        _state.LastSeq = _next - 1;
        if (checkpoint)
        {
            _state.Dirty.Clear();
            _state.CheckpointSeq = _next - 1;
            _lastCheckpoint = now;
        }
        _state.Mark(now, _store.Window);
        Clear();
    }

    // The batch's key hashes, one row: each row's hash at its place after the batch's first seq. A failure fails the
    // batch (its ledger rows are written).
    private void WriteKeyRun()
    {
        if (_run.Length < _keys.Count * sizeof(long)) _run = new byte[_keys.Count * sizeof(long)];
        long first = _keys[0].Seq;
        for (int i = 0; i < _keys.Count; i++)
        {
            if (_keys[i].Seq != first + i) throw new InvalidOperationException("The batch's ledger rows are not consecutive.");
            LedgerState.PutKeyHash(_run, i, _keys[i].Hash);
        }
        _insertKeys.Bind(1, first).Bind(2, _run.AsSpan(0, _keys.Count * sizeof(long))).Execute();
    }

    // Every wallet moved since the last checkpoint is rewritten (10,000 players: ~150 pages), so not often; a start
    // replays at most these 10 s of rows past it.
    private static readonly TimeSpan CheckpointEvery = TimeSpan.FromSeconds(10);
    private DateTime _lastCheckpoint;

    public void WhenDurable(Action<Exception?> then)
    {
        if (_flusher is null) then(null);
        else _flusher.After(_lastCommit, then);
    }

    public void Rollback()
    {
        Clear();
        if (!_inBatch) return;
        _inBatch = false;
        try { _rollback.ExecuteNonQuery(); } catch (SqliteException) { /* already rolled back by SQLite */ }
    }

    private void Clear()
    {
        _wallets.Clear();
        _heads.Clear();
        _keys.Clear();
        _keysByHash.Clear();
    }

    // SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE: a value SQLite will not take, whatever the state of the database.
    // (Busy, locked, full, read-only, I/O errors are the database's state: they fail the whole batch.)
    private static bool RefusesData(Exception ex) => ex is SqliteException { SqliteErrorCode: 18 or 20 or 25 } or ArgumentException;


    private LedgerEntry? Row(SqliteCommand command)
    {
        using var r = command.ExecuteReader();
        return r.Read() ? LedgerReads.Entry(r) : null;
    }

    // This poster's row with this key among the window's (the state's and this batch's): the hash is of the key alone,
    // so it names every poster's rows with it (and any collision); the row itself is compared. A row older than the window is forgotten even before the state sweeps it.
    public LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey)
    {
        long hash = KeyHash(idempotencyKey);
        _candidates.Clear();
        _state.Candidates(hash, _candidates);
        if (_keysByHash.TryGetValue(hash, out var staged)) _candidates.AddRange(staged);
        if (_candidates.Count == 0) return null;
        string oldest = Timestamps.Format(_store.Time.GetUtcNow().UtcDateTime - _store.Window);
        foreach (long seq in _candidates)
        {
            using var r = With(_bySeq, seq).ExecuteReader();
            if (!r.Read() || r.GetString(11) != idempotencyKey || Guid.Parse(r.GetString(12)) != postedBy) continue; // another poster's key, or a collision
            var entry = LedgerReads.Entry(r);
            if (string.CompareOrdinal(entry.CreatedAt, oldest) < 0) continue;
            return entry;
        }
        return null;
    }

    public LedgerEntry? FindById(string transactionId) => Row(With(_byId, transactionId));
    public bool IsReversed(string transactionId) => Convert.ToInt64(With(_reversed, transactionId).ExecuteScalar()) != 0;

    public string? RoleOf(Guid userId)
    {
        if (_roles.TryGetValue(userId, out string? role)) return role;
        role = With(_role, userId.ToString()).ExecuteScalar() as string;
        if (role is not null) _roles[userId] = role;
        return role;
    }

    public (long Balance, long Version) ReadWallet(Guid userId, string currency)
    {
        if (_wallets.TryGetValue((userId, currency), out var staged)) return (staged.Wallet.Balance, staged.Wallet.Version);
        return _state.Wallet(userId, currency) is { } w ? (w.Balance, w.Version) : (0, 0);
    }

    public void Write(LedgerEntry e, string idempotencyKey, Guid postedBy)
    {
        var (_, version) = ReadWallet(e.UserId, e.Currency);
        if (e.Version != version + 1)
            throw new StoreConflictException($"Wallet {e.UserId}/{e.Currency} is no longer at version {e.Version - 1}.");
        if (!_heads.TryGetValue(e.UserId, out long prev)) prev = _state.HeadOf(e.UserId);
        long seq = _next;
        string user = e.UserId.ToString();
        // The posting's first write is one INSERT, and a statement that fails undoes itself: nothing of the posting is
        // written or staged yet, so it fails alone (no savepoint needed).
        try
        {
            _insert.Bind(1, seq).Bind(2, e.TransactionId).Bind(3, user).Bind(4, e.Type).Bind(5, e.Amount).Bind(6, e.Currency).Bind(7, e.BalanceAfter)
                .Bind(8, e.Version).Bind(9, idempotencyKey).Bind(10, e.RequestHash).Bind(11, e.Reference).Bind(12, e.Reverses).Bind(13, postedBy.ToString())
                .Bind(14, e.CreatedAt).Bind(15, prev == 0 ? null : prev).Execute();
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19) { throw new StoreConflictException(ex.Message, ex); } // a constraint: a rule raced us
        catch (Exception ex) when (RefusesData(ex)) { throw new PostingRefusedByStoreException(ex); }
        long hash = KeyHash(idempotencyKey);
        // Written: stage it (its key hash is written with the batch's, at Commit).
        _next = seq + 1;
        _wallets[(e.UserId, e.Currency)] = (new BalanceChange(e.UserId, e.Currency, e.BalanceAfter, e.Version, e.TransactionId, e.Type, e.CreatedAt), seq);
        _heads[e.UserId] = seq;
        _keys.Add((hash, seq));
        if (!_keysByHash.TryGetValue(hash, out var list)) _keysByHash[hash] = list = [];
        list.Add(seq);
    }

    // A posting asks for its key's hash twice (FindByKey, then Write): computed once.
    private string? _hashedKey;
    private long _hash;
    private IncrementalHash? _hmac; // keyed with the database's seed once
    private long KeyHash(string key)
    {
        if (!ReferenceEquals(key, _hashedKey) && key != _hashedKey)
            (_hashedKey, _hash) = (key, LedgerState.KeyHash(_hmac ??= IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, _store.Seed), key));
        return _hash;
    }

    public void Dispose()
    {
        if (_flusher is not null)
        {
            _flusher.Drain(); // every commit of this connection answered, before the connection goes
            _flusher.Detach(_wal!);
            _wal!.Dispose();
        }
        foreach (var command in new[] { _begin, _commit, _rollback, _last, _bySeq, _byId, _reversed, _role, _checkpoint, _checkpointSeq })
            command.Dispose();
        _insert.Dispose();
        _insertKeys.Dispose();
        _hmac?.Dispose();
        _c.Dispose();
    }
}
