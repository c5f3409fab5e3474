using System.Data;
using Balance.Postings;
using Npgsql;

namespace Balance.Storage.Postgres;

// One batch as one READ COMMITTED transaction on a database other nodes write too:
//   1. read the bets being rolled back (immutable once written) and the roles of the users posted to and by;
//   2. create the wallets the batch touches, then lock them all in sorted key order (unsorted locks deadlock between
//      nodes), and only then read their idempotency keys and reversals: whatever another node committed on those
//      wallets before we got the locks is seen;
//   3. the rules run in memory over what was read, in arrival order (Ledger.cs);
//   4. the wallets and ledger rows are written set-based, and the transaction commits.
// No savepoint per posting: past 64 subtransactions PostgreSQL spills to pg_subtrans and stalls the whole database.
// The constraints (balance >= 0, one row per key, per reversal, per wallet version) are the backstop: a batch that
// hits one is refused whole and the writer runs it again once, when it reads what the other node committed.
internal sealed class PostgresLedgerSession(NpgsqlConnection connection, Doorbell doorbell, TimeProvider time) : ILedgerSession
{

    private sealed class Wallet(long balance, long version)
    {
        public long Balance = balance, Version = version;
        public readonly long Locked = version; // the version under our lock, which the write must still find
    }

    private readonly Dictionary<(Guid PostedBy, string Key), LedgerEntry> _byKey = [];
    private readonly Dictionary<string, LedgerEntry> _byId = new(StringComparer.Ordinal);
    private readonly HashSet<string> _reversed = new(StringComparer.Ordinal);
    private readonly Dictionary<Guid, string> _roles = [];
    private readonly Dictionary<(Guid User, string Currency), Wallet> _wallets = [];
    private readonly List<(LedgerEntry Entry, string Key, Guid PostedBy)> _pending = [];
    private NpgsqlTransaction? _tx;

    public void Begin(IReadOnlyList<Posting> postings)
    {
        try { Load(postings); }
        catch (PostgresException e) when (IsConflict(e)) { throw new StoreConflictException(e.MessageText, e); } // e.g. a deadlock the sorted locks should prevent
        catch (Exception e) when (RefusesData(e)) { throw new PostingRefusedByStoreException(e); } // e.g. a NUL in a key
    }

    private void Load(IReadOnlyList<Posting> postings)
    {
        _byKey.Clear(); _byId.Clear(); _reversed.Clear(); _roles.Clear(); _wallets.Clear(); _pending.Clear();
        var bets = new List<string>();
        var users = new HashSet<Guid>();
        var keys = new string[postings.Count];
        var posters = new Guid[postings.Count];
        for (int i = 0; i < postings.Count; i++)
        {
            var p = postings[i];
            (keys[i], posters[i]) = (p.IdempotencyKey, p.PostedBy);
            users.Add(p.PostedBy); // the rules check the poster is an operator here
            if (p.Type == TxTypes.Rollback) bets.Add(p.Reverses!);
            else users.Add(p.UserId!.Value);
        }
        _tx = connection.BeginTransaction(IsolationLevel.ReadCommitted); // sent with the first statement below

        using (var batch = new NpgsqlBatch(connection, _tx))
        {
            batch.BatchCommands.Add(Command($"SELECT {LedgerReads.RowColumns} FROM ledger WHERE transaction_id = ANY($1)", P(bets.ToArray())));
            batch.BatchCommands.Add(Command("SELECT id, role FROM users WHERE id = ANY($1)", P(users.ToArray())));
            using var r = batch.ExecuteReader();
            while (r.Read()) { var bet = LedgerReads.Entry(r); _byId[bet.TransactionId] = bet; }
            r.NextResult();
            while (r.Read()) _roles[r.GetGuid(0)] = r.GetString(1);
        }

        var touched = new HashSet<(Guid, string)>();
        foreach (var p in postings)
            if (Ledger.WalletMoved(p, p.Type == TxTypes.Rollback ? _byId.GetValueOrDefault(p.Reverses!) : null,
                    p.Type == TxTypes.Rollback ? null : _roles.GetValueOrDefault(p.UserId!.Value)) is { } wallet)
                touched.Add(wallet);
        var wUsers = touched.Select(t => t.Item1).ToArray();
        var wCurrencies = touched.Select(t => t.Item2).ToArray();
        string now = Timestamps.Format(time.GetUtcNow().UtcDateTime);
        using (var batch = new NpgsqlBatch(connection, _tx))
        {
            // Sorted here too: two nodes creating the same new wallets take them in one order.
            batch.BatchCommands.Add(Command("""
                INSERT INTO wallets (user_id, currency, balance, version, updated_at)
                SELECT u, c, 0, 0, $3 FROM unnest($1, $2) AS t (u, c) ORDER BY u, c
                ON CONFLICT (user_id, currency) DO NOTHING RETURNING 1
                """, P(wUsers), P(wCurrencies), P(now)));
            batch.BatchCommands.Add(Command("""
                SELECT user_id, currency, balance, version FROM wallets
                WHERE (user_id, currency) IN (SELECT * FROM unnest($1, $2))
                ORDER BY user_id, currency FOR UPDATE
                """, P(wUsers), P(wCurrencies)));
            batch.BatchCommands.Add(Command($"SELECT {LedgerReads.RowColumns}, posted_by, idempotency_key FROM ledger WHERE (posted_by, idempotency_key) IN (SELECT * FROM unnest($1, $2))", P(posters), P(keys)));
            batch.BatchCommands.Add(Command("SELECT reverses FROM ledger WHERE reverses = ANY($1)", P(bets.ToArray())));
            using var r = batch.ExecuteReader();
            while (r.Read()) { }
            r.NextResult();
            while (r.Read()) _wallets[(r.GetGuid(0), r.GetString(1))] = new Wallet(r.GetInt64(2), r.GetInt64(3));
            r.NextResult();
            while (r.Read()) _byKey[(r.GetGuid(11), r.GetString(12))] = LedgerReads.Entry(r);
            r.NextResult();
            while (r.Read()) _reversed.Add(r.GetString(0));
        }
    }

    public LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey) => _byKey.GetValueOrDefault((postedBy, idempotencyKey));
    public LedgerEntry? FindById(string transactionId) => _byId.GetValueOrDefault(transactionId);
    public bool IsReversed(string transactionId) => _reversed.Contains(transactionId);
    public string? RoleOf(Guid userId) => _roles.GetValueOrDefault(userId);

    public (long Balance, long Version) ReadWallet(Guid userId, string currency) =>
        _wallets.TryGetValue((userId, currency), out var w) ? (w.Balance, w.Version) : (0, 0);

    // Staged, not sent: the batch's rows reach the database at Commit, so a Write refused here has nothing to undo.
    public void Write(LedgerEntry e, string idempotencyKey, Guid postedBy)
    {
        if (!_wallets.TryGetValue((e.UserId, e.Currency), out var w) || w.Version != e.Version - 1)
            throw new StoreConflictException($"Wallet {e.UserId}/{e.Currency} is not locked at version {e.Version - 1}.");
        (w.Balance, w.Version) = (e.BalanceAfter, e.Version);
        _byKey[(postedBy, idempotencyKey)] = e;
        _byId[e.TransactionId] = e;
        if (e.Reverses is not null) _reversed.Add(e.Reverses);
        _pending.Add((e, idempotencyKey, postedBy));
    }

    public void Commit()
    {
        var tx = _tx ?? throw new InvalidOperationException("Commit without Begin.");
        bool wrote = _pending.Count > 0;
        try
        {
            if (wrote) WritePending(tx);
        }
        catch (PostgresException e) when (IsConflict(e)) { throw new StoreConflictException(e.MessageText, e); }
        catch (Exception e) when (RefusesData(e)) { throw new PostingRefusedByStoreException(e); }
        try
        {
            tx.Commit();
        }
        catch (PostgresException e) when (IsConflict(e)) { throw new StoreConflictException(e.MessageText, e); }
        // Anything else once COMMIT was sent — the connection lost, the server shutting down, a cancel — leaves the
        // outcome unknown: never a definite "nothing was changed".
        catch (Exception e) when (e is NpgsqlException or IOException or TimeoutException) { throw new CommitOutcomeUnknownException(e); }
        finally { _tx = null; }
        if (wrote) doorbell.Ring(); // after the commit, never inside it: the feeds of every node look now
    }

    private void WritePending(NpgsqlTransaction tx)
    {
        var last = new Dictionary<(Guid, string), LedgerEntry>();
        foreach (var (e, _, _) in _pending) last[(e.UserId, e.Currency)] = e;
        int n = last.Count;
        var wUsers = new Guid[n]; var wCurrencies = new string[n]; var wBalances = new long[n]; var wVersions = new long[n];
        var wLocked = new long[n]; var wAt = new string[n]; var wIds = new string[n];
        int i = 0;
        foreach (var ((user, currency), e) in last)
        {
            (wUsers[i], wCurrencies[i], wBalances[i], wVersions[i]) = (user, currency, e.BalanceAfter, e.Version);
            (wLocked[i], wAt[i], wIds[i]) = (_wallets[(user, currency)].Locked, e.CreatedAt, e.TransactionId);
            i++;
        }
        int m = _pending.Count;
        var ids = new string[m]; var users = new Guid[m]; var types = new string[m]; var amounts = new long[m]; var currencies = new string[m];
        var balances = new long[m]; var versions = new long[m]; var keys = new string[m]; var hashes = new string[m];
        var references = new string?[m]; var reverses = new string?[m]; var postedBy = new Guid[m]; var created = new string[m];
        for (int j = 0; j < m; j++)
        {
            var (e, key, by) = _pending[j];
            (ids[j], users[j], types[j], amounts[j], currencies[j], balances[j], versions[j]) = (e.TransactionId, e.UserId, e.Type, e.Amount, e.Currency, e.BalanceAfter, e.Version);
            (keys[j], hashes[j], references[j], reverses[j], postedBy[j], created[j]) = (key, e.RequestHash, e.Reference, e.Reverses, by, e.CreatedAt);
        }
        using var batch = new NpgsqlBatch(connection, tx);
        batch.BatchCommands.Add(Command("""
            WITH moved AS (
                UPDATE wallets AS w SET balance = t.balance, version = t.version, updated_at = t.at, last_transaction_id = t.id
                FROM unnest($1, $2, $3, $4, $5, $6, $7) AS t (user_id, currency, balance, version, locked, at, id)
                WHERE w.user_id = t.user_id AND w.currency = t.currency AND w.version = t.locked
                RETURNING 1)
            SELECT balance_assert(count(*) = $8, 'a wallet moved under its lock') FROM moved
            """, P(wUsers), P(wCurrencies), P(wBalances), P(wVersions), P(wLocked), P(wAt), P(wIds), P(n)));
        // unnest keeps the arrays' order, so seq follows the batch's arrival order.
        batch.BatchCommands.Add(Command($"""
            INSERT INTO ledger (transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at)
            SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            """, P(ids), P(users), P(types), P(amounts), P(currencies), P(balances), P(versions), P(keys), P(hashes), P(references), P(reverses), P(postedBy), P(created)));
        batch.ExecuteNonQuery();
    }

    // A constraint or a lost race between nodes: the batch is refused whole, and the writer runs it once more.
    private static bool IsConflict(PostgresException e) =>
        e.SqlState.StartsWith("23", StringComparison.Ordinal) || e.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected;

    // A value the database will not take, whatever its state and whoever else writes: class 22 (data exception: a NUL
    // in text, 22021; a value out of range) and 54 (program limit exceeded: an index row too big), or a parameter
    // Npgsql cannot encode. Set-based writes do not say which posting's: the writer runs the batch's postings alone.
    private static bool RefusesData(Exception e) =>
        e is PostgresException p ? p.SqlState.StartsWith("22", StringComparison.Ordinal) || p.SqlState.StartsWith("54", StringComparison.Ordinal)
            : e is ArgumentException;

    public void WhenDurable(Action<Exception?> then) => then(null); // COMMIT returned: durable (synchronous_commit)

    public void Rollback()
    {
        try { _tx?.Rollback(); }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException) { /* the connection is gone: so is the transaction */ }
        _tx = null;
    }

    private static NpgsqlBatchCommand Command(string sql, params NpgsqlParameter[] parameters)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.AddRange(parameters);
        return command;
    }

    private static NpgsqlParameter P(object value) => new() { Value = value };


    public void Dispose()
    {
        // A connection broken by a restart of the database: its pooled siblings are broken too, so drop them all.
        if (connection.FullState.HasFlag(ConnectionState.Broken)) NpgsqlConnection.ClearPool(connection);
        connection.Dispose();
    }
}
