using System.Diagnostics.Metrics;
using Balance.Auth;
using Balance.Postings;
using Balance.Storage;

namespace Balance.Operability;

// The service's numbers as System.Diagnostics.Metrics instruments (meter "Balance"): read with
// `dotnet-counters monitor -n Balance --counters Balance`, or scraped in Prometheus format at /metrics.
public sealed class BalanceMetrics
{
    public const string MeterName = "Balance";

    public BalanceMetrics(IMeterFactory factory, Ledger ledger, BalanceSocket sockets, IEnumerable<IStorageInstruments> storage, Logins logins)
    {
        var meter = factory.Create(MeterName);
        var s = sockets.Stats;
        var l = ledger.Stats;
        meter.CreateObservableUpDownCounter("balance.sockets.open", () => Volatile.Read(ref s.Open), "{socket}", "Open WebSockets, authenticated or not.");
        meter.CreateObservableUpDownCounter("balance.sockets.authenticated", () => Volatile.Read(ref s.Authenticated), "{socket}", "Sockets that passed auth.");
        meter.CreateObservableCounter("balance.messages.sent", () => Volatile.Read(ref s.Sent), "{message}", "Balance messages written to sockets.");
        meter.CreateObservableCounter("balance.messages.coalesced", () => Volatile.Read(ref s.Coalesced), "{message}", "Balances replaced by a newer one while waiting in a socket's outbox.");
        meter.CreateObservableCounter("balance.sockets.dead_peers", () => Volatile.Read(ref s.DeadPeers), "{socket}", "Sockets dropped because the peer stopped answering WebSocket pings.");
        meter.CreateObservableCounter("balance.sockets.snapshot_failures", () => Volatile.Read(ref s.SnapshotFailures), "{socket}", "Sockets closed 1011 because their balance snapshot could not be read.");
        meter.CreateObservableCounter("balance.sockets.housekeeping_failures", () => Volatile.Read(ref s.HousekeepingFailures), "{socket}", "Sockets whose housekeeping tick threw (logged; the socket is dropped, the others go on).");
        meter.CreateObservableCounter("balance.auth.refresh_grace_retries", () => Volatile.Read(ref logins.GraceRetries), "{refresh}",
            "Spent refresh tokens presented again within Auth:RefreshReuseGrace and taken for a lost answer (a flaky network, or a copy in other hands).");
        meter.CreateObservableCounter("balance.sockets.connects_limited", () => Volatile.Read(ref s.ConnectsLimited), "{socket}", "Socket opens refused for reconnecting too fast (per address or per player).");
        meter.CreateObservableGauge("balance.sockets.outbox.deepest", () => Volatile.Read(ref s.DeepestOutbox), "{message}",
            "The most messages that ever waited in one socket's outbox at once (bounded: one balance per currency, plus control frames).");
        meter.CreateObservableCounter("balance.messages.dropped", () => Volatile.Read(ref s.Dropped), "{message}", "Balances not sent because the socket had already seen a newer version.");
        meter.CreateObservableCounter("balance.ledger.postings", () => Volatile.Read(ref l.Postings), "{posting}",
            "Postings answered after their batch committed: applied, replayed, or refused by a rule.");
        // The same count under its first name, kept for dashboards that read it (deprecated: it never counted commits).
        meter.CreateObservableCounter("balance.ledger.commits", () => Volatile.Read(ref l.Postings), "{posting}",
            "Deprecated name of balance.ledger.postings (the same count).");
        meter.CreateObservableUpDownCounter("balance.ledger.queued", () => ledger.Queued, "{posting}", "Postings waiting for the writer to start their batch.");
        meter.CreateObservableCounter("balance.ledger.batches", () => Volatile.Read(ref l.Batches), "{batch}", "Database transactions committed by the writer loop.");
        foreach (var instruments in storage) instruments.Create(meter); // the engine's own: SQLite's pragmas and WAL, PostgreSQL's change feed
        var closes = meter.CreateCounter<long>("balance.sockets.closed", "{socket}", "Socket closes by close code.");
        s.Closed += code => closes.Add(1, new KeyValuePair<string, object?>("code", code));
        var latency = meter.CreateHistogram<double>("balance.ledger.commit.duration", "ms", "Time from the start of a batch to its durable commit.");
        var size = meter.CreateHistogram<int>("balance.ledger.batch.size", "{transaction}", "Postings per committed batch (group commit).");
        l.Committed += (n, ms) => { latency.Record(ms); size.Record(n); };
        // Fine buckets at the low end: the promise is a few milliseconds from commit to screen.
        var push = meter.CreateHistogram<double>("balance.push.delay", "ms",
            "From the durable commit of a change to its balance message written to a socket (for a coalesced message, from the newest change).",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 5000] });
        s.Pushed += push.Record;
    }
}
