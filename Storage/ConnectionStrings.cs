namespace Balance.Storage;

// The standard ConnectionStrings section: ConnectionStrings:Balance is the engine's connection string (a SQLite file,
// or with Balance:Store=Postgres an Npgsql connection string). Bound by AddStorage; each engine checks its own form.
public sealed class ConnectionStrings
{
    public const string Section = "ConnectionStrings";

    public string? Balance { get; set; }
}
