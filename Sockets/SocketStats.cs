using System.Diagnostics;

namespace Balance.Sockets;

// What the sockets count; read by the metrics.
public sealed class SocketStats
{
    public long Sent, Coalesced, Dropped, DeadPeers, SnapshotFailures, HousekeepingFailures, ConnectsLimited;
    public int Open, Authenticated;
    public event Action<int>? Closed;
    public event Action<double>? Pushed; // milliseconds from the commit to the message written to the socket
    internal void ReportClose(int code) => Closed?.Invoke(code);
    internal void ReportPush(long committedAt) { if (committedAt != 0) Pushed?.Invoke(Stopwatch.GetElapsedTime(committedAt).TotalMilliseconds); }
}
