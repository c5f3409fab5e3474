using System.Data.Common;
using Balance.Postings;
using Dapper;

namespace Balance.Storage;

// The ledger's reads, alike in both engines' SQL: a player's wallets (a socket's snapshot, GET /api/balance) and the
// history pages. Each store opens the connection; this is the query.
internal static class LedgerReads
{
    public const string RowColumns = """
        transaction_id AS transactionid, user_id AS userid, type, amount, currency, balance_after AS balanceafter,
        version, request_hash AS requesthash, reference, reverses, created_at AS createdat
        """;

    /// One ledger row selected with RowColumns, first, in that order (both engines: SQLite's TEXT ids and
    /// PostgreSQL's uuid read alike with GetGuid).
    public static LedgerEntry Entry(DbDataReader r) =>
        new(r.GetString(0), r.GetGuid(1), r.GetString(2), r.GetInt64(3), r.GetString(4), r.GetInt64(5), r.GetInt64(6), r.GetString(7),
            r.IsDBNull(8) ? null : r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.GetString(10));

    /// Every wallet of the player, newest balance each, by currency in ordinal order; the default currency at 0 when the
    /// player has no wallet in it yet.
    public static async Task<IReadOnlyList<BalanceChange>> WalletsAsync(DbConnection c, Guid userId, CancellationToken ct)
    {
        var rows = (await c.QueryAsync<BalanceChange>(new CommandDefinition("""
            SELECT w.user_id AS userid, w.currency, w.balance, w.version, l.transaction_id AS transactionid, l.type AS transactiontype, w.updated_at AS updatedat
            FROM wallets w LEFT JOIN ledger l ON l.transaction_id = w.last_transaction_id AND l.version = w.version -- never a stale row
            WHERE w.user_id = @userId AND w.version > 0 -- version 0: a wallet a PostgreSQL batch made and locked, never posted to
            """, new { userId }, cancellationToken: ct))).ToList();
        rows.Sort((a, b) => string.CompareOrdinal(a.Currency, b.Currency));
        if (!rows.Any(r => r.Currency == Money.DefaultCurrency))
            rows.Insert(0, new BalanceChange(userId, Money.DefaultCurrency, 0, 0, null, null, null));
        return rows;
    }

    /// Ledger entries newest first, `limit` of them before the entry `before`; null when `before` is not one of them.
    public static async Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(DbConnection c, Guid? userId, int limit, string? before, CancellationToken ct)
    {
        string ofUser = userId is null ? "" : "AND user_id = @userId"; // two fixed texts: no typed NULL test in either dialect
        long beforeSeq = long.MaxValue;
        if (before is not null)
        {
            long? seq = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
                $"SELECT seq FROM ledger WHERE transaction_id = @before {ofUser}", new { before, userId }, cancellationToken: ct));
            if (seq is null) return null;
            beforeSeq = seq.Value;
        }
        var rows = (await c.QueryAsync<LedgerEntry>(new CommandDefinition($"""
            SELECT {RowColumns} FROM ledger
            WHERE seq < @beforeSeq {ofUser}
            ORDER BY seq DESC LIMIT @take
            """, new { beforeSeq, userId, take = limit + 1 }, cancellationToken: ct))).ToList();
        string? next = rows.Count > limit ? rows[limit - 1].TransactionId : null;
        return (rows.Take(limit).Select(r => r.ToResult()).ToList(), next);
    }
}
