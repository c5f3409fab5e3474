using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance.Storage.Sqlite;

// Whether the SQLite file would take a write now (readiness, IDatabase.WhyNotWritableAsync): the disk holding it has
// room, its mount is not read-only, it answers a query, and the write lock can be had — proven by the ledger writer's
// own recent commit, or else by taking the lock on a fresh connection (which also sees a file or mount turned
// read-only, as the writer's next connection would).
internal static class SqliteReadiness
{
    // Less than this free on the database's file system is a full disk: a batch's WAL frames would not fit.
    public const long MinFreeBytes = 1024 * 1024;
    // How long a fresh connection waits for the write lock: the writer holds it for milliseconds per batch.
    private const int LockWaitMs = 1000;

    public static async Task<string?> WhyNotWritableAsync(SqliteDatabase db, bool writerIsCommitting, CancellationToken ct)
    {
        if (Volatile.Read(ref db.DurabilityLost) is { } lost) return lost;
        try
        {
            if (FreeBytes(db.FilePath) is { } free && free < MinFreeBytes)
                return $"the disk holding the database is full ({free} bytes free)";
            // Read from the mount table, not by opening the file: closing any descriptor of the database drops every
            // lock SQLite holds on it in this process, and SQLite's own fresh connection may reuse a descriptor
            // opened before the file system turned read-only.
            if (MountOptions(db.FilePath) is { } options && options.Split(',').Contains("ro"))
                return "the file system holding the database is read-only";
            await using (var connection = await db.OpenAsync(ct))
                await connection.ExecuteScalarAsync<long>(new CommandDefinition("SELECT count(*) FROM users LIMIT 1", cancellationToken: ct));
            if (!writerIsCommitting) await TakeWriteLockAsync(db, ct);
            return null;
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 5 or 6) // SQLITE_BUSY, SQLITE_LOCKED
        {
            return "the database is write-locked by another connection";
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 8) // SQLITE_READONLY
        {
            return "the database is read-only";
        }
    }

    // A connection of its own, not pooled: it must open the file as it is now (a pooled one opened read-write before
    // the file turned read-only would still write), and wait for the lock briefly.
    private static async Task TakeWriteLockAsync(SqliteDatabase db, CancellationToken ct)
    {
        var builder = new SqliteConnectionStringBuilder(db.ConnectionString) { Pooling = false, DefaultTimeout = 1 };
        await using var connection = new SqliteConnection(builder.ToString());
        await connection.OpenAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition($"PRAGMA busy_timeout = {LockWaitMs}", cancellationToken: ct));
        await connection.ExecuteAsync(new CommandDefinition("BEGIN IMMEDIATE", cancellationToken: ct));
        await connection.ExecuteAsync(new CommandDefinition("ROLLBACK", cancellationToken: ct));
    }

    // The options of the mount that holds the path (Linux: /proc/self/mounts; the last of equal mount points is on top).
    private static string? MountOptions(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        string full = Path.GetFullPath(path);
        string? best = null, options = null;
        foreach (string line in File.ReadLines("/proc/self/mounts"))
        {
            var fields = line.Split(' ');
            if (fields.Length < 4) continue;
            string point = fields[1].Replace("\\040", " ").Replace("\\011", "\t").Replace("\\012", "\n").Replace("\\134", "\\");
            bool holds = point == "/" || full == point || full.StartsWith(point + "/", StringComparison.Ordinal);
            if (holds && (best is null || point.Length >= best.Length)) (best, options) = (point, fields[3]);
        }
        return options;
    }

    // The free space of the file system the database lives on: the mount point that holds the path most closely.
    private static long? FreeBytes(string path)
    {
        string full = Path.GetFullPath(path);
        DriveInfo? best = null;
        foreach (var drive in DriveInfo.GetDrives())
        {
            string root = drive.RootDirectory.FullName;
            bool holds = full.StartsWith(root.EndsWith('/') ? root : root + "/", StringComparison.Ordinal) || full == root;
            if (holds && (best is null || root.Length > best.RootDirectory.FullName.Length)) best = drive;
        }
        try { return best?.AvailableFreeSpace; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }
}
