using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using OpenTelemetry.Metrics;

namespace Balance.Operability;

public static class OperabilityRegistration
{
    // Health, metrics (meter "Balance", Prometheus text at /metrics), and the operations page.
    public static WebApplicationBuilder AddOperability(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<BalanceMetrics>();
        services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(BalanceMetrics.MeterName).AddPrometheusExporter());
        services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: ["ready"]);
        services.AddOps(); // the operations page's numbers, from the meter above
        return builder;
    }

    public static WebApplication MapOperability(this WebApplication app)
    {
        app.Services.GetRequiredService<BalanceMetrics>(); // its instruments exist from the start, not from the first scrape
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") });
        app.MapPrometheusScrapingEndpoint("/metrics").RequireAuthorization("metrics");
        app.MapOpsApi();
        return app;
    }
}
