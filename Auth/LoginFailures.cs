using Microsoft.Extensions.Options;
using System.Collections.Concurrent;

namespace Balance.Auth;

/// A count of failed logins under one key (LoginThrottle's keys: a username at an address, an address, a username).
public readonly record struct FailureCount(int Failures, DateTimeOffset LastFailedAt);

// Where failed logins are counted. On one node, in memory (this class); nodes that share a PostgreSQL database count
// them there (Storage/Postgres/PostgresLoginFailures.cs), so spreading guesses over nodes buys an attacker nothing.
// A count is forgotten once LoginThrottle.ForgetAfter has passed since its last failure.
public interface ILoginFailures
{
    /// The live counts of these keys, in order (null: nothing counted, or forgotten). Counts nothing.
    ValueTask<FailureCount?[]> ReadAsync(IReadOnlyList<(string Key, int Limit)> keys);
    /// One more failure under each key.
    ValueTask FailedAsync(IReadOnlyList<(string Key, int Limit)> keys);
    ValueTask ClearAsync(string key);
}

public sealed class MemoryLoginFailures(IOptions<AuthOptions> options, TimeProvider time) : ILoginFailures
{
    private sealed record Count(int Failures, DateTimeOffset Last, int Limit);
    private readonly ConcurrentDictionary<string, Count> _counts = new(StringComparer.Ordinal);
    private long _writes;

    public ValueTask<FailureCount?[]> ReadAsync(IReadOnlyList<(string Key, int Limit)> keys)
    {
        var now = time.GetUtcNow();
        var found = new FailureCount?[keys.Count];
        for (int i = 0; i < keys.Count; i++)
            if (_counts.TryGetValue(keys[i].Key, out var c) && !Forgotten(c, now))
                found[i] = new FailureCount(c.Failures, c.Last);
        return ValueTask.FromResult(found);
    }

    public ValueTask FailedAsync(IReadOnlyList<(string Key, int Limit)> keys)
    {
        var now = time.GetUtcNow();
        foreach (var (key, limit) in keys)
            _counts.AddOrUpdate(key, static (_, a) => new Count(1, a.now, a.limit),
                (_, c, a) => Forgotten(c, a.now) ? new Count(1, a.now, a.limit) : new Count(c.Failures + 1, a.now, a.limit), (now, limit));
        // Counts are made by anyone who can send a login: forgotten ones go now and then, so the table stays bounded.
        if (Interlocked.Increment(ref _writes) % 1_000 == 0)
            foreach (var (key, c) in _counts)
                if (Forgotten(c, now)) _counts.TryRemove(new KeyValuePair<string, Count>(key, c));
        return ValueTask.CompletedTask;
    }

    public ValueTask ClearAsync(string key)
    {
        _counts.TryRemove(key, out _);
        return ValueTask.CompletedTask;
    }

    public int Keys => _counts.Count;

    private bool Forgotten(Count c, DateTimeOffset now) => now - c.Last > LoginThrottle.ForgetAfter(c.Failures, c.Limit, options.Value.FailedLoginWindow);
}
