using System.Globalization;
using System.Threading.RateLimiting;

namespace Balance.Api;

// How long a client is told to wait (Retry-After, and the texts that repeat it): whole seconds, rounded up, at least one.
public static class RetryAfter
{
    /// Null when the rate limiter granted the lease; else the wait it names, or a second when it names none. Disposes it.
    public static TimeSpan? WaitOf(RateLimitLease lease)
    {
        using (lease)
            return lease.IsAcquired ? null
                : lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) && wait > TimeSpan.Zero ? wait : TimeSpan.FromSeconds(1);
    }

    public static int Seconds(TimeSpan wait) => Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));

    /// Sets the Retry-After header to the wait in whole seconds, and returns them (for the detail text).
    public static int Set(HttpResponse response, TimeSpan wait)
    {
        int seconds = Seconds(wait);
        response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return seconds;
    }
}
