using Balance.Postings;

namespace Balance.Storage.Sqlite;

public static class SqliteRegistration
{
    // The SQLite file, its schema, the ledger's store on it, and its background checkpoints.
    public static IServiceCollection AddSqliteStorage(this IServiceCollection services)
    {
        GuidHandler.Register(); // GUIDs are TEXT in SQLite
        services.AddOptions<SqliteOptions>().BindConfiguration(NodeOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SqliteDatabase>();
        services.AddSingleton<IDatabase>(sp => sp.GetRequiredService<SqliteDatabase>());
        services.AddSingleton<Checkpointer>();
        services.AddHostedService(sp => sp.GetRequiredService<Checkpointer>());
        services.AddSingleton<SqliteLedgerStore>();
        services.AddSingleton<ILedgerStore>(sp => sp.GetRequiredService<SqliteLedgerStore>());
        services.AddSingleton<IStorageInstruments, SqliteInstruments>();
        return services;
    }
}
