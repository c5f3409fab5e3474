using System.Globalization;

namespace Balance.Bench;

// The service's own commit → socket figure: its `balance.push.delay` histogram (from the durable commit to the
// balance message written to the socket), scraped from /metrics before and after a phase. Prometheus buckets,
// so a percentile is reported as the upper bound of the bucket it falls in ("p99 ≤ 4 ms").
public sealed record PushDelay(double P50Ms, double P99Ms, double P999Ms, long Count)
{
    private const string Bucket = "balance_push_delay_milliseconds_bucket{";
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public static async Task<SortedDictionary<double, long>?> ScrapeAsync(string service)
    {
        try
        {
            string text = await Http.GetStringAsync(new Uri(new Uri(service), "/metrics"));
            var buckets = new SortedDictionary<double, long>();
            foreach (var line in text.Split('\n'))
            {
                if (!line.StartsWith(Bucket, StringComparison.Ordinal)) continue;
                int le = line.IndexOf("le=\"", StringComparison.Ordinal) + 4;
                string bound = line[le..line.IndexOf('"', le)];
                double upper = bound == "+Inf" ? double.PositiveInfinity : double.Parse(bound, CultureInfo.InvariantCulture);
                buckets[upper] = long.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
            return buckets;
        }
        catch (HttpRequestException) { return null; }
    }

    public static PushDelay? Between(SortedDictionary<double, long>? before, SortedDictionary<double, long>? after)
    {
        if (before is null || after is null || after.Count == 0) return null;
        var cumulative = after.Select(kv => (Upper: kv.Key, Count: kv.Value - before.GetValueOrDefault(kv.Key))).ToArray();
        long total = cumulative[^1].Count;
        if (total <= 0) return null;
        double At(double q) => cumulative.First(b => b.Count >= q * total).Upper;
        return new PushDelay(At(0.5), At(0.99), At(0.999), total);
    }

    public override string ToString() => $"≤{Show(P50Ms)} / ≤{Show(P99Ms)} / ≤{Show(P999Ms)}";
    private static string Show(double ms) => double.IsPositiveInfinity(ms) ? ">5000" : ms.ToString("0.##", CultureInfo.InvariantCulture);
}
