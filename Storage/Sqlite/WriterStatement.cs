using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Balance.Storage.Sqlite;

// One of the writer's hot statements, prepared once on its connection (SQLITE_PREPARE_PERSISTENT) and driven through
// SQLite's C API: parameters bound by position, one step, a reset. Microsoft.Data.Sqlite's SqliteCommand looks every
// parameter up by name and builds a data reader on each execution, which cost the writer more CPU per posting than
// SQLite's own insert (BENCHMARKS.md, "The writer's CPU"). Errors surface as the SqliteException SqliteCommand throws,
// with the same codes, so the rules that read them (a constraint, a value refused) do not change.
internal sealed class WriterStatement : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly sqlite3_stmt _stmt;

    public WriterStatement(SqliteConnection connection, string sql)
    {
        _connection = connection;
        int rc = raw.sqlite3_prepare_v3(connection.Handle, sql, raw.SQLITE_PREPARE_PERSISTENT, out _stmt, out string tail);
        SqliteException.ThrowExceptionForRC(rc, connection.Handle);
        if (!string.IsNullOrWhiteSpace(tail)) throw new ArgumentException("One statement only.", nameof(sql));
    }

    // Positions count from 1, as in SQLite.
    public WriterStatement Bind(int position, long value) => Check(raw.sqlite3_bind_int64(_stmt, position, value));
    public WriterStatement Bind(int position, long? value) => value is { } v ? Bind(position, v) : Check(raw.sqlite3_bind_null(_stmt, position));
    public WriterStatement Bind(int position, ReadOnlySpan<byte> value) => Check(raw.sqlite3_bind_blob(_stmt, position, value));
    public WriterStatement Bind(int position, string? value) => value is null ? Check(raw.sqlite3_bind_null(_stmt, position)) : Check(raw.sqlite3_bind_text(_stmt, position, value));

    /// Runs a statement that returns no rows.
    public void Execute()
    {
        try
        {
            int rc = raw.sqlite3_step(_stmt);
            if (rc != raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(rc & 0xFF, _connection.Handle); // the primary code, as SqliteCommand reports it
        }
        finally
        {
            raw.sqlite3_reset(_stmt);
            raw.sqlite3_clear_bindings(_stmt);
        }
    }

    private WriterStatement Check(int rc)
    {
        if (rc != raw.SQLITE_OK)
        {
            raw.sqlite3_clear_bindings(_stmt);
            SqliteException.ThrowExceptionForRC(rc & 0xFF, _connection.Handle);
        }
        return this;
    }

    public void Dispose() => _stmt.Dispose();
}
