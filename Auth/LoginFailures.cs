using System.Threading.RateLimiting;

namespace Balance.Auth;

// Failed logins per username within Auth:FailedLoginWindow, alike for real and unknown names. On one node they are
// counted in memory (this class); nodes that share a PostgreSQL database count them there (Storage/Postgres), so
// spreading guesses over nodes buys an attacker nothing.
public interface ILoginFailures
{
    /// Counts nothing: how long this username must wait before it may try a password, or null when it may now.
    ValueTask<TimeSpan?> WaitAsync(string username);
    ValueTask FailedAsync(string username);
}

// The framework's partitioned limiter: a partition is made on first use and dropped once idle, so nothing on the
// login path scans them.
public sealed class MemoryLoginFailures(AuthOptions options) : ILoginFailures, IDisposable
{
    private readonly PartitionedRateLimiter<string> _failures = LoginThrottle.Windows(options.FailedLoginsPerUsername, options.FailedLoginWindow);

    public ValueTask<TimeSpan?> WaitAsync(string username) => ValueTask.FromResult(LoginThrottle.WaitOf(_failures.AttemptAcquire(Key(username), 0)));

    public ValueTask FailedAsync(string username)
    {
        _failures.AttemptAcquire(Key(username)).Dispose();
        return ValueTask.CompletedTask;
    }

    public static string Key(string username) => username.ToUpperInvariant(); // usernames are case-insensitive

    public void Dispose() => _failures.Dispose();
}
