using System.Diagnostics;

namespace Balance.Sockets;

// What the sockets count; read by the metrics.
public sealed class SocketStats
{
    public long Sent, Coalesced, Dropped, DeadPeers, SnapshotFailures, HousekeepingFailures, ConnectsLimited;
    public int Open, Authenticated;
    // The most messages ever waiting in one socket's outbox at once: the bound (one balance per currency, plus
    // control frames) made visible, so a queue that grows with the updates shows up without a heap profile.
    public int DeepestOutbox;
    internal void NoteDepth(int depth)
    {
        int seen;
        while (depth > (seen = Volatile.Read(ref DeepestOutbox)) && Interlocked.CompareExchange(ref DeepestOutbox, depth, seen) != seen) { }
    }
    public event Action<int>? Closed;
    public event Action<double>? Pushed; // milliseconds from the commit to the message written to the socket
    internal void ReportClose(int code) => Closed?.Invoke(code);
    internal void ReportPush(long committedAt) { if (committedAt != 0) Pushed?.Invoke(Stopwatch.GetElapsedTime(committedAt).TotalMilliseconds); }
}
