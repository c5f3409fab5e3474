using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Balance.Bench;

public sealed record Latency(double P50Ms, double P99Ms, double P999Ms, double MaxMs, long Count)
{
    public static Latency From(HistogramBase h) => h.TotalCount == 0 ? new(0, 0, 0, 0, 0) : new(
        h.GetValueAtPercentile(50) / 1000.0, h.GetValueAtPercentile(99) / 1000.0, h.GetValueAtPercentile(99.9) / 1000.0, h.GetMaxValue() / 1000.0, h.TotalCount);
}

public sealed class Phase
{
    public required string Name { get; init; }
    public required string Target { get; init; }
    public required string Load { get; init; }
    public double OfferedPerSecond { get; init; }
    public double Seconds { get; set; }
    public long Ok { get; set; }
    public long Failed { get; set; }
    public long NotSent { get; set; }
    public double TxPerSecond { get; set; }
    public Latency Response { get; set; } = new(0, 0, 0, 0, 0);
    public Latency? Delivery { get; set; }
    public Latency? AllSockets { get; set; }
    public Latency? AfterResponse { get; set; } // socket arrival − HTTP response arrival (≤ 0 counted as 0): commit → socket is between this and Delivery
    public PushDelay? CommitToSocket { get; set; } // the service's own histogram: durable commit → message written to the socket
    public long Deliveries { get; set; }
    public long Superseded { get; set; }
    public long Missing { get; set; }
    public double DeliveriesPerSecond { get; set; }
    public double ServerCpuSeconds { get; set; }
    public double ServerCpuPercent { get; set; }
    public double DeliveriesPerCpuSecond { get; set; }
    public double MachineBusyPercent { get; set; }
    public double HarnessCpuPercent { get; set; }
    public long ServerRssBytes { get; set; }
    internal Tx[] Txs = [];
}

public sealed class SocketFigures
{
    public required string Target { get; init; }
    public string Connect { get; init; } = "ramp"; // ramp: 64 handshakes at a time per worker; storm: all at once, into a just-restarted server
    public int Requested { get; init; }
    public int Open { get; init; }
    public int Failed { get; init; }
    public int Workers { get; init; }
    public int Players { get; init; }
    public double ConnectSeconds { get; init; }
    public long RssBeforeBytes { get; init; }
    public long RssAfterBytes { get; init; }
    public double RssBytesPerSocket => Open == 0 ? 0 : (RssAfterBytes - RssBeforeBytes) / (double)Open;
    // While the fleet connects, twice a second: sockets the server holds beyond its idle count, and its RSS.
    // The last sample is the settled figure above. bench/charts.mjs draws RSS per socket against the count.
    public List<RssSample> RssSamples { get; init; } = [];
}

public sealed record RssSample(int Sockets, long RssBytes);

public sealed class Report
{
    public string Machine { get; set; } = "";
    public string StartedUtc { get; set; } = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture);
    public Options? Options { get; set; }
    public double SetupSeconds { get; set; }
    public double SqliteOneRowPerCommit { get; set; }
    public double SqliteBatched { get; set; }
    public List<SocketFigures> Sockets { get; } = [];
    public List<Phase> Phases { get; } = [];
    public Dictionary<string, double> Ratios { get; } = [];
}

public static class Coordinator
{
    private static int[] Harness = [];

    public static async Task<int> RunAsync(Options o)
    {
        var report = new Report { Options = o, Machine = Machine() };
        Directory.CreateDirectory(o.WorkDir);
        Console.WriteLine($"# {report.Machine}");

        // 1. The ledger ceiling, while both servers are idle.
        Console.WriteLine($"sqlite ceiling: {o.SqliteSeconds}s one row per commit, {o.SqliteSeconds}s batches of {o.SqliteBatch} ...");
        report.SqliteOneRowPerCommit = SqliteCeiling.Run(o.WorkDir, 1, TimeSpan.FromSeconds(o.SqliteSeconds));
        report.SqliteBatched = SqliteCeiling.Run(o.WorkDir, o.SqliteBatch, TimeSpan.FromSeconds(o.SqliteSeconds));
        Console.WriteLine($"  {report.SqliteOneRowPerCommit:F0} tx/s one row per commit, {report.SqliteBatched:F0} tx/s batched");

        using var http = Target.Client(Math.Max(o.Concurrency, 16));
        var setup = Stopwatch.StartNew();

        // 2. Balance: players through the operator API, one login each, an opening deposit each.
        Console.WriteLine($"balance: creating {o.Players} players, logging them in ...");
        var (opBearer, ids, tokens) = await SetupBalanceAsync(http, o);
        var balance = new Target("balance", http, new Uri(new Uri(o.Service), "/api/transactions"), opBearer, ids);
        await SeedAsync(balance, o);
        report.SetupSeconds = setup.Elapsed.TotalSeconds;
        Console.WriteLine($"  setup {report.SetupSeconds:F0}s");

        double halfRate = 0;
        {
            string wsUrl = o.Service.Replace("http", "ws", StringComparison.Ordinal).TrimEnd('/') + "/ws/balance/player";
            await using var fleet = await OpenFleetAsync(report, "balance", o.ServicePid, wsUrl, o, ids.Length, tokens, o.SourceOctet);
            if (o.SocketsOnly) await Task.Delay(TimeSpan.FromSeconds(o.Duration)); // hold them (--duration s) for a heap dump
            else
            {
                await RunPhaseAsync(report, o, "warmup", balance, o.ServicePid, null, TimeSpan.FromSeconds(o.Warmup), record: false);
                var max = await RunPhaseAsync(report, o, "max", balance, o.ServicePid, null, TimeSpan.FromSeconds(o.Duration));
                if (!o.NoPeer)
                {
                    var noop = new Target("noop", http, new Uri(new Uri(o.Peer), "/noop"), "Bearer none", ids);
                    await RunPhaseAsync(report, o, "warmup", noop, o.PeerPid, null, TimeSpan.FromSeconds(o.Warmup), record: false);
                    await RunPhaseAsync(report, o, "max", noop, o.PeerPid, null, TimeSpan.FromSeconds(o.Duration));
                }
                halfRate = o.Rate > 0 ? o.Rate : Math.Max(100, Math.Round(max.TxPerSecond / 2 / 100) * 100);
                await RunPhaseAsync(report, o, "half", balance, o.ServicePid, halfRate, TimeSpan.FromSeconds(o.Duration));
                await JoinAsync(report, fleet, "balance");
            }
        }

        // 3. A reconnect storm, as after a deploy: the service restarts (same database, same signing key, so every
        // token still works) and every socket reconnects at once; RSS per socket once it settles, beside the ramp's.
        if (o.RestartCommand is not null && !o.NoStorm)
        {
            Console.WriteLine("balance: restarting the service for the reconnect storm ...");
            int pid = await RestartAsync(o.RestartCommand);
            string wsUrl = o.Service.Replace("http", "ws", StringComparison.Ordinal).TrimEnd('/') + "/ws/balance/player";
            // The new process has not run the socket path yet (JIT, pools, threads): a hundred sockets open and close
            // first, so its idle baseline holds those one-time costs as the ramp's does after setup.
            await using (await SocketFleet.StartAsync("balance", wsUrl, Math.Min(100, o.Sockets), ids.Length, tokens, o.PerWorker,
                o.SourceOctet > 0 ? o.SourceOctet + 40 : 0, 64, o.WorkDir, TimeSpan.FromMinutes(1))) { }
            await using var storm = await OpenFleetAsync(report, "balance", pid, wsUrl, o, ids.Length, tokens, o.SourceOctet > 0 ? o.SourceOctet + 50 : 0, storm: true);
            if (o.SocketsOnly) await Task.Delay(TimeSpan.FromSeconds(o.Duration));
        }

        // 4. The peers: the same players, sockets count and rate, one after the other (never two fleets at once).
        if (!o.NoPeer && !o.SocketsOnly)
        {
            await PeerAsync(report, o, http, "signalr", o.Peer, o.PeerPid, "/hub/balance", 100, halfRate);
            if (o.SocketIo is not null) await PeerAsync(report, o, http, "socketio", o.SocketIo, o.SocketIoPid, "/socket.io/", 150, halfRate);
        }

        Ratios(report);
        Print(report);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(o.Out))!);
        await File.WriteAllTextAsync(o.Out, JsonSerializer.Serialize(report, Json.Indented));
        Console.WriteLine($"JSON: {Path.GetFullPath(o.Out)}");
        return 0;
    }

    // A peer: players and tokens from its /bench/setup, opening deposits, its fleet, then half rate and max.
    private static async Task PeerAsync(Report report, Options o, HttpClient http, string kind, string baseUrl, int pid, string socketPath, int octetOffset, double halfRate)
    {
        Console.WriteLine($"{kind}: creating {o.Players} players ...");
        using var setupResponse = await http.PostAsJsonAsync(new Uri(new Uri(baseUrl), "/bench/setup"), new { players = o.Players });
        setupResponse.EnsureSuccessStatusCode();
        using var doc = JsonDocument.Parse(await setupResponse.Content.ReadAsStringAsync());
        var peerPlayers = doc.RootElement.GetProperty("players").EnumerateArray().ToArray();
        var peerIds = peerPlayers.Select(p => p.GetProperty("user_id").GetGuid()).ToArray();
        var peerTokens = peerPlayers.Select(p => p.GetProperty("access_token").GetString()!).ToArray();
        var peer = new Target(kind, http, new Uri(new Uri(baseUrl), "/api/transactions"), "Bearer " + doc.RootElement.GetProperty("operator_token").GetString(), peerIds);
        await SeedAsync(peer, o);
        string socketUrl = baseUrl.Replace("http", "ws", StringComparison.Ordinal).TrimEnd('/') + socketPath;
        int octet = o.SourceOctet > 0 ? o.SourceOctet + octetOffset : 0; // fresh source addresses: no TIME_WAIT from an earlier fleet
        await using var fleet = await OpenFleetAsync(report, kind, pid, socketUrl, o, peerIds.Length, peerTokens, octet);
        await RunPhaseAsync(report, o, "warmup", peer, pid, null, TimeSpan.FromSeconds(o.Warmup), record: false);
        await RunPhaseAsync(report, o, "half", peer, pid, halfRate, TimeSpan.FromSeconds(o.Duration));
        await RunPhaseAsync(report, o, "max", peer, pid, null, TimeSpan.FromSeconds(o.Duration));
        await JoinAsync(report, fleet, kind);
    }

    // The restart command stops the service, starts it again on the same database and configuration, waits until it
    // answers, and prints the new process id.
    private static async Task<int> RestartAsync(string command)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        using var p = Process.Start(psi)!;
        string output = await p.StandardOutput.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await p.WaitForExitAsync(limit.Token);
        if (p.ExitCode != 0 || !int.TryParse(output.Trim(), out int pid)) throw new InvalidOperationException($"restart failed ({p.ExitCode}): {output}");
        return pid;
    }

    private static async Task<SocketFleet> OpenFleetAsync(Report report, string target, int pid, string url, Options o, int players, string[] tokens, int octet, bool storm = false)
    {
        await Task.Delay(2000);
        long before = pid > 0 ? Proc.RssBytes(pid) : 0;
        int idleSockets = pid > 0 ? Proc.SocketCount(pid) : 0;
        var samples = new List<RssSample>();
        using var sampling = new CancellationTokenSource();
        var sampler = pid > 0 ? Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                samples.Add(new RssSample(Math.Max(0, Proc.SocketCount(pid) - idleSockets), Proc.RssBytes(pid)));
                try { await Task.Delay(500, sampling.Token); } catch (OperationCanceledException) { }
            }
        }) : Task.CompletedTask;
        Console.WriteLine($"{target}: opening {o.Sockets} sockets ({o.Sockets / Math.Max(1, players)} per player) from {(o.Sockets + o.PerWorker - 1) / o.PerWorker} worker processes, {(storm ? "all at once (storm)" : "64 at a time per worker (ramp)")} ...");
        var sw = Stopwatch.StartNew();
        var fleet = await SocketFleet.StartAsync(target, url, o.Sockets, players, tokens, o.PerWorker, octet, storm ? o.PerWorker : 64, o.WorkDir, TimeSpan.FromMinutes(5));
        Harness = fleet.Pids;
        double connect = sw.Elapsed.TotalSeconds;
        await Task.Delay(5000); // let the server settle (GC, pools) before reading RSS
        sampling.Cancel();
        await sampler;
        long after = pid > 0 ? Proc.RssBytes(pid) : 0;
        if (pid > 0) samples.Add(new RssSample(fleet.Open, after));
        var figures = new SocketFigures
        {
            Target = target, Connect = storm ? "storm" : "ramp", Requested = o.Sockets, Open = fleet.Open, Failed = fleet.Failed, Workers = fleet.Workers, Players = players,
            ConnectSeconds = connect, RssBeforeBytes = before, RssAfterBytes = after, RssSamples = samples,
        };
        report.Sockets.Add(figures);
        Console.WriteLine($"  {fleet.Open} open, {fleet.Failed} failed in {connect:F1}s; server RSS {before / 1048576.0:F0} → {figures.RssAfterBytes / 1048576.0:F0} MiB = {figures.RssBytesPerSocket / 1024:F1} KiB/socket");
        return fleet;
    }

    private static async Task<Phase> RunPhaseAsync(Report report, Options o, string name, Target target, int pid, double? rate, TimeSpan duration, bool record = true)
    {
        Console.Write($"{target.Name} {name}: {(rate is { } r ? $"open loop {r:F0}/s" : $"closed loop, {o.Concurrency} in flight")}, {duration.TotalSeconds:F0}s ... ");
        var pushBefore = target.Name == "balance" ? await PushDelay.ScrapeAsync(o.Service) : null;
        var usage = new Usage(pid, [Environment.ProcessId, .. Harness]);
        var txs = rate is { } perSecond ? await target.OpenLoopAsync(perSecond, duration, o.MaxInFlight) : await target.ClosedLoopAsync(o.Concurrency, duration);
        var (cpu, harnessCpu, busy, rss, seconds) = usage.Stop();
        var ok = txs.Where(t => t.Status is 200 or 201).ToArray();
        var response = Histogram();
        foreach (var t in ok) response.RecordValue(Math.Max(1, (long)Proc.Micros(t.End - t.Start)));
        double span = txs.Length == 0 ? seconds : Proc.Micros(txs.Max(t => t.End) - txs.Min(t => t.Start)) / 1e6;
        PushDelay? pushDelay = null;
        if (pushBefore is not null)
        {
            await Task.Delay(1500); // the last pushes land, and the exporter's scrape cache expires
            pushDelay = PushDelay.Between(pushBefore, await PushDelay.ScrapeAsync(o.Service));
        }
        var phase = new Phase
        {
            CommitToSocket = pushDelay,
            Name = name, Target = target.Name, Load = rate is null ? $"closed {o.Concurrency}" : "open", OfferedPerSecond = rate ?? 0,
            Seconds = span, Ok = ok.Length, Failed = txs.Count(t => t.Status is not (200 or 201 or -1)), NotSent = txs.Count(t => t.Status == -1),
            TxPerSecond = ok.Length / span, Response = Latency.From(response),
            ServerCpuSeconds = cpu, ServerCpuPercent = 100 * cpu / seconds, MachineBusyPercent = busy, ServerRssBytes = rss, Txs = ok,
            HarnessCpuPercent = 100 * harnessCpu / seconds,
        };
        Console.WriteLine($"{phase.TxPerSecond:F0} tx/s, {phase.Failed} failed, {phase.NotSent} not sent, response p99 {phase.Response.P99Ms:F2} ms{(pushDelay is null ? "" : $", commit → socket p99 ≤ {pushDelay.P99Ms} ms")}, server CPU {phase.ServerCpuPercent:F0}%, harness CPU {phase.HarnessCpuPercent:F0}%, machine {busy:F0}% busy");
        if (record) report.Phases.Add(phase);
        return phase;
    }

    // Every posted transaction × every socket of its player: when did that socket learn of it?
    private static async Task JoinAsync(Report report, SocketFleet fleet, string target)
    {
        await Task.Delay(2000); // stragglers
        var deliveries = await fleet.CollectAsync();
        foreach (var phase in report.Phases.Where(p => p.Target == target && p.Txs.Length > 0))
        {
            var each = Histogram();
            var all = Histogram();
            var after = Histogram();
            long exact = 0, superseded = 0, missing = 0;
            foreach (var tx in phase.Txs)
            {
                long worst = -1;
                bool complete = true;
                foreach (var d in deliveries.For(tx.Player, tx.Version))
                {
                    if (d is not { } hit) { missing++; complete = false; continue; }
                    long us = Math.Max(1, (long)Proc.Micros(hit.Arrival - tx.Start));
                    each.RecordValue(us);
                    after.RecordValue(Math.Max(1, (long)Proc.Micros(hit.Arrival - tx.End)));
                    worst = Math.Max(worst, us);
                    if (hit.Exact) exact++; else superseded++;
                }
                if (complete && worst > 0) all.RecordValue(worst);
            }
            phase.Delivery = Latency.From(each);
            phase.AllSockets = Latency.From(all);
            phase.AfterResponse = Latency.From(after);
            phase.Deliveries = exact;
            phase.Superseded = superseded;
            phase.Missing = missing;
            phase.DeliveriesPerSecond = exact / phase.Seconds;
            phase.DeliveriesPerCpuSecond = phase.ServerCpuSeconds > 0 ? exact / phase.ServerCpuSeconds : 0;
        }
    }

    private static LongHistogram Histogram() => new(1, 3_600_000_000L, 3); // microseconds, up to an hour

    private static async Task<(string Bearer, Guid[] Ids, string[] Tokens)> SetupBalanceAsync(HttpClient http, Options o)
    {
        var baseUri = new Uri(o.Service);
        var (opToken, _) = await LoginAsync(http, baseUri, o.Operator, o.Password);
        string bearer = "Bearer " + opToken;
        string prefix = "b" + Guid.NewGuid().ToString("N")[..6];
        var ids = new Guid[o.Players];
        var tokens = new string[o.Players];
        await Parallel.ForAsync(0, o.Players, new ParallelOptions { MaxDegreeOfParallelism = o.SetupConcurrency }, async (i, ct) =>
        {
            string name = $"{prefix}-{i}";
            using var req = new HttpRequestMessage(HttpMethod.Post, new Uri(baseUri, "/api/users"))
            {
                Content = JsonContent.Create(new { username = name, password = "bench-password", role = "player" }),
            };
            req.Headers.TryAddWithoutValidation("Authorization", bearer);
            using var resp = await http.SendAsync(req, ct);
            if (!resp.IsSuccessStatusCode) throw new InvalidOperationException($"create user: {(int)resp.StatusCode} {await resp.Content.ReadAsStringAsync(ct)}");
            (tokens[i], ids[i]) = await LoginAsync(http, baseUri, name, "bench-password");
            if (i % 500 == 499) Console.WriteLine($"  {i + 1} players");
        });
        return (bearer, ids, tokens);
    }

    private static async Task<(string Token, Guid UserId)> LoginAsync(HttpClient http, Uri baseUri, string username, string password)
    {
        for (int attempt = 0; ; attempt++)
        {
            using var resp = await http.PostAsJsonAsync(new Uri(baseUri, "/api/auth/login"), new { username, password });
            if ((int)resp.StatusCode == 429 && attempt < 10)
            {
                await Task.Delay(TimeSpan.FromSeconds(resp.Headers.RetryAfter?.Delta?.TotalSeconds ?? 5));
                continue;
            }
            if (!resp.IsSuccessStatusCode) throw new InvalidOperationException($"login {username}: {(int)resp.StatusCode} {await resp.Content.ReadAsStringAsync()}");
            using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
            return (doc.RootElement.GetProperty("access_token").GetString()!, doc.RootElement.GetProperty("user_id").GetGuid());
        }
    }

    private static async Task SeedAsync(Target target, Options o)
    {
        var into = new Tx[target.Players];
        await Parallel.ForAsync(0, target.Players, new ParallelOptions { MaxDegreeOfParallelism = o.Concurrency },
            async (p, _) => await target.SendAsync(p, Proc.Now, into, p, "deposit"));
        int bad = into.Count(t => t.Status is not (200 or 201));
        if (bad > 0) throw new InvalidOperationException($"{target.Name}: {bad} opening deposits failed (first status {into.First(t => t.Status is not (200 or 201)).Status})");
    }

    private static void Ratios(Report r)
    {
        var max = r.Phases.FirstOrDefault(p => p.Target == "balance" && p.Name == "max");
        var noop = r.Phases.FirstOrDefault(p => p.Target == "noop");
        var half = r.Phases.FirstOrDefault(p => p.Target == "balance" && p.Name == "half");
        if (max is not null)
        {
            r.Ratios["balance_max / sqlite_one_row_per_commit"] = max.TxPerSecond / r.SqliteOneRowPerCommit;
            r.Ratios["balance_max / sqlite_batched"] = max.TxPerSecond / r.SqliteBatched;
            if (noop is not null) r.Ratios["balance_max / noop_endpoint"] = max.TxPerSecond / noop.TxPerSecond;
        }
        // Only where both sides delivered (a peer that fell behind has no meaningful p99 or rate here).
        static bool Delivered(Phase? p) => p is { Delivery.Count: > 0, Deliveries: > 0 };
        var bs = r.Sockets.FirstOrDefault(s => s.Target == "balance" && s.Connect == "ramp");
        foreach (string peer in new[] { "signalr", "socketio" })
        {
            var peerHalf = r.Phases.FirstOrDefault(p => p.Target == peer && p.Name == "half");
            var peerMax = r.Phases.FirstOrDefault(p => p.Target == peer && p.Name == "max");
            if (Delivered(half) && Delivered(peerHalf))
            {
                r.Ratios[$"delivery_p99 balance / {peer} (half rate)"] = half!.Delivery!.P99Ms / Math.Max(0.001, peerHalf!.Delivery!.P99Ms);
                r.Ratios[$"deliveries_per_cpu_s balance / {peer} (half rate)"] = half.DeliveriesPerCpuSecond / Math.Max(0.001, peerHalf.DeliveriesPerCpuSecond);
            }
            if (Delivered(max) && Delivered(peerMax))
                r.Ratios[$"deliveries_per_cpu_s balance / {peer} (max)"] = max!.DeliveriesPerCpuSecond / Math.Max(0.001, peerMax!.DeliveriesPerCpuSecond);
            var ps = r.Sockets.FirstOrDefault(s => s.Target == peer);
            if (bs is not null && ps is not null && ps.RssBytesPerSocket > 0) r.Ratios[$"rss_per_socket balance / {peer}"] = bs.RssBytesPerSocket / ps.RssBytesPerSocket;
        }
    }

    private static void Print(Report r)
    {
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine($"ledger ceiling (raw Microsoft.Data.Sqlite, WAL, synchronous=FULL): {r.SqliteOneRowPerCommit,8:F0} tx/s one row per commit, {r.SqliteBatched,8:F0} tx/s batched");
        sb.AppendLine();
        sb.AppendLine("| sockets | connect | open | failed | workers | players | connect s | RSS before MiB | RSS after MiB | RSS/socket KiB |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var s in r.Sockets)
            sb.AppendLine($"| {s.Target} | {s.Connect} | {s.Open} | {s.Failed} | {s.Workers} | {s.Players} | {s.ConnectSeconds:F1} | {s.RssBeforeBytes / 1048576.0:F0} | {s.RssAfterBytes / 1048576.0:F0} | {s.RssBytesPerSocket / 1024:F1} |");
        sb.AppendLine();
        sb.AppendLine("| target | phase | load | tx/s | failed | resp p50 / p99 / p99.9 / max ms | delivery p50 / p99 / p99.9 / max ms | all-sockets p99 ms | after-response p50 / p99 ms | commit → socket (server) p50 / p99 / p99.9 ms | deliveries/s | superseded | missing | server CPU % | deliveries/CPU-s | harness CPU % | machine busy % |");
        sb.AppendLine("|---|---|---|---:|---:|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var p in r.Phases)
        {
            string load = p.OfferedPerSecond > 0 ? $"open {p.OfferedPerSecond:F0}/s" : p.Load;
            string d = p.Delivery is { Count: > 0 } l ? $"{l.P50Ms:F2} / {l.P99Ms:F2} / {l.P999Ms:F2} / {l.MaxMs:F1}" : "-";
            string failed = p.NotSent > 0 ? $"{p.Failed}+{p.NotSent} unsent" : $"{p.Failed}";
            sb.AppendLine($"| {p.Target} | {p.Name} | {load} | {p.TxPerSecond:F0} | {failed} | {p.Response.P50Ms:F2} / {p.Response.P99Ms:F2} / {p.Response.P999Ms:F2} / {p.Response.MaxMs:F1} | {d} | {(p.AllSockets is { Count: > 0 } a ? a.P99Ms.ToString("F2", CultureInfo.InvariantCulture) : "-")} | {(p.AfterResponse is { Count: > 0 } ar ? $"{ar.P50Ms:F2} / {ar.P99Ms:F2}" : "-")} | {(p.CommitToSocket is { } cs ? cs.ToString() : "-")} | {p.DeliveriesPerSecond:F0} | {p.Superseded} | {p.Missing} | {p.ServerCpuPercent:F0} | {(p.DeliveriesPerCpuSecond > 0 ? p.DeliveriesPerCpuSecond.ToString("F0", CultureInfo.InvariantCulture) : "-")} | {p.HarnessCpuPercent:F0} | {p.MachineBusyPercent:F0} | {(p.HarnessCpuPercent > p.ServerCpuPercent / 3 ? "generator > 1/3 of server CPU" : "")} |");
        }
        sb.AppendLine();
        foreach (var (k, v) in r.Ratios) sb.AppendLine($"ratio {k}: {v:F2}");
        Console.WriteLine(sb.ToString());
    }

    private static string Machine()
    {
        string cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
        string mem = File.ReadLines("/proc/meminfo").First().Split(':', 2)[1].Trim();
        return $"{Environment.ProcessorCount} cores ({cpu}), {mem} RAM, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
    }
}
