using System.Diagnostics;
using System.Text.Json;

namespace Balance.Bench;

// The socket side of a run: worker processes holding the sockets, and the join of their stamps with
// the posted transactions.
public sealed class SocketFleet : IAsyncDisposable
{
    private readonly List<(Process Proc, int[] Players)> _workers = [];
    private readonly string _dir;

    public int Open { get; private set; }
    public int Failed { get; private set; }
    public int Workers => _workers.Count;
    public int[] Pids => _workers.Select(w => w.Proc.Id).ToArray();

    private SocketFleet(string dir) => _dir = dir;

    // Sockets are spread over workers (≤ perWorker each, a process may hold at most 20,000 files here);
    // worker w connects from source address 127.0.0.(firstSourceOctet + w), connectConcurrency handshakes at a time.
    public static async Task<SocketFleet> StartAsync(string kind, string url, int sockets, int players, string[] tokens,
        int perWorker, int firstSourceOctet, int connectConcurrency, string dir, TimeSpan timeout)
    {
        var fleet = new SocketFleet(dir);
        int workers = (sockets + perWorker - 1) / perWorker;
        for (int w = 0; w < workers; w++)
        {
            var mine = Enumerable.Range(0, sockets).Where(s => s % workers == w).Select(s => s % players).ToArray();
            var job = new WorkerJob(kind, url, firstSourceOctet > 0 ? $"127.0.0.{firstSourceOctet + w}" : null, mine,
                mine.Select(p => tokens[p]).ToArray(), connectConcurrency);
            string self = Environment.ProcessPath!;
            var psi = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(SocketFleet).Assembly.Location);
            psi.ArgumentList.Add("worker");
            var p = Process.Start(psi)!;
            await p.StandardInput.WriteLineAsync(JsonSerializer.Serialize(job, Json.Options));
            await p.StandardInput.FlushAsync();
            fleet._workers.Add((p, mine));
        }
        foreach (var (p, _) in fleet._workers)
        {
            var line = await ReadLineAsync(p, timeout) ?? throw new InvalidOperationException("a worker exited before it was ready");
            var parts = line.Split(' ');
            fleet.Open += int.Parse(parts[1]);
            fleet.Failed += int.Parse(parts[2]);
        }
        return fleet;
    }

    private static async Task<string?> ReadLineAsync(Process p, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        return await p.StandardOutput.ReadLineAsync(cts.Token);
    }

    // Every socket's (version, arrival) stamps so far, grouped by player.
    public async Task<Deliveries> CollectAsync()
    {
        var byPlayer = new Dictionary<int, List<long[]>>();
        for (int w = 0; w < _workers.Count; w++)
        {
            var (p, _) = _workers[w];
            string path = Path.Combine(_dir, $"stamps-{p.Id}.bin");
            await p.StandardInput.WriteLineAsync($"dump {path}");
            await p.StandardInput.FlushAsync();
            _ = await ReadLineAsync(p, TimeSpan.FromMinutes(2));
            using (var r = new BinaryReader(File.OpenRead(path)))
            {
                int sockets = r.ReadInt32();
                for (int s = 0; s < sockets; s++)
                {
                    int player = r.ReadInt32();
                    int n = r.ReadInt32();
                    var stamps = new long[n * 2];
                    for (int i = 0; i < stamps.Length; i++) stamps[i] = r.ReadInt64();
                    if (!byPlayer.TryGetValue(player, out var list)) byPlayer[player] = list = [];
                    list.Add(stamps);
                }
            }
            File.Delete(path);
        }
        return new Deliveries(byPlayer);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (p, _) in _workers)
        {
            try
            {
                await p.StandardInput.WriteLineAsync("exit");
                await p.StandardInput.FlushAsync();
            }
            catch (IOException) { }
        }
        foreach (var (p, _) in _workers)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try { await p.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { p.Kill(); }
            p.Dispose();
        }
    }
}

// Stamps of every socket, per player; a socket's versions only go up, so "the first message with
// version ≥ v" is when that socket learnt of transaction v (v itself, or a newer balance that replaced it).
public sealed class Deliveries(Dictionary<int, List<long[]>> byPlayer)
{
    public int Sockets(int player) => byPlayer.TryGetValue(player, out var l) ? l.Count : 0;

    public IEnumerable<(long Arrival, bool Exact)?> For(int player, long version)
    {
        if (!byPlayer.TryGetValue(player, out var sockets)) yield break;
        foreach (var stamps in sockets)
        {
            int lo = 0, hi = stamps.Length / 2; // first pair with version ≥ v
            while (lo < hi)
            {
                int mid = (lo + hi) / 2;
                if (stamps[mid * 2] < version) lo = mid + 1; else hi = mid;
            }
            yield return lo < stamps.Length / 2 ? (stamps[lo * 2 + 1], stamps[lo * 2] == version) : null;
        }
    }
}
