using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Balance.Postings;
using Microsoft.Data.Sqlite;

namespace Balance.Storage.Sqlite;

// What would otherwise be SQLite indexes, in the single writer's memory: every wallet (its newest ledger row),
// each player's newest row (the head of their history chain), the Idempotency-Keys of the window (as keyed 64-bit
// hashes pointing at ledger rows), and the highest seq. Built from the ledger at start (wallet_checkpoint is where
// the replay starts, never trusted past the ledger) and moved only by a batch that has committed.
//
// Threads: the writer alone changes it; reads (balances, history heads) come from any thread and see each wallet's
// newest committed state: a user's wallets are one immutable array, swapped after the commit.
public sealed class LedgerState
{
    public sealed class User
    {
        public BalanceChange[] Wallets = []; // sorted by currency, ordinal; replaced, never changed in place
        public long Head;                    // seq of the user's newest ledger row, 0 when none
    }

    public readonly ConcurrentDictionary<Guid, User> Users = new();
    public long LastSeq;       // the highest committed seq
    public long CheckpointSeq; // ledger_meta.checkpoint_seq
    public readonly Dictionary<(Guid, string), long> Dirty = []; // wallets moved since the last checkpoint → their newest seq

    // key hash → seq; a hash shared by several rows (the same key of two posters, or a true collision) keeps the
    // others in _more. Writer only.
    private readonly Dictionary<long, long> _keys = [];
    private readonly Dictionary<long, List<long>> _more = [];
    // (first seq after, time): every row below seq was created before time. The window's sweep uses them.
    private readonly List<(long Seq, DateTime At)> _marks = [];
    public int KeyCount => _keys.Count + _more.Sum(m => m.Value.Count);

    public BalanceChange? Wallet(Guid userId, string currency)
    {
        if (!Users.TryGetValue(userId, out var user)) return null;
        foreach (var w in Volatile.Read(ref user.Wallets)) if (w.Currency == currency) return w;
        return null;
    }

    public long HeadOf(Guid userId) => Users.TryGetValue(userId, out var user) ? Volatile.Read(ref user.Head) : 0;

    public void Apply(BalanceChange wallet, long seq)
    {
        var user = Users.GetOrAdd(wallet.UserId, _ => new User());
        var old = user.Wallets;
        int i = Array.FindIndex(old, w => w.Currency == wallet.Currency);
        BalanceChange[] next;
        if (i >= 0) { next = (BalanceChange[])old.Clone(); next[i] = wallet; }
        else
        {
            next = [.. old, wallet];
            Array.Sort(next, (a, b) => string.CompareOrdinal(a.Currency, b.Currency));
        }
        Volatile.Write(ref user.Wallets, next);
        if (seq > user.Head) Volatile.Write(ref user.Head, seq);
    }

    public void AddKey(long hash, long seq)
    {
        if (_keys.TryAdd(hash, seq)) return;
        if (!_more.TryGetValue(hash, out var list)) _more[hash] = list = [];
        list.Add(seq);
    }

    public void Candidates(long hash, List<long> into)
    {
        if (_keys.TryGetValue(hash, out long seq)) into.Add(seq);
        if (_more.TryGetValue(hash, out var list)) into.AddRange(list);
    }

    // Called after each commit: remembers where the clock stood, and forgets keys whose rows are all older than the
    // window. A key is therefore remembered for at least the window (FindByKey also refuses a row older than it).
    public void Mark(DateTime now, TimeSpan window)
    {
        TimeSpan step = window / 16;
        if (_marks.Count == 0 || now - _marks[^1].At >= step) _marks.Add((LastSeq + 1, now));
        int last = -1;
        for (int i = 0; i < _marks.Count && _marks[i].At < now - window; i++) last = i;
        if (last < 0) return;
        long below = _marks[last].Seq;
        _marks.RemoveRange(0, last + 1);
        foreach (var (hash, seq) in _keys)
            if (seq < below) _keys.Remove(hash);
        foreach (var (hash, list) in _more)
        {
            list.RemoveAll(s => s < below);
            if (list.Count == 0) _more.Remove(hash);
        }
    }

    // ---- building it from the database (inside a transaction of the given connection) ----

    public static LedgerState Load(SqliteConnection c, DateTime now, TimeSpan window)
    {
        var state = new LedgerState();
        state.CheckpointSeq = Convert.ToInt64(Scalar(c, "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM ledger_meta WHERE name = 'checkpoint_seq'), 0)"));
        state.LastSeq = Convert.ToInt64(Scalar(c, "SELECT COALESCE(MAX(seq), 0) FROM ledger"));
        using (var cmd = c.CreateCommand())
        {
            // The checkpoint: each wallet's newest row as of checkpoint_seq; then every row after it, in order.
            cmd.CommandText = """
                SELECT l.seq, l.user_id, l.currency, l.balance_after, l.version, l.transaction_id, l.type, l.created_at
                FROM wallet_checkpoint w JOIN ledger l ON l.seq = w.seq
                UNION ALL
                SELECT * FROM (SELECT seq, user_id, currency, balance_after, version, transaction_id, type, created_at
                               FROM ledger WHERE seq > $after ORDER BY seq)
                """;
            cmd.Parameters.AddWithValue("$after", state.CheckpointSeq);
            using var r = cmd.ExecuteReader();
            var users = new Dictionary<string, Guid>();
            while (r.Read())
            {
                string userText = r.GetString(1);
                if (!users.TryGetValue(userText, out var userId)) users[userText] = userId = Guid.Parse(userText);
                string currency = string.Intern(r.GetString(2));
                var wallet = new BalanceChange(userId, currency, r.GetInt64(3), r.GetInt64(4), r.GetString(5), string.Intern(r.GetString(6)), r.GetString(7));
                long seq = r.GetInt64(0);
                var existing = state.Wallet(userId, currency);
                if (existing is null || existing.Version < wallet.Version) state.Apply(wallet, seq);
                else if (seq > state.HeadOf(userId)) Volatile.Write(ref state.Users[userId].Head, seq);
                if (seq > state.CheckpointSeq) state.Dirty[(userId, currency)] = seq;
            }
        }
        // The window's keys: rows created since now - window (seq order is creation order: one writer, one clock).
        long from = FirstSeqAtOrAfter(c, Timestamps.Format(now - window), state.LastSeq);
        using (var cmd = c.CreateCommand())
        {
            // Sized once, with a quarter to spare (at most a row per seq from there): no rehash while it fills, and none
            // on the writer's thread at the first postings after start, when a table sized to the row copies all of
            // the window's keys into one twice its size.
            long inWindow = Math.Max(0, state.LastSeq - from + 1);
            state._keys.EnsureCapacity((int)Math.Min(inWindow + inWindow / 4 + 4096, 1 << 30));
            // A row per batch: from the run that holds `from` on.
            cmd.CommandText = """
                SELECT first_seq, hashes FROM ledger_key_runs
                WHERE first_seq >= COALESCE((SELECT MAX(first_seq) FROM ledger_key_runs WHERE first_seq <= $from), 0)
                ORDER BY first_seq
                """;
            cmd.Parameters.AddWithValue("$from", from);
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                long first = r.GetInt64(0);
                byte[] run = r.GetFieldValue<byte[]>(1);
                for (int i = 0; i < run.Length / sizeof(long); i++)
                    if (first + i >= from) state.AddKey(KeyHashAt(run, i), first + i);
            }
        }
        state._marks.Add((state.LastSeq + 1, now));
        return state;
    }

    // Binary search over seq for the first row created at or after the given time (created_at grows with seq).
    private static long FirstSeqAtOrAfter(SqliteConnection c, string at, long last)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT seq, created_at FROM ledger WHERE seq >= $s ORDER BY seq LIMIT 1";
        var p = cmd.Parameters.Add(new SqliteParameter("$s", 0L));
        long lo = 0, hi = last + 1; // the answer is in [lo, hi]
        while (lo < hi)
        {
            long mid = lo + (hi - lo) / 2;
            p.Value = mid;
            using var r = cmd.ExecuteReader();
            if (!r.Read()) { hi = mid; continue; }
            long seq = r.GetInt64(0);
            if (string.CompareOrdinal(r.GetString(1), at) >= 0) hi = Math.Min(mid, seq);
            else lo = seq + 1;
        }
        return lo;
    }

    private static object? Scalar(SqliteConnection c, string sql)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }

    // ---- the key hash ----

    /// HMAC-SHA256 of the key under the database's own random seed, its first 8 bytes: 64 bits, and not computable
    /// (so not collidable on purpose) without the seed.
    public static long KeyHash(byte[] seed, string key)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, seed);
        return KeyHash(hmac, key);
    }

    /// The same, with an HMAC already keyed with the seed and reused key after key (the writer's): the one-shot
    /// HMACSHA256.HashData sets a MAC context up for every call.
    public static long KeyHash(IncrementalHash hmac, string key)
    {
        Span<byte> buffer = stackalloc byte[512];
        int max = Encoding.UTF8.GetMaxByteCount(key.Length);
        byte[]? rented = max > buffer.Length ? new byte[max] : null;
        Span<byte> data = rented ?? buffer;
        int n = Encoding.UTF8.GetBytes(key, data);
        Span<byte> mac = stackalloc byte[32];
        hmac.AppendData(data[..n]);
        hmac.GetHashAndReset(mac);
        return BitConverter.ToInt64(mac);
    }

    // A run of ledger_key_runs: the hash of its i-th row at byte i * 8, little-endian.
    public static void PutKeyHash(Span<byte> run, int i, long hash) => BinaryPrimitives.WriteInt64LittleEndian(run[(i * sizeof(long))..], hash);
    public static long KeyHashAt(ReadOnlySpan<byte> run, int i) => BinaryPrimitives.ReadInt64LittleEndian(run[(i * sizeof(long))..]);

    public static byte[] Seed(SqliteConnection c) =>
        Convert.FromHexString((string)Scalar(c, "SELECT value FROM ledger_meta WHERE name = 'key_seed'")!);
}
