using System.Data.Common;

namespace Balance.Storage;

// What the rest of the service needs of the database beyond the ledger's store: a connection for auth and the
// health check, the schema, the Development signing key, and the few things the two engines do differently.
// One implementation per engine: Storage/Sqlite, Storage/Postgres.
public interface IDatabase
{
    /// Creates the schema when missing and upgrades an older one; refuses a database made by a newer build.
    Task InitializeAsync(CancellationToken ct = default);

    Task<DbConnection> OpenAsync(CancellationToken ct = default);

    /// Locks the row of `table` whose `keyColumn` is `key` until the transaction ends — shared, or exclusive — so that
    /// two writers of one row serialize. Nothing to do where opening a write transaction already serializes every
    /// writer (SQLite's BEGIN IMMEDIATE). Table and column are the caller's constants, never input.
    Task LockRowAsync(DbTransaction tx, string table, string keyColumn, object key, bool exclusive);

    /// Null when the database answers a query and would take a write now; otherwise why not, in a few words (readiness,
    /// /readyz). `writerIsCommitting`: the ledger writer committed within the last seconds, which proves the write
    /// lock can be had. Throws a DbException or TimeoutException when the database cannot be reached at all.
    Task<string?> WhyNotWritableAsync(bool writerIsCommitting, CancellationToken ct = default);

    /// Development only: a signing key generated once and kept where every node of this database finds it.
    Task<byte[]> DevelopmentSigningKeyAsync(CancellationToken ct = default);
}
