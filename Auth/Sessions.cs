using System.Collections.Concurrent;
using Balance.Storage;
using Dapper;

namespace Balance.Auth;

// Login sessions. Revocation is checked on every request and socket, so it is kept in memory
// (loaded at start) and announced to whoever holds open sockets of that session.
public sealed class Sessions(IDatabase db, AuthOptions options, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, byte> _revoked = new(StringComparer.Ordinal);
    public event Action<string>? Revoked;

    public bool IsRevoked(string? sessionId) => sessionId is null || _revoked.ContainsKey(sessionId);

    // Every ended login whose newest access token could still pass validation (its expiry, plus the clock skew).
    public async Task LoadAsync()
    {
        await using var connection = await db.OpenAsync();
        foreach (string id in await connection.QueryAsync<string>(
                     "SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND access_expires_at > @cutoff",
                     new { cutoff = Logins.Stamp((time.GetUtcNow() - options.ClockSkew).UtcDateTime) }))
            _revoked.TryAdd(id, 0);
    }

    public void MarkRevoked(string sessionId)
    {
        if (!_revoked.TryAdd(sessionId, 0)) return;
        Interlocked.MemoryBarrier(); // pairs with the socket's exchange of its session: one of the two sees the other
        Revoked?.Invoke(sessionId);
    }
}
