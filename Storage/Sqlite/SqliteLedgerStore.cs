using Balance.Postings;
using Microsoft.Data.Sqlite;

namespace Balance.Storage.Sqlite;

// The ledger's store on SQLite. The writer's session holds one connection with its statements prepared once;
// reads open a pooled connection each (WAL: readers never wait for the writer).
public sealed class SqliteLedgerStore(SqliteDatabase db) : ILedgerStore
{
    // What SQLite says of the writer's own connection, read when it opens (-1 before): the durability promise rests
    // on it, so an operator (and the durability test) can see it on the running service rather than trust the code.
    public long Synchronous = -1, JournalWal = -1;

    public ILedgerSession OpenSession()
    {
        var connection = db.OpenAsync().GetAwaiter().GetResult();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA synchronous";
            Volatile.Write(ref Synchronous, (long)command.ExecuteScalar()!);
            command.CommandText = "PRAGMA journal_mode";
            Volatile.Write(ref JournalWal, string.Equals((string?)command.ExecuteScalar(), "wal", StringComparison.OrdinalIgnoreCase) ? 1 : 0);
        }
        return new SqliteLedgerSession(connection);
    }

    public async Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default)
    {
        await using var c = await db.OpenAsync(ct);
        return await LedgerReads.WalletsAsync(c, userId, ct);
    }

    public async Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default)
    {
        await using var c = await db.OpenAsync(ct);
        return await LedgerReads.HistoryAsync(c, userId, limit, before, ct);
    }
}

// The writer loop's own connection, kept open, with its statements prepared once: it runs the same handful of
// statements for every posting, thousands of times a second, so it skips Dapper's per-call command building and
// SQLite's per-call statement preparation. Parameters only, never built SQL. One BEGIN IMMEDIATE transaction per
// batch, and a savepoint per posting, so a constraint that fails undoes only that posting.
internal sealed class SqliteLedgerSession : ILedgerSession
{
    private readonly SqliteConnection _c;
    private readonly SqliteCommand _begin, _commit, _rollback, _savepoint, _release, _undo;
    private readonly SqliteCommand _byKey, _byId, _reversed, _role, _wallet, _upsert, _insert;

    public SqliteLedgerSession(SqliteConnection connection)
    {
        _c = connection;
        _begin = Prepare("BEGIN IMMEDIATE");
        _commit = Prepare("COMMIT");
        _rollback = Prepare("ROLLBACK");
        _savepoint = Prepare("SAVEPOINT posting");
        _release = Prepare("RELEASE posting");
        _undo = Prepare("ROLLBACK TO posting");
        _byKey = Prepare($"SELECT {LedgerReads.RowColumns} FROM ledger WHERE posted_by = $by AND idempotency_key = $key", "$by", "$key");
        _byId = Prepare($"SELECT {LedgerReads.RowColumns} FROM ledger WHERE transaction_id = $id", "$id");
        _reversed = Prepare("SELECT EXISTS (SELECT 1 FROM ledger WHERE reverses = $id)", "$id");
        _role = Prepare("SELECT role FROM users WHERE id = $user", "$user");
        _wallet = Prepare("SELECT balance, version FROM wallets WHERE user_id = $user AND currency = $currency", "$user", "$currency");
        // The WHERE makes the version step exactly one: anything else changes no row, and Write refuses it.
        _upsert = Prepare("""
            INSERT INTO wallets (user_id, currency, balance, version, updated_at, last_transaction_id) VALUES ($user, $currency, $balance, $version, $now, $id)
            ON CONFLICT (user_id, currency) DO UPDATE SET balance = excluded.balance, version = excluded.version,
                updated_at = excluded.updated_at, last_transaction_id = excluded.last_transaction_id
            WHERE wallets.version = excluded.version - 1
            """, "$user", "$currency", "$balance", "$version", "$now", "$id");
        _insert = Prepare("""
            INSERT INTO ledger (transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at)
            VALUES ($id, $user, $type, $amount, $currency, $balance, $version, $key, $hash, $reference, $reverses, $by, $now)
            """, "$id", "$user", "$type", "$amount", "$currency", "$balance", "$version", "$key", "$hash", "$reference", "$reverses", "$by", "$now");
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

    // Roles read in this batch: no user changes role or disappears while the writer holds BEGIN IMMEDIATE, and every
    // posting asks for its poster's (mostly the same few operators) besides its player's.
    private readonly Dictionary<Guid, string?> _roles = [];

    public void Begin(IReadOnlyList<Posting> postings)
    {
        _roles.Clear();
        _begin.ExecuteNonQuery(); // each posting reads as it goes, inside BEGIN IMMEDIATE
    }
    public void Commit() => _commit.ExecuteNonQuery();

    public void Rollback()
    {
        try { _rollback.ExecuteNonQuery(); } catch (SqliteException) { /* already rolled back by SQLite */ }
    }

    public bool TryIsolated<T>(Func<T> posting, out T result)
    {
        _savepoint.ExecuteNonQuery();
        try
        {
            result = posting();
            return true;
        }
        catch (Exception ex) when (ex is StoreConflictException or SqliteException { SqliteErrorCode: 19 }) // a constraint: a rule raced us
        {
            _undo.ExecuteNonQuery();
            result = default!;
            return false;
        }
        catch (Exception ex) when (RefusesData(ex)) // this posting's data, not the database: undo it alone
        {
            _undo.ExecuteNonQuery();
            throw new PostingRefusedByStoreException(ex);
        }
        finally
        {
            _release.ExecuteNonQuery();
        }
    }

    // SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE: a value SQLite will not take, whatever the state of the database.
    // (Busy, locked, full, read-only, I/O errors are the database's state: they fail the batch as before.)
    private static bool RefusesData(Exception ex) => ex is SqliteException { SqliteErrorCode: 18 or 20 or 25 } or ArgumentException;

    private LedgerEntry? Row(SqliteCommand command)
    {
        using var r = command.ExecuteReader();
        if (!r.Read()) return null;
        return new LedgerEntry(r.GetString(0), Guid.Parse(r.GetString(1)), r.GetString(2), r.GetInt64(3), r.GetString(4), r.GetInt64(5),
            r.GetInt64(6), r.GetString(7), r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.GetString(10));
    }

    public LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey) => Row(With(_byKey, postedBy.ToString(), idempotencyKey));
    public LedgerEntry? FindById(string transactionId) => Row(With(_byId, transactionId));
    public bool IsReversed(string transactionId) => Convert.ToInt64(With(_reversed, transactionId).ExecuteScalar()) != 0;
    public string? RoleOf(Guid userId)
    {
        if (!_roles.TryGetValue(userId, out string? role)) _roles[userId] = role = With(_role, userId.ToString()).ExecuteScalar() as string;
        return role;
    }

    public (long Balance, long Version) ReadWallet(Guid userId, string currency)
    {
        using var r = With(_wallet, userId.ToString(), currency).ExecuteReader();
        return r.Read() ? (r.GetInt64(0), r.GetInt64(1)) : (0, 0);
    }

    public void Write(LedgerEntry e, string idempotencyKey, Guid postedBy)
    {
        string user = e.UserId.ToString();
        if (With(_upsert, user, e.Currency, e.BalanceAfter, e.Version, e.CreatedAt, e.TransactionId).ExecuteNonQuery() != 1)
            throw new StoreConflictException($"Wallet {user}/{e.Currency} is no longer at version {e.Version - 1}.");
        With(_insert, e.TransactionId, user, e.Type, e.Amount, e.Currency, e.BalanceAfter, e.Version, idempotencyKey, e.RequestHash,
            e.Reference, e.Reverses, postedBy.ToString(), e.CreatedAt).ExecuteNonQuery();
    }

    public void Dispose()
    {
        foreach (var command in new[] { _begin, _commit, _rollback, _savepoint, _release, _undo, _byKey, _byId, _reversed, _role, _wallet, _upsert, _insert })
            command.Dispose();
        _c.Dispose();
    }
}
