using Balance.Postings;

namespace Balance.Storage.Postgres;

// The ledger's store on PostgreSQL, where other nodes write the same wallets at the same time. The writer's session
// holds one connection; reads take a pooled one each.
public sealed class PostgresLedgerStore(PostgresDatabase db, Doorbell doorbell, TimeProvider time) : ILedgerStore
{
    public ILedgerSession OpenSession() => new PostgresLedgerSession(db.DataSource.OpenConnection(), doorbell, time);

    public async Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default)
    {
        await using var c = await db.DataSource.OpenConnectionAsync(ct);
        return await LedgerReads.WalletsAsync(c, userId, ct);
    }

    public async Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default)
    {
        await using var c = await db.DataSource.OpenConnectionAsync(ct);
        return await LedgerReads.HistoryAsync(c, userId, limit, before, ct);
    }
}
