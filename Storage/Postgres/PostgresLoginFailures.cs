using Balance.Auth;
using Dapper;

namespace Balance.Storage.Postgres;

// Failed logins per username in the shared database: a fixed window of Auth:FailedLoginWindow that starts at the
// first failure, for every node at once. Windows that ended are deleted now and then by the node that next fails.
public sealed class PostgresLoginFailures(PostgresDatabase db, AuthOptions options, TimeProvider time) : ILoginFailures
{
    private long _writes;

    public async ValueTask<TimeSpan?> WaitAsync(string username)
    {
        await using var c = await db.DataSource.OpenConnectionAsync();
        var row = await c.QuerySingleOrDefaultAsync<(DateTime Started, int Failures)?>(
            "SELECT window_started_at, failures FROM login_failures WHERE username_key = @key", new { key = MemoryLoginFailures.Key(username) });
        if (row is not { } r || r.Failures < options.FailedLoginsPerUsername) return null;
        var ends = new DateTimeOffset(DateTime.SpecifyKind(r.Started, DateTimeKind.Utc)) + options.FailedLoginWindow;
        var wait = ends - time.GetUtcNow();
        return wait > TimeSpan.Zero ? wait : null;
    }

    public async ValueTask FailedAsync(string username)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var c = await db.DataSource.OpenConnectionAsync();
        await c.ExecuteAsync("""
            INSERT INTO login_failures AS f (username_key, window_started_at, failures) VALUES (@key, @now, 1)
            ON CONFLICT (username_key) DO UPDATE SET
                window_started_at = CASE WHEN f.window_started_at <= @expired THEN @now ELSE f.window_started_at END,
                failures = CASE WHEN f.window_started_at <= @expired THEN 1 ELSE f.failures + 1 END
            """, new { key = MemoryLoginFailures.Key(username), now, expired = now - options.FailedLoginWindow });
        if (Interlocked.Increment(ref _writes) % 1_000 == 0)
            await c.ExecuteAsync("DELETE FROM login_failures WHERE window_started_at <= @expired", new { expired = now - options.FailedLoginWindow });
    }
}
