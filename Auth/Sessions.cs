using System.Collections.Concurrent;
using Balance.Postings;
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
                     new { cutoff = Timestamps.Format((time.GetUtcNow() - options.ClockSkew).UtcDateTime) }))
            _revoked.TryAdd(id, 0);
    }

    /// Ends the session's tokens and sockets on this node; `here` is false when another node ended it (the change
    /// feed). True when it was not known as ended before.
    public bool MarkRevoked(string sessionId, bool here = true)
    {
        if (!_revoked.TryAdd(sessionId, 0)) return false;
        Interlocked.MemoryBarrier(); // pairs with the socket's exchange of its session: one of the two sees the other
        Revoked?.Invoke(sessionId);
        if (here) EndedHere?.Invoke(sessionId);
        return true;
    }

    /// Ended by this node, not learned from another: what the other nodes must be told of.
    public event Action<string>? EndedHere;
}
