using System.Globalization;

namespace Balance.Bench;

public sealed class Options
{
    public string Service { get; init; } = "http://127.0.0.1:8080";
    public int ServicePid { get; init; }
    public string Peer { get; init; } = "http://127.0.0.1:8090";
    public int PeerPid { get; init; }
    public bool NoPeer { get; init; }
    public string? SocketIo { get; init; }
    public int SocketIoPid { get; init; }
    public string? RestartCommand { get; init; }
    public bool NoStorm { get; init; }
    public bool SocketsOnly { get; init; }
    public int Players { get; init; } = 1000;
    public int Sockets { get; init; } = 15000;
    public int PerWorker { get; init; } = 5000;
    public int SourceOctet { get; init; } = 10;
    public int Duration { get; init; } = 20;
    public int Warmup { get; init; } = 3;
    public int Concurrency { get; init; } = 64;
    public double Rate { get; init; }
    public int MaxInFlight { get; init; } = 20000;
    public int SqliteSeconds { get; init; } = 5;
    public int SqliteBatch { get; init; } = 256;
    public int SetupConcurrency { get; init; } = 4;
    public string WorkDir { get; init; } = Path.Combine(Path.GetTempPath(), "balance-bench");
    public string Out { get; init; } = "bench/results/latest.json";
    public string Operator { get; init; } = "operator";
    public string Password { get; init; } = "demo1234";

    public static Options Parse(string[] args)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument {args[i]}");
            string key = args[i][2..];
            d[key] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
        }
        string S(string k, string def) => d.TryGetValue(k, out var v) ? v : def;
        int I(string k, int def) => d.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : def;
        var o = new Options();
        return new Options
        {
            Service = S("service", o.Service), ServicePid = I("service-pid", 0),
            Peer = S("peer", o.Peer), PeerPid = I("peer-pid", 0),
            SocketIo = d.TryGetValue("socketio", out var sio) ? sio : null, SocketIoPid = I("socketio-pid", 0),
            RestartCommand = d.TryGetValue("restart-command", out var rc) ? rc : null, NoStorm = d.ContainsKey("no-storm"), NoPeer = d.ContainsKey("no-peer"), SocketsOnly = d.ContainsKey("sockets-only"),
            Players = I("players", o.Players), Sockets = I("sockets", o.Sockets), PerWorker = I("per-worker", o.PerWorker),
            SourceOctet = I("source-octet", o.SourceOctet), Duration = I("duration", o.Duration), Warmup = I("warmup", o.Warmup),
            Concurrency = I("concurrency", o.Concurrency), Rate = double.Parse(S("rate", "0"), CultureInfo.InvariantCulture),
            MaxInFlight = I("max-in-flight", o.MaxInFlight), SqliteSeconds = I("sqlite-seconds", o.SqliteSeconds),
            SqliteBatch = I("sqlite-batch", o.SqliteBatch), SetupConcurrency = I("setup-concurrency", o.SetupConcurrency),
            WorkDir = S("work-dir", o.WorkDir), Out = S("out", o.Out), Operator = S("operator", o.Operator), Password = S("password", o.Password),
        };
    }
}
