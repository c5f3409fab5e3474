using Microsoft.Extensions.Options;
using Balance.Auth;
using Dapper;

namespace Balance.Storage.Postgres;

// Failed logins in the shared database, for every node at once (LoginThrottle's keys: a username at an address, an
// address, a username). login_failures keeps, per key, the count and the time of the last failure
// (window_started_at: the column's old name); a count is forgotten after LoginThrottle.ForgetAfter, computed here
// in SQL. Forgotten rows are deleted now and then by the node that next fails.
public sealed class PostgresLoginFailures(PostgresDatabase db, IOptions<AuthOptions> options, TimeProvider time) : ILoginFailures
{
    private long _writes;

    public async ValueTask<FailureCount?[]> ReadAsync(IReadOnlyList<(string Key, int Limit)> keys)
    {
        await using var c = await db.DataSource.OpenConnectionAsync();
        var rows = (await c.QueryAsync<(string Key, DateTime Last, int Failures)>(
            "SELECT username_key, window_started_at, failures FROM login_failures WHERE username_key = ANY(@keys)",
            new { keys = keys.Select(k => k.Key).ToArray() })).ToDictionary(r => r.Key);
        var now = time.GetUtcNow();
        var found = new FailureCount?[keys.Count];
        for (int i = 0; i < keys.Count; i++)
            if (rows.TryGetValue(keys[i].Key, out var r))
            {
                var last = new DateTimeOffset(DateTime.SpecifyKind(r.Last, DateTimeKind.Utc));
                if (now - last <= LoginThrottle.ForgetAfter(r.Failures, keys[i].Limit, options.Value.FailedLoginWindow))
                    found[i] = new FailureCount(r.Failures, last);
            }
        return found;
    }

    public async ValueTask FailedAsync(IReadOnlyList<(string Key, int Limit)> keys)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var c = await db.DataSource.OpenConnectionAsync();
        // As LoginThrottle.ForgetAfter: a window, doubled per failure past the limit (at most 64 windows).
        await c.ExecuteAsync("""
            INSERT INTO login_failures AS f (username_key, window_started_at, failures) VALUES (@Key, @now, 1)
            ON CONFLICT (username_key) DO UPDATE SET
                failures = CASE WHEN f.window_started_at < @now - @window * power(2, least(6, greatest(0, f.failures - @Limit + 1)))
                                THEN 1 ELSE f.failures + 1 END,
                window_started_at = @now
            """, keys.Select(k => new { k.Key, k.Limit, now, window = options.Value.FailedLoginWindow }));
        if (Interlocked.Increment(ref _writes) % 1_000 == 0)
            await c.ExecuteAsync("DELETE FROM login_failures WHERE window_started_at < @oldest", new { oldest = now - options.Value.FailedLoginWindow * 64 });
    }

    public async ValueTask ClearAsync(string key)
    {
        await using var c = await db.DataSource.OpenConnectionAsync();
        await c.ExecuteAsync("DELETE FROM login_failures WHERE username_key = @key", new { key });
    }
}
