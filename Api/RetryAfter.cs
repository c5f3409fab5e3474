using System.Globalization;

namespace Balance.Api;

// How long a client is told to wait (Retry-After, and the texts that repeat it): whole seconds, rounded up, at least one.
public static class RetryAfter
{
    public static int Seconds(TimeSpan wait) => Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));

    /// Sets the Retry-After header to the wait in whole seconds, and returns them (for the detail text).
    public static int Set(HttpResponse response, TimeSpan wait)
    {
        int seconds = Seconds(wait);
        response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return seconds;
    }
}
