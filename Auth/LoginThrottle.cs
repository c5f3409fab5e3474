using System.Threading.RateLimiting;

namespace Balance.Auth;

// Login throttles on the framework's partitioned rate limiters: attempts per client address (a window of a minute),
// and failed logins per username (a window of FailedLoginWindow that counts failures only, alike for real and unknown
// names). The limiter creates a partition on first use and drops it once idle: nothing on the login path scans them.
// Per node: with several nodes behind a balancer, each node counts its own (the README says so).
public sealed class LoginThrottle : IDisposable
{
    private readonly PartitionedRateLimiter<string> _attempts;
    private readonly PartitionedRateLimiter<string> _failures;

    public LoginThrottle(AuthOptions options)
    {
        _attempts = Windows(options.LoginAttemptsPerMinutePerIp, TimeSpan.FromMinutes(1));
        _failures = Windows(options.FailedLoginsPerUsername, options.FailedLoginWindow);
    }

    private static PartitionedRateLimiter<string> Windows(int limit, TimeSpan window) =>
        PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = limit,
            Window = window,
            QueueLimit = 0,
            AutoReplenishment = false, // the partitioned limiter's one timer replenishes every partition
        }));

    /// Counts an attempt from this address; the wait when it is over the limit.
    public TimeSpan? CheckAttempt(string ip) => WaitOf(_attempts.AttemptAcquire(ip));

    /// Counts nothing: whether this username may try a password now.
    public TimeSpan? CheckUsername(string username) => WaitOf(_failures.AttemptAcquire(Key(username), 0));

    public void Failed(string username) => _failures.AttemptAcquire(Key(username)).Dispose();

    private static string Key(string username) => username.ToUpperInvariant(); // usernames are case-insensitive

    private static TimeSpan? WaitOf(RateLimitLease lease)
    {
        using (lease)
            return lease.IsAcquired ? null : lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromMinutes(1);
    }

    public void Dispose()
    {
        _attempts.Dispose();
        _failures.Dispose();
    }
}
