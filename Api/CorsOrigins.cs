namespace Balance.Api;

// Browser origins other than the service's own that may call the REST routes (CORS): Balance:Cors:AllowedOrigins,
// and when that is not set, the socket's list (Balance:Socket:AllowedOrigins), so a deployment that sets one list
// for its browser client gets both.
public sealed class CorsOrigins
{
    public const string Section = "Balance:Cors";

    /// Null: not configured; the socket's allowed origins apply.
    public string[]? AllowedOrigins { get; set; }

    // The one rule for a cross-origin browser page, shared by CORS and the socket's Origin check: a listed origin (any
    // case, a trailing slash ignored), and in Development any loopback one.
    public static bool Allows(IEnumerable<string> allowed, string origin, bool development) =>
        allowed.Any(o => string.Equals(o.TrimEnd('/'), origin.TrimEnd('/'), StringComparison.OrdinalIgnoreCase))
        || (development && Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.IsLoopback);
}
