using Balance.Postings;
using Dapper;
using Npgsql;

namespace Balance.Storage.Postgres;

// The ledger's store on PostgreSQL, where other nodes write the same wallets at the same time. The writer's session
// holds one connection; reads take a pooled one each.
public sealed class PostgresLedgerStore(PostgresDatabase db, Doorbell doorbell, TimeProvider time) : ILedgerStore
{
    internal const string RowColumns = """
        transaction_id AS transactionid, user_id AS userid, type, amount, currency, balance_after AS balanceafter,
        version, request_hash AS requesthash, reference, reverses, created_at AS createdat
        """;

    public ILedgerSession OpenSession() => new PostgresLedgerSession(db.DataSource.OpenConnection(), doorbell, time);

    public async Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default)
    {
        await using var c = await db.DataSource.OpenConnectionAsync(ct);
        var rows = (await c.QueryAsync<BalanceChange>(new CommandDefinition("""
            SELECT w.user_id AS userid, w.currency, w.balance, w.version, l.transaction_id AS transactionid, l.type AS transactiontype, w.updated_at AS updatedat
            FROM wallets w LEFT JOIN ledger l ON l.transaction_id = w.last_transaction_id AND l.version = w.version
            WHERE w.user_id = @userId AND w.version > 0 -- version 0: made by a batch, never posted to
            ORDER BY w.currency COLLATE "C"
            """, new { userId }, cancellationToken: ct))).ToList();
        if (!rows.Any(r => r.Currency == Money.DefaultCurrency))
            rows.Insert(0, new BalanceChange(userId, Money.DefaultCurrency, 0, 0, null, null, null));
        return rows;
    }

    public async Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default)
    {
        await using var c = await db.DataSource.OpenConnectionAsync(ct);
        long beforeSeq = long.MaxValue;
        if (before is not null)
        {
            long? seq = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
                "SELECT seq FROM ledger WHERE transaction_id = @before AND (@userId::uuid IS NULL OR user_id = @userId::uuid)", new { before, userId }, cancellationToken: ct));
            if (seq is null) return null;
            beforeSeq = seq.Value;
        }
        var rows = (await c.QueryAsync<LedgerEntry>(new CommandDefinition($"""
            SELECT {RowColumns} FROM ledger
            WHERE seq < @beforeSeq AND (@userId::uuid IS NULL OR user_id = @userId::uuid)
            ORDER BY seq DESC LIMIT @take
            """, new { beforeSeq, userId, take = limit + 1 }, cancellationToken: ct))).ToList();
        string? next = rows.Count > limit ? rows[limit - 1].TransactionId : null;
        return (rows.Take(limit).Select(r => r.ToResult()).ToList(), next);
    }
}
