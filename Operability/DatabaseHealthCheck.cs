using System.Data.Common;
using Balance.Storage;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Balance.Operability;

// Ready only while the database answers a query and would take a write (either engine): a service whose every posting
// gets 503 is not ready, however well it reads. What "would take a write" means is each engine's own
// (IDatabase.WhyNotWritableAsync: Storage/Sqlite/SqliteReadiness.cs, Storage/Postgres/PostgresDatabase.cs); the
// ledger writer's recent commit is evidence enough of the write lock, so an engine need not take it again.
public sealed class DatabaseHealthCheck(IDatabase db, Ledger ledger) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
    {
        try
        {
            return await db.WhyNotWritableAsync(ledger.Stats.CommittedWithin(TimeSpan.FromSeconds(5)), ct) is { } reason
                ? HealthCheckResult.Unhealthy(reason)
                : HealthCheckResult.Healthy();
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy("database unreachable", ex);
        }
    }
}
