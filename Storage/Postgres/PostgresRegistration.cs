using Balance.Auth;
using Balance.Postings;

namespace Balance.Storage.Postgres;

public static class PostgresRegistration
{
    // N nodes on one PostgreSQL database: its schema, the ledger's store, the change feed that brings every node's
    // commits and ended logins to this node's sockets, the doorbell that wakes the feeds, and failed-login counts
    // shared by all nodes.
    public static IServiceCollection AddPostgresStorage(this IServiceCollection services)
    {
        GuidHandler.Register(); // uuid in PostgreSQL; the handler also serves SQLite hosts of the same process
        services.AddSingleton<PostgresDatabase>();
        services.AddSingleton<IDatabase>(sp => sp.GetRequiredService<PostgresDatabase>());
        services.AddSingleton<Doorbell>();
        services.AddHostedService(sp => sp.GetRequiredService<Doorbell>());
        services.AddSingleton<IDoorbell>(sp => sp.GetRequiredService<Doorbell>()); // rung by Sessions for a login ended here
        services.AddSingleton<ILedgerStore, PostgresLedgerStore>();
        services.AddSingleton<ChangeFeed>();
        services.AddSingleton<IChangeFeed>(sp => sp.GetRequiredService<ChangeFeed>());
        services.AddHostedService(sp => sp.GetRequiredService<ChangeFeed>());
        services.AddSingleton<ILoginFailures, PostgresLoginFailures>();
        services.AddSingleton<IStorageInstruments, PostgresInstruments>();
        return services;
    }
}
