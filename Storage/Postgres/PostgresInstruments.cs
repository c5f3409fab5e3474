using System.Diagnostics.Metrics;

namespace Balance.Storage.Postgres;

// The change feed's numbers: how far behind this node's view of other nodes' commits may be, and its gaps.
internal sealed class PostgresInstruments(ChangeFeed feed) : IStorageInstruments
{
    public void Create(Meter meter)
    {
        meter.CreateObservableGauge("balance.feed.lag", () => feed.LagSeconds, "s",
            "How far behind the change feed may be: since its last complete read, or since the oldest running writer began, whichever is longer.");
        meter.CreateObservableCounter("balance.feed.rows", () => Volatile.Read(ref feed.Rows), "{row}", "Ledger rows read by this node's change feed.");
        meter.CreateObservableCounter("balance.feed.gaps", () => Volatile.Read(ref feed.Gaps), "{gap}", "Times the change feed lost its connection and caught up from its cursor.");
        meter.CreateObservableCounter("balance.feed.revocations", () => Volatile.Read(ref feed.Revocations), "{session}", "Ended logins read by the change feed (their sockets here close 4503).");
    }
}
