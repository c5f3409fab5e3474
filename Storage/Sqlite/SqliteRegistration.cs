using Balance.Postings;
using Dapper;

namespace Balance.Storage.Sqlite;

public static class SqliteRegistration
{
    // The SQLite file, its schema, and its background checkpoints.
    public static IServiceCollection AddSqliteStorage(this IServiceCollection services)
    {
        SqlMapper.RemoveTypeMap(typeof(Guid));
        SqlMapper.AddTypeHandler(new GuidHandler());
        services.AddOptions<SqliteOptions>().BindConfiguration("Balance").ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<Database>();
        services.AddSingleton<Checkpointer>();
        services.AddHostedService(sp => sp.GetRequiredService<Checkpointer>());
        services.AddSingleton<ILedgerStore, SqliteLedgerStore>();
        return services;
    }

    /// Creates or upgrades the schema before the first request.
    public static Task InitializeStorageAsync(this WebApplication app) => app.Services.GetRequiredService<Database>().InitializeAsync();
}
