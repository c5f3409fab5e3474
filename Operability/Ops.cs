using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using Balance.Auth;
using Balance.Sockets;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace Balance.Operability;

// One second of one node, as the operations page draws it. Rates are over the second before `at`;
// percentiles are of the push delays recorded in it (null when nothing was pushed).
public sealed record OpsSample(
    long At, long SocketsOpen, long SocketsAuthenticated, double PostingsPerSecond, double MessagesPerSecond,
    double? PushDelayP50Ms, double? PushDelayP99Ms, double? BatchSizeMean, int BatchSizeMax, long WalPages, long WalFileBytes, long Closes);

public sealed record OpsNode(
    string NodeId, string StartedAt, double UptimeSeconds, OpsSample? Current, long Postings, long MessagesSent, long MessagesCoalesced,
    long MessagesDropped, long SlowConsumerCloses, IReadOnlyDictionary<string, long> ClosesByCode, int PageSize, IReadOnlyList<OpsSample> Series);

// Several nodes on one database each answer for themselves; the list has room for all of them.
public sealed record OpsView(IReadOnlyList<OpsNode> Nodes, int IntervalMs, int WindowSeconds);

// The operations page's numbers: a listener on the service's own meter ("Balance", the same instruments
// /metrics exports), sampled once a second into the last ten minutes. Nothing here is counted separately.
public sealed class OpsMonitor : BackgroundService
{
    public const int WindowSeconds = 600;
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, double> _observed = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, long> _closes = new();
    private readonly LogHistogram _pushDelay = new();
    private long _batchCount, _batchSum, _batchMax;
    private readonly Queue<OpsSample> _series = new();
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly DateTimeOffset _started;

    public string NodeId { get; }

    public OpsMonitor(IOptions<NodeOptions> node, IMeterFactory meters, BalanceMetrics metrics, TimeProvider time)
    {
        _ = metrics; // its instruments are what this listens to: created first
        _time = time;
        _started = time.GetUtcNow();
        NodeId = node.Value.NodeId;
        // This host's meter only: another host in the same process (the tests run many) has a "Balance" meter too,
        // and its numbers are not this node's. A meter made by an IMeterFactory carries that factory as its scope.
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == BalanceMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, meters))
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => OnMeasurement(instrument, value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => OnMeasurement(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => OnMeasurement(instrument, value, tags));
        _listener.Start();
    }

    private void OnMeasurement(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        switch (instrument.Name)
        {
            case "balance.push.delay":
                _pushDelay.Record(value);
                break;
            case "balance.ledger.batch.size":
                long n = (long)value;
                Interlocked.Increment(ref _batchCount);
                Interlocked.Add(ref _batchSum, n);
                for (long max = Volatile.Read(ref _batchMax); n > max; max = Volatile.Read(ref _batchMax))
                    if (Interlocked.CompareExchange(ref _batchMax, n, max) == max) break;
                break;
            case "balance.sockets.closed":
                foreach (var tag in tags)
                    if (tag.Key == "code" && tag.Value is int code) _closes.AddOrUpdate(code, 1, (_, c) => c + 1);
                break;
            default:
                if (instrument.IsObservable) _observed[instrument.Name] = value;
                break;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(Interval, _time);
        var last = Read();
        var previous = _pushDelay.Snapshot();
        do
        {
            var now = Read();
            var buckets = _pushDelay.Snapshot();
            double seconds = Math.Max(0.001, (now.Ticks - last.Ticks) / (double)TimeSpan.TicksPerSecond);
            long batches = now.Batches - last.Batches;
            var sample = new OpsSample(
                At: _time.GetUtcNow().ToUnixTimeMilliseconds(),
                SocketsOpen: (long)now.Get("balance.sockets.open"),
                SocketsAuthenticated: (long)now.Get("balance.sockets.authenticated"),
                PostingsPerSecond: Math.Round((now.Get("balance.ledger.postings") - last.Get("balance.ledger.postings")) / seconds, 1),
                MessagesPerSecond: Math.Round((now.Get("balance.messages.sent") - last.Get("balance.messages.sent")) / seconds, 1),
                PushDelayP50Ms: LogHistogram.Percentile(previous, buckets, 0.50),
                PushDelayP99Ms: LogHistogram.Percentile(previous, buckets, 0.99),
                BatchSizeMean: batches > 0 ? Math.Round((now.BatchSum - last.BatchSum) / (double)batches, 1) : null,
                BatchSizeMax: (int)Interlocked.Exchange(ref _batchMax, 0),
                WalPages: (long)now.Get("balance.wal.pages"),
                WalFileBytes: (long)now.Get("balance.wal.file_bytes"), // 0 on PostgreSQL: its WAL is the server's, not a file of this node
                Closes: now.Closes - last.Closes);
            lock (_gate)
            {
                _series.Enqueue(sample);
                while (_series.Count > WindowSeconds) _series.Dequeue();
            }
            last = now;
            previous = buckets;
        } while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
    }

    private readonly record struct Reading(long Ticks, Dictionary<string, double> Values, long Batches, long BatchSum, long Closes)
    {
        public double Get(string name) => Values.GetValueOrDefault(name);
    }

    private Reading Read()
    {
        _listener.RecordObservableInstruments();
        return new Reading(_time.GetUtcNow().UtcTicks, new Dictionary<string, double>(_observed), Volatile.Read(ref _batchCount),
            Volatile.Read(ref _batchSum), _closes.Values.Sum());
    }

    public OpsNode Snapshot(long? since)
    {
        List<OpsSample> series;
        lock (_gate) series = [.. _series.Where(s => since is null || s.At > since)];
        var current = series.Count > 0 ? series[^1] : null;
        if (current is null) lock (_gate) current = _series.LastOrDefault();
        var observed = Read();
        var closes = _closes.ToDictionary(c => c.Key.ToString(CultureInfo.InvariantCulture), c => c.Value);
        return new OpsNode(NodeId, _started.ToString("O", CultureInfo.InvariantCulture), Math.Round((_time.GetUtcNow() - _started).TotalSeconds, 1), current,
            (long)observed.Get("balance.ledger.postings"), (long)observed.Get("balance.messages.sent"), (long)observed.Get("balance.messages.coalesced"),
            (long)observed.Get("balance.messages.dropped"), _closes.GetValueOrDefault(CloseCodes.SlowConsumer), closes,
            observed.Get("balance.wal.page_size") is > 0 and var pageSize ? (int)pageSize : 4096, series); // the engine's, from its instruments
    }

    public override void Dispose()
    {
        _listener.Dispose();
        base.Dispose();
    }
}

// Counts in buckets 10% wide from 0.01 ms up (about ±5% on a percentile), cumulative so that two snapshots
// subtract to exactly the measurements between them, with no reset racing a recording thread.
public sealed class LogHistogram
{
    private const double Smallest = 0.01, Growth = 1.1;
    private const int Buckets = 220; // up to ~12 minutes
    private static readonly double LogGrowth = Math.Log(Growth);
    private readonly long[] _counts = new long[Buckets];

    public void Record(double ms)
    {
        int i = ms <= Smallest ? 0 : Math.Min(Buckets - 1, 1 + (int)(Math.Log(ms / Smallest) / LogGrowth));
        Interlocked.Increment(ref _counts[i]);
    }

    public long[] Snapshot()
    {
        var copy = new long[Buckets];
        for (int i = 0; i < Buckets; i++) copy[i] = Volatile.Read(ref _counts[i]);
        return copy;
    }

    // The percentile of what was recorded between two snapshots: the bucket's geometric middle.
    public static double? Percentile(long[] before, long[] after, double p)
    {
        long total = 0;
        for (int i = 0; i < Buckets; i++) total += after[i] - before[i];
        if (total == 0) return null;
        long rank = Math.Max(1, (long)Math.Ceiling(p * total)), seen = 0;
        for (int i = 0; i < Buckets; i++)
        {
            seen += after[i] - before[i];
            if (seen >= rank)
                return i == 0 ? Smallest : Math.Round(Smallest * Math.Pow(Growth, i - 0.5), 3);
        }
        return null;
    }
}

public static class OpsApi
{
    public static IServiceCollection AddOps(this IServiceCollection services) =>
        services.AddSingleton<OpsMonitor>().AddHostedService(sp => sp.GetRequiredService<OpsMonitor>());

    public static IEndpointRouteBuilder MapOpsApi(this IEndpointRouteBuilder app)
    {
        app.MapGroup("/api/ops").WithTags("Operations").RequireAuthorization(Roles.Operator)
            .MapGet("/nodes", GetNodes)
            .WithSummary("Live numbers per node: sockets, postings/s, commit → socket delay, closes, batch size, WAL")
            .WithDescription("One sample per second for the last ten minutes, from the service's own meter (the instruments /metrics exports). "
                + "`since` (unix ms) returns only the samples after it.");
        return app;
    }

    private static Ok<OpsView> GetNodes(OpsMonitor monitor, long? since) =>
        TypedResults.Ok(new OpsView([monitor.Snapshot(since)], 1000, OpsMonitor.WindowSeconds));
}
