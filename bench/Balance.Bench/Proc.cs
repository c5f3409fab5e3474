using System.Diagnostics;

namespace Balance.Bench;

// Server resource figures straight from /proc (Linux).
public static class Proc
{
    private static readonly double TicksPerSecond = 100; // USER_HZ, 100 on every mainstream Linux build

    public static long RssBytes(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(6).Trim().ToString().Split(' ')[0]) * 1024;
        return 0;
    }

    // Sockets the process holds (its listening sockets included), whatever protocol runs on them: the count the
    // RSS curve is drawn against, for the service and the SignalR peer alike.
    public static int SocketCount(int pid)
    {
        int n = 0;
        foreach (string fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            try { if (new FileInfo(fd).LinkTarget?.StartsWith("socket:", StringComparison.Ordinal) == true) n++; }
            catch (IOException) { } // closed while we looked
        }
        return n;
    }

    public static double CpuSeconds(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11]) + long.Parse(fields[12])) / TicksPerSecond; // utime + stime
    }

    // Whole machine: (busy, total) jiffies summed over all cores, to state the load during a phase.
    public static (long Busy, long Total) MachineJiffies()
    {
        var f = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();
        long idle = f[3] + f[4];
        long total = f.Take(8).Sum();
        return (total - idle, total);
    }

    public static long Now => Stopwatch.GetTimestamp(); // CLOCK_MONOTONIC in ns on Linux: comparable across processes
    public static double Micros(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;
}

// Server CPU and RSS over one phase, plus how busy the whole machine was.
public sealed class Usage
{
    private readonly int _pid;
    private readonly double _cpu0;
    private readonly (long Busy, long Total) _m0;
    private readonly long _t0 = Proc.Now;
    private readonly int[] _harness;
    private readonly double _harness0;

    // harness: the coordinator and its socket workers, whose CPU competes with the server's on this box.
    public Usage(int pid, int[] harness)
    {
        _pid = pid;
        _harness = harness;
        _cpu0 = pid > 0 ? Proc.CpuSeconds(pid) : 0;
        _harness0 = harness.Sum(Proc.CpuSeconds);
        _m0 = Proc.MachineJiffies();
    }

    public (double CpuSeconds, double HarnessCpuSeconds, double MachineBusyPercent, long Rss, double Seconds) Stop()
    {
        double cpu = _pid > 0 ? Proc.CpuSeconds(_pid) - _cpu0 : 0;
        double harness = _harness.Sum(Proc.CpuSeconds) - _harness0;
        var m1 = Proc.MachineJiffies();
        double busy = 100.0 * (m1.Busy - _m0.Busy) / Math.Max(1, m1.Total - _m0.Total);
        return (cpu, harness, busy, _pid > 0 ? Proc.RssBytes(_pid) : 0, Proc.Micros(Proc.Now - _t0) / 1e6);
    }
}
