using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;

namespace Balance.Sockets;

// Who may open a socket, before it costs anything: sockets not yet authenticated per address, how fast an address or
// a player opens sockets, and how many sockets a player holds at once (MaxSocketsPerPlayer). Opening one costs a token
// check and a database read (the snapshot), so a client reconnecting in a tight loop is slowed down first (token
// buckets: a burst, then a steady rate).
public sealed class SocketAdmission : IDisposable
{
    private readonly SocketOptions _options;
    private readonly SocketStats _stats;
    private readonly ConcurrentDictionary<string, int> _pendingByIp = new();
    private readonly ConcurrentDictionary<Guid, int> _placesByPlayer = new();
    private readonly PartitionedRateLimiter<string> _connectsByAddress;
    private readonly PartitionedRateLimiter<Guid> _connectsByPlayer;

    public SocketAdmission(IOptions<SocketOptions> options, SocketStats stats)
    {
        (_options, _stats) = (options.Value, stats);
        _connectsByAddress = ConnectLimiter<string>(_options.ConnectBurstPerAddress, _options.ConnectsPerSecondPerAddress);
        _connectsByPlayer = ConnectLimiter<Guid>(_options.ConnectBurstPerPlayer, _options.ConnectsPerSecondPerPlayer);
    }

    // One token bucket per key; the partitioned limiter replenishes them all from one timer and drops idle ones.
    private static PartitionedRateLimiter<TKey> ConnectLimiter<TKey>(int burst, double perSecond) where TKey : notnull =>
        PartitionedRateLimiter.Create<TKey, TKey>(key => RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = burst,
            TokensPerPeriod = Math.Max(1, (int)Math.Round(perSecond / 10)),
            ReplenishmentPeriod = TimeSpan.FromSeconds(Math.Max(1, (int)Math.Round(perSecond / 10)) / perSecond),
            QueueLimit = 0,
            AutoReplenishment = false,
        }));

    /// Null when this address may open a socket now; otherwise how long to wait.
    public TimeSpan? TryConnectFrom(string ip) => TryConnect(_connectsByAddress, ip);

    /// Null when this player may open a socket now; otherwise how long to wait.
    public TimeSpan? TryConnectAs(Guid player) => TryConnect(_connectsByPlayer, player);

    private TimeSpan? TryConnect<TKey>(PartitionedRateLimiter<TKey> limiter, TKey key) where TKey : notnull
    {
        var wait = Balance.Api.RetryAfter.WaitOf(limiter.AttemptAcquire(key));
        if (wait is not null) Interlocked.Increment(ref _stats.ConnectsLimited);
        return wait;
    }

    /// Counts a socket not yet authenticated from this address; false (and nothing counted) past the cap.
    public bool TryHoldUnauthenticated(string ip)
    {
        if (_pendingByIp.AddOrUpdate(ip, 1, (_, n) => n + 1) <= _options.MaxUnauthenticatedPerIp) return true;
        ReleaseUnauthenticated(ip);
        return false;
    }

    public void ReleaseUnauthenticated(string ip)
    {
        if (_pendingByIp.AddOrUpdate(ip, 0, (_, n) => n - 1) <= 0) _pendingByIp.TryRemove(new KeyValuePair<string, int>(ip, 0));
    }

    /// Takes one of the player's MaxSocketsPerPlayer places for an authenticated socket; false (nothing taken) when
    /// every place is taken. Exact under races: never more places than the cap, and no refusal while one is free.
    public bool TryTakePlace(Guid player)
    {
        while (true)
        {
            int held = _placesByPlayer.GetOrAdd(player, 0);
            if (held >= _options.MaxSocketsPerPlayer) return false;
            if (_placesByPlayer.TryUpdate(player, held + 1, held)) return true;
        }
    }

    /// Gives back a place taken by TryTakePlace (the socket closed).
    public void ReleasePlace(Guid player)
    {
        while (_placesByPlayer.TryGetValue(player, out int held))
            if (held <= 1 ? _placesByPlayer.TryRemove(new KeyValuePair<Guid, int>(player, held)) : _placesByPlayer.TryUpdate(player, held - 1, held)) return;
    }

    public void Dispose()
    {
        _connectsByAddress.Dispose();
        _connectsByPlayer.Dispose();
    }
}
