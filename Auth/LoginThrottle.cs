using Microsoft.Extensions.Options;
using static Balance.Api.RetryAfter;
using System.Collections.Concurrent;
using System.Threading.RateLimiting;

namespace Balance.Auth;

// Who may try a password, and who may refresh. Every per-address rule counts by ClientAddress.Key (an IPv6 /64 is one
// address), every per-username rule by the username's normal form (Users.Normalize).
//
// Logins (no lockout a stranger can trigger):
// - attempts per address, a window of a minute (Auth:LoginAttemptsPerMinutePerIp), counted before anything else;
// - failures per (username, address): Auth:FailedLoginsPerUsername within Auth:FailedLoginWindow, then that address
//   waits before it may try that username again, even with the right password — the wait doubles with each further
//   failure (backoff, up to 32 windows). The real user at another address is not affected;
// - failures per address, any usernames (Auth:FailedLoginsPerAddress), with the same backoff: one address spraying
//   many usernames;
// - failures per username from everywhere: past Auth:FailedLoginsPerUsernameEverywhere, the password of that username
//   is checked at most Auth:SlowedLoginsPerSecond times a second from addresses it has not logged in from on this node
//   (429, Retry-After 1). Guessing one account from many addresses is slowed to that rate; nobody is locked out.
// Refreshes: per address (a window of a minute) and per login (a token bucket of that rate, a burst of three).
public sealed class LoginThrottle(IOptions<AuthOptions> options, ILoginFailures failures, TimeProvider time) : IDisposable
{
    private readonly PartitionedRateLimiter<string> _attempts = Windows(options.Value.LoginAttemptsPerMinutePerIp, TimeSpan.FromMinutes(1));
    private readonly PartitionedRateLimiter<string> _refreshesPerIp = Windows(options.Value.RefreshesPerMinutePerIp, TimeSpan.FromMinutes(1));
    // A token bucket, not a window: a window lets every login of an attacker spend its whole minute at once, and those
    // writes arriving together are what holds the ledger's writer back (bench/attack.sh). Auth:RefreshBurstPerLogin (3)
    // at once at most, then the steady rate.
    private readonly PartitionedRateLimiter<string> _refreshesPerLogin = PartitionedRateLimiter.Create<string, string>(key =>
        RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = options.Value.RefreshBurstPerLogin,
            TokensPerPeriod = 1,
            ReplenishmentPeriod = TimeSpan.FromMinutes(1) / RefreshesPerLogin(options.Value),
            QueueLimit = 0,
            AutoReplenishment = false,
        }));
    private readonly PartitionedRateLimiter<string> _slowed = PartitionedRateLimiter.Create<string, string>(key =>
        RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = options.Value.SlowedLoginsPerSecond,
            TokensPerPeriod = options.Value.SlowedLoginsPerSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = false,
        }));
    // (username, address) pairs that logged in: they skip the slowed budget. Bounded: past the cap, start over.
    private const int KnownCapacity = 100_000;
    private readonly ConcurrentDictionary<string, DateTimeOffset> _known = new(StringComparer.Ordinal);

    internal static PartitionedRateLimiter<string> Windows(int limit, TimeSpan window) =>
        PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = limit,
            Window = window,
            QueueLimit = 0,
            AutoReplenishment = false, // the partitioned limiter's one timer replenishes every partition
        }));

    /// An honest client refreshes about once per access token: with short tokens (minutes, or seconds in tests) the
    /// limit is four times that rate when it is more than Auth:RefreshesPerMinutePerLogin.
    public static int RefreshesPerLogin(AuthOptions options) =>
        Math.Max(options.RefreshesPerMinutePerLogin, (int)Math.Ceiling(4 * 60 / Math.Max(1, options.AccessTokenLifetime.TotalSeconds)));

    /// How long a key with this many failures is held (zero below its limit): a window, doubling per further failure.
    public static TimeSpan Hold(int failures, int limit, TimeSpan window) =>
        failures < limit ? TimeSpan.Zero : window * Math.Pow(2, Math.Min(failures - limit, 5));

    /// When a count is forgotten after its last failure: a window below the limit; past it, longer than the hold, so
    /// the backoff carries over to the next failure. PostgresLoginFailures computes the same in SQL.
    public static TimeSpan ForgetAfter(int failures, int limit, TimeSpan window) =>
        window * Math.Pow(2, Math.Clamp(failures - limit + 1, 0, 6));

    public static string PairKey(string username, string address) => $"p:{username}|{address}";
    public static string AddressKey(string address) => $"a:{address}";
    public static string UsernameKey(string username) => $"u:{username}";

    /// Counts an attempt from this address; the wait when it is over the limit.
    public TimeSpan? CheckAttempt(string address) => WaitOf(_attempts.AttemptAcquire(address));

    private (string, int)[] Keys(string username, string address) =>
        [(PairKey(username, address), options.Value.FailedLoginsPerUsername), (AddressKey(address), options.Value.FailedLoginsPerAddress),
         (UsernameKey(username), options.Value.FailedLoginsPerUsernameEverywhere)];

    /// Whether this address may try a password for this username now (null), or how long it must wait.
    public async ValueTask<TimeSpan?> CheckAsync(string username, string address)
    {
        var keys = Keys(username, address);
        var counts = await failures.ReadAsync(keys);
        var now = time.GetUtcNow();
        TimeSpan wait = TimeSpan.Zero;
        for (int i = 0; i < 2; i++)
            if (counts[i] is { } c)
            {
                var left = c.LastFailedAt + Hold(c.Failures, keys[i].Item2, options.Value.FailedLoginWindow) - now;
                if (left > wait) wait = left;
            }
        if (wait > TimeSpan.Zero) return wait;
        if (counts[2] is { } everywhere && everywhere.Failures >= options.Value.FailedLoginsPerUsernameEverywhere
            && !_known.ContainsKey(PairKey(username, address)))
            return WaitOf(_slowed.AttemptAcquire(username));
        return null;
    }

    public ValueTask FailedAsync(string username, string address) => failures.FailedAsync(Keys(username, address));

    /// A name that cannot exist (not a username's normal form): counted against the address alone.
    public ValueTask FailedAsync(string address) => failures.FailedAsync([(AddressKey(address), options.Value.FailedLoginsPerAddress)]);

    public async ValueTask SucceededAsync(string username, string address)
    {
        string pair = PairKey(username, address);
        if (_known.Count >= KnownCapacity) _known.Clear();
        _known[pair] = time.GetUtcNow();
        await failures.ClearAsync(pair);
    }

    /// Counts a refresh from this address; the wait when it is over the limit.
    public TimeSpan? CheckRefresh(string address) => WaitOf(_refreshesPerIp.AttemptAcquire(address));

    /// Counts a refresh of this login; the wait when it is over the limit.
    public TimeSpan? CheckRefreshOfLogin(string sessionId) => WaitOf(_refreshesPerLogin.AttemptAcquire(sessionId));

    public void Dispose()
    {
        _attempts.Dispose();
        _refreshesPerIp.Dispose();
        _refreshesPerLogin.Dispose();
        _slowed.Dispose();
    }
}
