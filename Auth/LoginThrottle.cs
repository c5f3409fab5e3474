using System.Threading.RateLimiting;

namespace Balance.Auth;

// Login throttles: attempts per client address (a window of a minute, on the framework's partitioned rate limiter),
// and failed logins per username (ILoginFailures). The per-address window is per node: with several nodes behind a
// balancer each counts its own (the README says so); the per-username one holds across nodes on PostgreSQL.
public sealed class LoginThrottle(AuthOptions options, ILoginFailures failures) : IDisposable
{
    private readonly PartitionedRateLimiter<string> _attempts = Windows(options.LoginAttemptsPerMinutePerIp, TimeSpan.FromMinutes(1));

    internal static PartitionedRateLimiter<string> Windows(int limit, TimeSpan window) =>
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
    public ValueTask<TimeSpan?> CheckUsernameAsync(string username) => failures.WaitAsync(username);

    public ValueTask FailedAsync(string username) => failures.FailedAsync(username);

    internal static TimeSpan? WaitOf(RateLimitLease lease)
    {
        using (lease)
            return lease.IsAcquired ? null : lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromMinutes(1);
    }

    public void Dispose() => _attempts.Dispose();
}
