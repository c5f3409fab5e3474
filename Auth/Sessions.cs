using System.Collections.Concurrent;
using Balance.Postings;
using Balance.Storage;
using Dapper;

namespace Balance.Auth;

// Login sessions. Revocation is checked on every request and socket, so it is kept in memory
// (loaded at start) and announced to whoever holds open sockets of that session. An ended login is remembered only
// while one of its access tokens could still pass validation; then Forget (the housekeeping job) drops it.
public sealed class Sessions(IDatabase db, AuthOptions options, TimeProvider time)
{
    // Ended login → when its last access token stops passing validation (expiry plus the clock skew).
    private readonly ConcurrentDictionary<string, DateTimeOffset> _revoked = new(StringComparer.Ordinal);
    public event Action<string>? Revoked;

    public bool IsRevoked(string? sessionId) => sessionId is null || _revoked.ContainsKey(sessionId);

    public int Remembered => _revoked.Count;

    /// Drops ended logins none of whose access tokens can pass validation any more. Returns how many.
    public int Forget()
    {
        var now = time.GetUtcNow();
        int dropped = 0;
        foreach (var (id, until) in _revoked)
            if (until < now && _revoked.TryRemove(new KeyValuePair<string, DateTimeOffset>(id, until))) dropped++;
        return dropped;
    }

    // Every ended login whose newest access token could still pass validation (its expiry, plus the clock skew).
    public async Task LoadAsync()
    {
        await using var connection = await db.OpenAsync();
        foreach (var (id, accessExpires) in await connection.QueryAsync<(string, string)>(
                     "SELECT id, access_expires_at FROM sessions WHERE revoked_at IS NOT NULL AND access_expires_at > @cutoff",
                     new { cutoff = Timestamps.Format((time.GetUtcNow() - options.ClockSkew).UtcDateTime) }))
            _revoked.TryAdd(id, new DateTimeOffset(DateTime.Parse(accessExpires, System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal)) + options.ClockSkew);
    }

    /// Ends the session's tokens and sockets on this node; `here` is false when another node ended it (the change
    /// feed). True when it was not known as ended before.
    public bool MarkRevoked(string sessionId, bool here = true)
    {
        // Every access token of the login was issued by now, so none outlives now + its lifetime (+ the skew).
        if (!_revoked.TryAdd(sessionId, time.GetUtcNow() + options.AccessTokenLifetime + options.ClockSkew)) return false;
        Interlocked.MemoryBarrier(); // pairs with the socket's exchange of its session: one of the two sees the other
        Revoked?.Invoke(sessionId);
        if (here) EndedHere?.Invoke(sessionId);
        return true;
    }

    /// Ended by this node, not learned from another: what the other nodes must be told of.
    public event Action<string>? EndedHere;
}
