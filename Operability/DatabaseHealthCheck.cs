using System.Data.Common;
using Balance.Storage;
using Dapper;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Balance.Operability;

// Ready only while the database answers a query (either engine).
public sealed class DatabaseHealthCheck(IDatabase db) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
    {
        try
        {
            await using var connection = await db.OpenAsync(ct);
            await connection.ExecuteScalarAsync<long>(new CommandDefinition("SELECT count(*) FROM users LIMIT 1", cancellationToken: ct));
            return HealthCheckResult.Healthy();
        }
        catch (Exception ex) when (ex is DbException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy("database unreachable", ex);
        }
    }
}
