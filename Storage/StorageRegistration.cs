using Balance.Storage.Postgres;
using Balance.Storage.Sqlite;

namespace Balance.Storage;

public static class StorageRegistration
{
    // Balance:Store picks the engine: Sqlite (the default, one node, nothing to set up) or Postgres (N nodes on one
    // database). ConnectionStrings:Balance is that engine's connection string.
    public static WebApplicationBuilder AddStorage(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ConnectionStrings>().BindConfiguration(ConnectionStrings.Section);
        builder.Services.AddOptions<NodeOptions>().BindConfiguration(NodeOptions.Section).PostConfigure(NodeOptions.Complete).ValidateDataAnnotations().ValidateOnStart();
        if (NodeOptions.Read(builder.Configuration).IsPostgres) builder.Services.AddPostgresStorage();
        else builder.Services.AddSqliteStorage();
        return builder;
    }

    /// Creates or upgrades the schema before the first request.
    public static Task InitializeStorageAsync(this WebApplication app) => app.Services.GetRequiredService<IDatabase>().InitializeAsync();
}
