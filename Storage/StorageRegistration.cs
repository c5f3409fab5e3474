using Balance.Storage.Postgres;
using Balance.Storage.Sqlite;

namespace Balance.Storage;

public static class StorageRegistration
{
    // Balance:Store picks the engine: Sqlite (the default, one node, nothing to set up) or Postgres (N nodes on one
    // database). ConnectionStrings:Balance is that engine's connection string.
    public static WebApplicationBuilder AddStorage(this WebApplicationBuilder builder)
    {
        string store = builder.Configuration["Balance:Store"] is { Length: > 0 } s ? s : "Sqlite";
        if (store.Equals("Sqlite", StringComparison.OrdinalIgnoreCase)) builder.Services.AddSqliteStorage();
        else if (store.Equals("Postgres", StringComparison.OrdinalIgnoreCase)) builder.Services.AddPostgresStorage();
        else throw new InvalidOperationException($"Balance:Store must be Sqlite or Postgres, not '{store}'.");
        return builder;
    }

    /// Creates or upgrades the schema before the first request.
    public static Task InitializeStorageAsync(this WebApplication app) => app.Services.GetRequiredService<IDatabase>().InitializeAsync();
}
