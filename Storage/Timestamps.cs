using System.Globalization;

namespace Balance.Storage;

// The one format every stored and answered time has, in both engines: UTC ISO-8601 with milliseconds. Fixed width, so
// stored times compare correctly as text.
public static class Timestamps
{
    public static string Format(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    /// A stored time back as a UTC DateTime (any ISO-8601 form; one without a zone is taken as UTC).
    public static DateTime Parse(string stored) =>
        DateTime.Parse(stored, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal);
}
