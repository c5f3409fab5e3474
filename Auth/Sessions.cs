using Microsoft.Extensions.Options;
using System.Collections.Concurrent;
using System.Threading.Channels;
using Balance.Postings;
using Balance.Storage;
using Dapper;

namespace Balance.Auth;

// Login sessions. Revocation is checked on every request and socket, so it is kept in memory (loaded at start). A login
// ended here goes out on EndedHere, which the socket hub reads to close its sockets, and rings the other nodes' feeds;
// one ended on another node comes in through the change feed, which marks it here and hands it to the hub itself
// (IChangeFeed.EndedLogins). An ended login is remembered only while one of its access tokens could still pass
// validation; then Forget (the housekeeping job) drops it.
public sealed class Sessions(IDatabase db, IOptions<AuthOptions> options, TimeProvider time, IEnumerable<IDoorbell> doorbells)
{
    // Ended login → when its last access token stops passing validation (expiry plus the clock skew).
    private readonly ConcurrentDictionary<string, DateTimeOffset> _revoked = new(StringComparer.Ordinal);
    private readonly Channel<string> _endedHere = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    private readonly IDoorbell[] _doorbells = [.. doorbells];

    /// Logins ended on this node, each once, after they are marked ended: read by the socket hub (BalanceSocket),
    /// which closes their sockets.
    public ChannelReader<string> EndedHere => _endedHere.Reader;

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
                     new { cutoff = Timestamps.Format((time.GetUtcNow() - options.Value.ClockSkew).UtcDateTime) }))
            _revoked.TryAdd(id, new DateTimeOffset(Timestamps.Parse(accessExpires)) + options.Value.ClockSkew);
    }

    /// Ends the session's tokens on this node. `here` (the default): this node ended it, so it goes out on EndedHere
    /// and the other nodes' feeds are rung; false: another node ended it, and the change feed that learned of it
    /// hands it to the hub. True when it was not known as ended before.
    public bool MarkRevoked(string sessionId, bool here = true)
    {
        // Every access token of the login was issued by now, so none outlives now + its lifetime (+ the skew).
        if (!_revoked.TryAdd(sessionId, time.GetUtcNow() + options.Value.AccessTokenLifetime + options.Value.ClockSkew)) return false;
        // Pairs with the socket's exchange of its session: either the socket's check sees this login ended, or the hub
        // (which reads the id only after this point) sees the socket's session and closes it.
        Interlocked.MemoryBarrier();
        if (here)
        {
            _endedHere.Writer.TryWrite(sessionId);
            foreach (var doorbell in _doorbells) doorbell.Ring(); // its sockets on every node close now, not at the next poll
        }
        return true;
    }
}
