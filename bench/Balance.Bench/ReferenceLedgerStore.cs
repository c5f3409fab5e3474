using Balance.Postings;
using Balance.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Balance.Bench;

// The ledger's SQLite store as it was before the log (schema 1, commit 2b13bb6), kept verbatim as the probe's
// reference: per posting an idempotency-key index lookup, a wallet read and upsert, and a ledger insert into a table
// with four indexes, each under a savepoint. Runs on a database of bench/Balance.Bench/reference/balance.db.sql.
public sealed class ReferenceLedgerStore(SqliteDatabase db) : ILedgerStore
{
    public const string RowColumns = """
        transaction_id AS transactionid, user_id AS userid, type, amount, currency, balance_after AS balanceafter,
        version, request_hash AS requesthash, reference, reverses, created_at AS createdat
        """;

    public ILedgerSession OpenSession() => new Session(db.OpenAsync().GetAwaiter().GetResult());
    public Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default) => throw new NotSupportedException();
    public Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default) => throw new NotSupportedException();

    private sealed class Session : ILedgerSession
    {
        private readonly SqliteConnection _c;
        private readonly SqliteCommand _begin, _commit, _rollback, _savepoint, _release, _undo;
        private readonly SqliteCommand _byKey, _byId, _reversed, _role, _wallet, _upsert, _insert;

        public Session(SqliteConnection connection)
        {
            _c = connection;
            _begin = Prepare("BEGIN IMMEDIATE");
            _commit = Prepare("COMMIT");
            _rollback = Prepare("ROLLBACK");
            _savepoint = Prepare("SAVEPOINT posting");
            _release = Prepare("RELEASE posting");
            _undo = Prepare("ROLLBACK TO posting");
            _byKey = Prepare($"SELECT {RowColumns} FROM ledger WHERE idempotency_key = $key AND posted_by = $by", "$key", "$by"); // schema 1's key index
            _byId = Prepare($"SELECT {RowColumns} FROM ledger WHERE transaction_id = $id", "$id");
            _reversed = Prepare("SELECT EXISTS (SELECT 1 FROM ledger WHERE reverses = $id)", "$id");
            _role = Prepare("SELECT role FROM users WHERE id = $user", "$user");
            _wallet = Prepare("SELECT balance, version FROM wallets WHERE user_id = $user AND currency = $currency", "$user", "$currency");
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

        private readonly Dictionary<Guid, string?> _roles = [];

        public void Begin(IReadOnlyList<Posting> postings)
        {
            _roles.Clear();
            _begin.ExecuteNonQuery();
        }
        public void Commit() => _commit.ExecuteNonQuery();

        public void WhenDurable(Action<Exception?> then) => then(null); // synchronous=FULL: COMMIT returned durable

        public void Rollback()
        {
            try { _rollback.ExecuteNonQuery(); } catch (SqliteException) { }
        }


        private LedgerEntry? Row(SqliteCommand command)
        {
            using var r = command.ExecuteReader();
            if (!r.Read()) return null;
            return new LedgerEntry(r.GetString(0), Guid.Parse(r.GetString(1)), r.GetString(2), r.GetInt64(3), r.GetString(4), r.GetInt64(5),
                r.GetInt64(6), r.GetString(7), r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.GetString(10));
        }

        public LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey) => Row(With(_byKey, idempotencyKey, postedBy.ToString()));
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

        // The posting's two writes under a savepoint, undone together when either is refused.
        public void Write(LedgerEntry e, string idempotencyKey, Guid postedBy)
        {
            string user = e.UserId.ToString();
            _savepoint.ExecuteNonQuery();
            try
            {
                if (With(_upsert, user, e.Currency, e.BalanceAfter, e.Version, e.CreatedAt, e.TransactionId).ExecuteNonQuery() != 1)
                    throw new StoreConflictException($"Wallet {user}/{e.Currency} is no longer at version {e.Version - 1}.");
                With(_insert, e.TransactionId, user, e.Type, e.Amount, e.Currency, e.BalanceAfter, e.Version, idempotencyKey, e.RequestHash,
                    e.Reference, e.Reverses, postedBy.ToString(), e.CreatedAt).ExecuteNonQuery();
            }
            catch (Exception ex) when (ex is StoreConflictException or SqliteException { SqliteErrorCode: 19 })
            {
                _undo.ExecuteNonQuery();
                throw ex as StoreConflictException ?? new StoreConflictException(ex.Message, ex);
            }
            finally
            {
                _release.ExecuteNonQuery();
            }
        }

        public void Dispose()
        {
            foreach (var command in new[] { _begin, _commit, _rollback, _savepoint, _release, _undo, _byKey, _byId, _reversed, _role, _wallet, _upsert, _insert })
                command.Dispose();
            _c.Dispose();
        }
    }
}
