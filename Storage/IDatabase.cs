using System.Data.Common;

namespace Balance.Storage;

// What the rest of the service needs of the database beyond the ledger's store: a connection for auth and the
// health check, the schema, the Development signing key, and the few places where the two engines' SQL differs.
// One implementation per engine: Storage/Sqlite, Storage/Postgres.
public interface IDatabase
{
    /// "sqlite" or "postgres", as the metrics and the operations page name it.
    string Engine { get; }

    /// Creates the schema when missing and upgrades an older one; refuses a database made by a newer build.
    Task InitializeAsync(CancellationToken ct = default);

    Task<DbConnection> OpenAsync(CancellationToken ct = default);

    /// Where a username is compared (usernames are case-insensitive), as a SQL condition on @username.
    string UsernameIs { get; }

    /// A statement that locks the refresh token @hash for this transaction, or null when opening the transaction
    /// already serializes writers (SQLite's BEGIN IMMEDIATE).
    string? LockRefreshToken { get; }

    /// Null when the database answers a query and would take a write now; otherwise why not, in a few words (readiness,
    /// /readyz). `writerIsCommitting`: the ledger writer committed within the last seconds, which proves the write
    /// lock can be had. Throws a DbException or TimeoutException when the database cannot be reached at all.
    Task<string?> WhyNotWritableAsync(bool writerIsCommitting, CancellationToken ct = default);

    /// Development only: a signing key generated once and kept where every node of this database finds it.
    Task<byte[]> DevelopmentSigningKeyAsync(CancellationToken ct = default);
}
