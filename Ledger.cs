using System.Data.Common;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance;

public static class TxTypes
{
    public const string Deposit = "deposit", Withdrawal = "withdrawal", Bet = "bet", Win = "win", Rollback = "rollback";
    public static bool IsCredit(string type) => type is Deposit or Win or Rollback;
    public static bool IsKnown(string? type) => type is Deposit or Withdrawal or Bet or Win or Rollback;
}

// A validated request, amounts already in minor units.
public sealed record Posting(Guid? UserId, string Type, long Amount, string? Currency, string? Reference, string? Reverses, Guid PostedBy, string IdempotencyKey)
{
    // What "the same body" means for idempotency: every field that changes the effect.
    public string Hash() => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
        $"{Type}\n{UserId}\n{Amount}\n{Currency}\n{Reference}\n{Reverses}")));
}

public sealed record TransactionResult(
    string TransactionId, Guid UserId, string Type, string Amount, string Currency, string Balance,
    long Version, string CreatedAt, string? Reference, string? Reverses);

// A committed change of one wallet; what the sockets are told.
public sealed record BalanceChange(Guid UserId, string Currency, long Balance, long Version, string? TransactionId, string? TransactionType, string? UpdatedAt)
{
    // Stopwatch timestamp of the durable commit (0 for a balance read from the database): what the
    // socket's commit → send delay is measured from.
    public long CommittedAt { get; set; }
}

public abstract record PostOutcome
{
    public sealed record Committed(TransactionResult Result, bool Replayed) : PostOutcome;
    public sealed record InsufficientFunds(string Balance, string Currency) : PostOutcome;
    public sealed record IdempotencyConflict : PostOutcome;
    public sealed record AlreadyReversed(string TransactionId) : PostOutcome;
    public sealed record Refused(int Status, string Code, string Detail) : PostOutcome;
}

// Money: the rules and the SQL. Every posting goes through one writer loop that batches whatever is
// waiting into one SQLite transaction (group commit), answers each request only after that commit is
// durable, and only then publishes the changes — in commit order — to Changes.
public sealed class Ledger : IHostedService
{
    private readonly Database _db;
    private readonly ILogger _log;
    private readonly int _maxBatch;
    // Synchronous continuations: a posting wakes the writer thread directly, not through a thread-pool work item.
    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
    private readonly Channel<BalanceChange> _changes = Channel.CreateUnbounded<BalanceChange>(new UnboundedChannelOptions { SingleWriter = true }); // multi-reader mode keeps Count, which shutdown reads
    private Thread? _writer;

    public ChannelReader<BalanceChange> Changes => _changes.Reader;
    public LedgerStats Stats { get; } = new();

    // The request hash is computed on the caller's thread: the writer loop is the serial step, keep it lean.
    private sealed record Work(Posting Posting, string Hash, TaskCompletionSource<PostOutcome> Done);

    public sealed class LedgerStats
    {
        public long Commits, Transactions, Batches;
        // What SQLite says of the writer's own connection, read when it opens (-1 before): the durability promise
        // rests on it, so an operator (and the durability test) can see it on the running service rather than trust the code.
        public long Synchronous = -1, JournalWal = -1;
        public event Action<int, double>? Committed; // batch size, milliseconds
        internal void Observe(SqliteConnection c)
        {
            using var command = c.CreateCommand();
            command.CommandText = "PRAGMA synchronous";
            Volatile.Write(ref Synchronous, (long)command.ExecuteScalar()!);
            command.CommandText = "PRAGMA journal_mode";
            Volatile.Write(ref JournalWal, string.Equals((string?)command.ExecuteScalar(), "wal", StringComparison.OrdinalIgnoreCase) ? 1 : 0);
        }

        internal void Report(int size, double ms) { Interlocked.Increment(ref Batches); Interlocked.Add(ref Transactions, size); Committed?.Invoke(size, ms); }
    }

    public Ledger(Database db, IConfiguration config, ILoggerFactory loggers)
    {
        _db = db;
        _log = loggers.CreateLogger("Balance.Audit"); // one structured line per committed change
        _maxBatch = Math.Clamp(config.GetValue("Balance:MaxBatch", 256), 1, 10_000);
    }

    public Task StartAsync(CancellationToken ct)
    {
        // A thread of its own: the writer is the one serial step every posting passes through, so it must
        // not queue behind request work on the thread pool, and it blocks in fsync by design.
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "ledger writer", Priority = ThreadPriority.AboveNormal };
        _writer.Start();
        return Task.CompletedTask;
    }

    // The web server has finished its requests by now; commit whatever they left queued.
    public Task StopAsync(CancellationToken ct) => DrainAsync(ct);

    // Waits until every posting accepted so far is committed (or refused) and published.
    public async Task DrainAsync(CancellationToken ct)
    {
        while (Volatile.Read(ref _inFlight) > 0 && !ct.IsCancellationRequested)
            await Task.Delay(10, CancellationToken.None);
    }

    private int _inFlight;
    private volatile bool _refusing;

    // Shutdown: from here on a posting is answered 503 (retry with the same key, on the next instance) instead of
    // being committed after the sockets that would have shown it were closed. Postings already accepted still commit.
    public void StopAccepting()
    {
        _refusing = true;
        Interlocked.MemoryBarrier(); // pairs with PostAsync's increment: a posting either counts in the drain or is refused
    }

    public async Task<PostOutcome> PostAsync(Posting posting)
    {
        var done = new TaskCompletionSource<PostOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Increment(ref _inFlight);
        try
        {
            if (_refusing || !_work.Writer.TryWrite(new Work(posting, posting.Hash(), done))) throw new ServiceStoppingException();
            return await done.Task;
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private void WriteLoop()
    {
        var batch = new List<Work>(_maxBatch);
        var results = new List<PostOutcome>(_maxBatch);
        var changes = new List<BalanceChange>(_maxBatch);
        Writer? writer = null;
        while (_work.Reader.TryPeek(out _) || _work.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            while (batch.Count < _maxBatch && _work.Reader.TryRead(out var item)) batch.Add(item);
            results.Clear();
            changes.Clear();
            var started = Stopwatch.GetTimestamp();
            try
            {
                if (writer is null)
                {
                    var connection = _db.OpenAsync().GetAwaiter().GetResult();
                    Stats.Observe(connection);
                    writer = new Writer(connection, _db);
                }
                writer.Run(batch, results, changes);
            }
            catch (Exception ex)
            {
                // Nothing of this batch is durable: fail every request of it, publish nothing, and start the
                // next batch on a fresh connection.
                _log.LogError(ex, "Commit of {Count} postings failed; none was applied", batch.Count);
                foreach (var work in batch) work.Done.TrySetException(ex);
                writer?.Dispose();
                writer = null;
                continue;
            }
            // Committed: whatever happens below, every request of the batch gets its answer, and the thread lives on
            // (a dead writer thread would leave every later request waiting forever).
            try
            {
                long committed = Stopwatch.GetTimestamp();
                foreach (var change in changes)
                {
                    change.CommittedAt = committed;
                    _changes.Writer.TryWrite(change);
                }
                Stats.Report(batch.Count, Stopwatch.GetElapsedTime(started, committed).TotalMilliseconds);
                if (_log.IsEnabled(LogLevel.Information))
                    for (int i = 0; i < batch.Count; i++)
                        if (results[i] is PostOutcome.Committed { Replayed: false, Result: var r })
                            _log.LogInformation("Committed {TransactionType} {TransactionId} for {UserId} by {PostedBy}: {Amount} {Currency}, balance {Balance} v{Version}, reference {Reference}",
                                r.Type, r.TransactionId, r.UserId, batch[i].Posting.PostedBy, r.Amount, r.Currency, r.Balance, r.Version, r.Reference);
            }
            catch (Exception ex)
            {
                _log.LogCritical(ex, "After committing {Count} postings, publishing or logging them failed", batch.Count);
            }
            finally
            {
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(results[i]);
            }
        }
        writer?.Dispose();
    }

    private sealed record LedgerRow(string TransactionId, Guid UserId, string Type, long Amount, string Currency,
        long BalanceAfter, long Version, string RequestHash, string? Reference, string? Reverses, string CreatedAt)
    {
        public TransactionResult ToResult() => new(TransactionId, UserId, Type, Money.Format(Amount, Currency), Currency,
            Money.Format(BalanceAfter, Currency), Version, CreatedAt, Reference, Reverses);
    }

    private const string RowColumns = """
        transaction_id AS transactionid, user_id AS userid, type, amount, currency, balance_after AS balanceafter,
        version, request_hash AS requesthash, reference, reverses, created_at AS createdat
        """;

    // The writer loop's own connection, kept open, with its statements prepared once: it runs the same
    // handful of statements for every posting, thousands of times a second, so it skips Dapper's per-call
    // command building and SQLite's per-call statement preparation. Parameters only, never built SQL.
    private sealed class Writer : IDisposable
    {
        private readonly SqliteConnection _c;
        private readonly Database _db;
        private readonly SqliteCommand _begin, _commit, _rollback, _savepoint, _release, _undo;
        private readonly SqliteCommand _byKey, _byId, _reversed, _role, _wallet, _upsert, _insert;

        public Writer(SqliteConnection connection, Database db)
        {
            _c = connection;
            _db = db;
            _begin = Prepare("BEGIN IMMEDIATE");
            _commit = Prepare("COMMIT");
            _rollback = Prepare("ROLLBACK");
            _savepoint = Prepare("SAVEPOINT posting");
            _release = Prepare("RELEASE posting");
            _undo = Prepare("ROLLBACK TO posting");
            _byKey = Prepare($"SELECT {RowColumns} FROM ledger WHERE idempotency_key = $key", "$key");
            _byId = Prepare($"SELECT {RowColumns} FROM ledger WHERE transaction_id = $id", "$id");
            _reversed = Prepare("SELECT EXISTS (SELECT 1 FROM ledger WHERE reverses = $id)", "$id");
            _role = Prepare("SELECT role FROM users WHERE id = $user", "$user");
            _wallet = Prepare("SELECT balance, version FROM wallets WHERE user_id = $user AND currency = $currency", "$user", "$currency");
            // The WHERE makes the version step exactly one: anything else changes no row, and Apply refuses it.
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

        // One SQLite transaction for the whole batch; a savepoint per posting, so an unexpected constraint
        // failure of one undoes only that one. Throws when the batch as a whole cannot commit.
        public void Run(List<Work> batch, List<PostOutcome> results, List<BalanceChange> changes)
        {
            _begin.ExecuteNonQuery();
            try
            {
                foreach (var work in batch)
                {
                    _savepoint.ExecuteNonQuery();
                    try
                    {
                        var (outcome, change) = Apply(work.Posting, work.Hash);
                        results.Add(outcome);
                        if (change is not null) changes.Add(change);
                    }
                    catch (SqliteException ex) when (ex.SqliteErrorCode == 19) // constraint: a rule raced us
                    {
                        _undo.ExecuteNonQuery();
                        results.Add(new PostOutcome.Refused(409, "conflict", "The transaction conflicts with another one; retry with the same Idempotency-Key."));
                    }
                    _release.ExecuteNonQuery();
                }
                _commit.ExecuteNonQuery();
            }
            catch
            {
                results.Clear();
                changes.Clear();
                try { _rollback.ExecuteNonQuery(); } catch (SqliteException) { /* already rolled back by SQLite */ }
                throw;
            }
        }

        private LedgerRow? Row(SqliteCommand command)
        {
            using var r = command.ExecuteReader();
            if (!r.Read()) return null;
            return new LedgerRow(r.GetString(0), Guid.Parse(r.GetString(1)), r.GetString(2), r.GetInt64(3), r.GetString(4), r.GetInt64(5),
                r.GetInt64(6), r.GetString(7), r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.GetString(10));
        }

        private (PostOutcome, BalanceChange?) Apply(Posting p, string hash)
        {
            if (Row(With(_byKey, p.IdempotencyKey)) is { } earlier)
                return (earlier.RequestHash == hash ? new PostOutcome.Committed(earlier.ToResult(), Replayed: true) : new PostOutcome.IdempotencyConflict(), null);

            Guid userId;
            string user, currency;
            long amount = p.Amount;
            if (p.Type == TxTypes.Rollback)
            {
                var bet = Row(With(_byId, p.Reverses));
                if (bet is null) return (new PostOutcome.Refused(404, "transaction_not_found", $"No transaction {p.Reverses} to roll back."), null);
                if (bet.Type != TxTypes.Bet) return (new PostOutcome.Refused(422, "not_reversible", $"Only a bet can be rolled back; {p.Reverses} is a {bet.Type}."), null);
                if (p.UserId is { } given && given != bet.UserId) return (new PostOutcome.Refused(422, "user_mismatch", "user_id is not the owner of that bet."), null);
                if (Convert.ToInt64(With(_reversed, bet.TransactionId).ExecuteScalar()) != 0) return (new PostOutcome.AlreadyReversed(bet.TransactionId), null);
                (userId, currency, amount) = (bet.UserId, bet.Currency, bet.Amount);
                user = userId.ToString();
            }
            else
            {
                userId = p.UserId!.Value;
                user = userId.ToString();
                currency = p.Currency!;
                string? role = With(_role, user).ExecuteScalar() as string; // also: the user exists
                if (role is null) return (new PostOutcome.Refused(404, "user_not_found", $"No user {userId}."), null);
                if (role != Roles.Player) return (new PostOutcome.Refused(422, "not_a_player", "Only players have wallets."), null);
            }

            long balance = 0, version = 0;
            using (var r = With(_wallet, user, currency).ExecuteReader())
                if (r.Read()) (balance, version) = (r.GetInt64(0), r.GetInt64(1));
            long after;
            if (TxTypes.IsCredit(p.Type))
            {
                try { after = checked(balance + amount); }
                catch (OverflowException) { return (new PostOutcome.Refused(422, "balance_overflow", "The balance would overflow."), null); }
            }
            else
            {
                after = balance - amount;
                if (after < 0) return (new PostOutcome.InsufficientFunds(Money.Format(balance, currency), currency), null);
            }

            string now = _db.Now();
            string transactionId = Guid.CreateVersion7().ToString();
            version++;
            if (With(_upsert, user, currency, after, version, now, transactionId).ExecuteNonQuery() != 1)
                throw new SqliteException($"Wallet {user}/{currency} is no longer at version {version - 1}.", 19); // a constraint, like UNIQUE: undo this posting only
            With(_insert, transactionId, user, p.Type, amount, currency, after, version, p.IdempotencyKey, hash,
                p.Reference, p.Reverses, p.PostedBy.ToString(), now).ExecuteNonQuery();
            var result = new TransactionResult(transactionId, userId, p.Type, Money.Format(amount, currency), currency,
                Money.Format(after, currency), version, now, p.Reference, p.Reverses);
            return (new PostOutcome.Committed(result, Replayed: false), new BalanceChange(userId, currency, after, version, transactionId, p.Type, now));
        }

        public void Dispose()
        {
            foreach (var command in new[] { _begin, _commit, _rollback, _savepoint, _release, _undo, _byKey, _byId, _reversed, _role, _wallet, _upsert, _insert })
                command.Dispose();
            _c.Dispose();
        }
    }

    // ---- reads (WAL: readers never wait for the writer) ----

    public async Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default)
    {
        await using var c = await _db.OpenAsync(ct);
        var rows = (await c.QueryAsync<BalanceChange>(new CommandDefinition("""
            SELECT w.user_id AS userid, w.currency, w.balance, w.version, l.transaction_id AS transactionid, l.type AS transactiontype, w.updated_at AS updatedat
            FROM wallets w LEFT JOIN ledger l ON l.transaction_id = w.last_transaction_id AND l.version = w.version -- never a stale row
            WHERE w.user_id = @userId ORDER BY w.currency
            """, new { userId }, cancellationToken: ct))).ToList();
        if (!rows.Any(r => r.Currency == Money.DefaultCurrency))
            rows.Insert(0, new BalanceChange(userId, Money.DefaultCurrency, 0, 0, null, null, null));
        return rows;
    }

    public async Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default)
    {
        await using var c = await _db.OpenAsync(ct);
        long beforeSeq = long.MaxValue;
        if (before is not null)
        {
            long? seq = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
                "SELECT seq FROM ledger WHERE transaction_id = @before AND (@userId IS NULL OR user_id = @userId)", new { before, userId }, cancellationToken: ct));
            if (seq is null) return null;
            beforeSeq = seq.Value;
        }
        var rows = (await c.QueryAsync<LedgerRow>(new CommandDefinition($"""
            SELECT {RowColumns} FROM ledger
            WHERE seq < @beforeSeq AND (@userId IS NULL OR user_id = @userId)
            ORDER BY seq DESC LIMIT @take
            """, new { beforeSeq, userId, take = limit + 1 }, cancellationToken: ct))).ToList();
        string? next = rows.Count > limit ? rows[limit - 1].TransactionId : null;
        return (rows.Take(limit).Select(r => r.ToResult()).ToList(), next);
    }
}

public sealed class ServiceStoppingException() : Exception("The service is shutting down.");
