// bench/attack.sh's load generator. Against a running service (Development, demo accounts), for each run and each
// mode in turn — none (baseline), refresh (attack A), flood (attack B) — for --seconds:
// - 8 steady clients post 0.01 USD deposits in a closed loop, players round-robin;
// - a probe posts one deposit every 20 ms on a fixed schedule (its latency counts from the scheduled time, so a stall
//   shows in full rather than as one slow request);
// - refresh: one player, 8 logins of its own, each spending its newest refresh token in a loop as fast as answers come;
// - flood: 600 logins for unknown names from 20 loopback addresses (127.0.x.1-20, new ones each run), 30 each —
//   each within its per-address allowance (Auth:LoginAttemptsPerMinutePerIp = 30) — all sent at once, a 503 or 429
//   answer ending that attempt;
// - garbage: a stranger's cheapest request, a login body that is not JSON, from 8 connections of one address in a
//   closed loop (it spends the address's login allowance, then gets held 429s unread); healthz: the same loop on
//   GET /healthz, the cheapest request there is, for what any request flood costs.
// With --log FILE (the service's log), each phase also prints how many bytes the service logged during it.
// Prints one line per phase, then the medians and spread per mode, and the ratio to the baseline.
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

var opts = args.Select((a, i) => (a, i)).Where(x => x.a.StartsWith("--")).ToDictionary(x => x.a[2..], x => x.i + 1 < args.Length ? args[x.i + 1] : "");
var baseUri = new Uri(opts.GetValueOrDefault("url", "http://127.0.0.1:18190"));
int seconds = int.Parse(opts.GetValueOrDefault("seconds", "15"));
int runs = int.Parse(opts.GetValueOrDefault("runs", "3"));
string[] modes = opts.GetValueOrDefault("modes", "none,refresh,none,flood").Split(',');
string? serviceLog = opts.GetValueOrDefault("log");
long LogBytes() => serviceLog is null || !File.Exists(serviceLog) ? 0 : new FileInfo(serviceLog).Length;
const int Clients = 8, Players = 50, Logins = 8, Addresses = 20, PerAddress = 30;

HttpClient Client(string? source = null, string? token = null)
{
    var handler = new SocketsHttpHandler { PooledConnectionLifetime = Timeout.InfiniteTimeSpan, MaxConnectionsPerServer = 64 };
    if (source is not null)
        handler.ConnectCallback = async (ctx, ct) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
            await socket.ConnectAsync(ctx.DnsEndPoint, ct);
            return new NetworkStream(socket, ownsSocket: true);
        };
    var c = new HttpClient(handler) { BaseAddress = baseUri, Timeout = TimeSpan.FromSeconds(120) };
    if (token is not null) c.DefaultRequestHeaders.Authorization = new("Bearer", token);
    return c;
}

// A 503 (the password budget) or 429 is waited out and tried again, up to 30 times, as an attacker would.
async Task<JsonElement> LoginAsync(HttpClient c, string user, string password)
{
    for (int attempt = 0; ; attempt++)
    {
        var r = await c.PostAsJsonAsync("/api/auth/login", new { username = user, password });
        if (r.IsSuccessStatusCode) return await r.Content.ReadFromJsonAsync<JsonElement>();
        if (attempt >= 30 || r.StatusCode is not (HttpStatusCode.ServiceUnavailable or HttpStatusCode.TooManyRequests))
            throw new InvalidOperationException($"login {user}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        await Task.Delay(r.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1));
    }
}

// Setup: the operator's token, players to post to, one attacking player.
using var setup = Client("127.0.0.1");
string opToken = (await LoginAsync(setup, "operator", "demo1234")).GetProperty("access_token").GetString()!;
using var op = Client("127.0.0.1", opToken);
var players = new List<string>();
for (int i = 0; i < Players; i++)
{
    string name = $"steady{i}-{Environment.ProcessId}";
    var r = await op.PostAsJsonAsync("/api/users", new { username = name, password = "steady-password", role = "player" });
    players.Add((await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("user_id").GetString()!);
}
string mallory = $"mallory-{Environment.ProcessId}";
(await op.PostAsJsonAsync("/api/users", new { username = mallory, password = "mallory-password", role = "player" })).EnsureSuccessStatusCode();

async Task<bool> PostAsync(HttpClient c, int n)
{
    using var request = new HttpRequestMessage(HttpMethod.Post, "/api/transactions")
    {
        Content = JsonContent.Create(new { user_id = players[n % players.Count], type = "deposit", amount = "0.01", currency = "USD", reference = "attack-bench" }),
    };
    request.Headers.Add("Idempotency-Key", Guid.NewGuid().ToString());
    using var response = await c.SendAsync(request);
    return response.StatusCode == HttpStatusCode.Created;
}

// Warm-up, not counted: the service's JIT and connection pools, so the first baseline is not the slowest.
using (var warm = Client("127.0.0.1", opToken))
{
    var until = DateTime.UtcNow.AddSeconds(5);
    await Task.WhenAll(Enumerable.Range(0, Clients).Select(i => Task.Run(async () => { int n = i; while (DateTime.UtcNow < until) await PostAsync(warm, n += Clients); })));
}

var results = new List<(string Mode, double Rate, double ProbeP99, double ProbeMax, string Attack)>();
int phase = 0;
for (int run = 1; run <= runs; run++)
    foreach (string mode in modes)
    {
        phase++;
        using var stop = new CancellationTokenSource();
        long posted = 0, failed = 0;
        long logBefore = LogBytes();
        var sw = Stopwatch.StartNew();
        using var steadyClient = Client("127.0.0.1", opToken);
        var steady = Enumerable.Range(0, Clients).Select(i => Task.Run(async () =>
        {
            int n = i;
            while (!stop.IsCancellationRequested)
            {
                try { if (await PostAsync(steadyClient, n += Clients)) Interlocked.Increment(ref posted); else Interlocked.Increment(ref failed); }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { Interlocked.Increment(ref failed); }
            }
        })).ToArray();
        using var probeClient = Client("127.0.0.1", opToken);
        var probeLatencies = new System.Collections.Concurrent.ConcurrentBag<double>();
        var probes = new List<Task>();
        var probeLoop = Task.Run(async () =>
        {
            for (int k = 0; !stop.IsCancellationRequested; k++)
            {
                double due = k * 20.0;
                double wait = due - sw.Elapsed.TotalMilliseconds;
                if (wait > 0) await Task.Delay(TimeSpan.FromMilliseconds(wait));
                probes.Add(Task.Run(async () =>
                {
                    try { await PostAsync(probeClient, k); } catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { }
                    probeLatencies.Add(sw.Elapsed.TotalMilliseconds - due);
                }));
            }
        });

        var outcomes = new System.Collections.Concurrent.ConcurrentDictionary<int, int>();
        Task attack = Task.CompletedTask;
        var clients = new List<HttpClient>();
        if (mode == "refresh")
        {
            var attacker = Client($"127.0.1.{run}");
            clients.Add(attacker);
            attack = Task.WhenAll(Enumerable.Range(0, Logins).Select(_ => Task.Run(async () =>
            {
                string refresh;
                try { refresh = (await LoginAsync(attacker, mallory, "mallory-password")).GetProperty("refresh_token").GetString()!; }
                catch (InvalidOperationException) { outcomes.AddOrUpdate(-1, 1, (_, v) => v + 1); return; }
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        using var r = await attacker.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = refresh });
                        outcomes.AddOrUpdate((int)r.StatusCode, 1, (_, v) => v + 1);
                        if (r.StatusCode == HttpStatusCode.OK) refresh = (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("refresh_token").GetString()!;
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { outcomes.AddOrUpdate(0, 1, (_, v) => v + 1); }
                }
            })));
        }
        else if (mode == "flood")
        {
            attack = Task.WhenAll(Enumerable.Range(1, Addresses).SelectMany(a =>
            {
                var c = Client($"127.0.{10 + run}.{a}");
                clients.Add(c);
                return Enumerable.Range(0, PerAddress).Select(i => Task.Run(async () =>
                {
                    try
                    {
                        using var r = await c.PostAsJsonAsync("/api/auth/login", new { username = $"nobody-{run}-{a}-{i}", password = "guess-password" });
                        outcomes.AddOrUpdate((int)r.StatusCode, 1, (_, v) => v + 1);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { outcomes.AddOrUpdate(0, 1, (_, v) => v + 1); }
                }));
            }));
        }
        else if (mode is "garbage" or "healthz")
        {
            var c = Client($"127.0.{30 + run}.1");
            clients.Add(c);
            attack = Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        using var body = new StringContent("{\"username\":\"nobody\",\"password\":", System.Text.Encoding.UTF8, "application/json");
                        using var r = mode == "garbage" ? await c.PostAsync("/api/auth/login", body) : await c.GetAsync("/healthz");
                        outcomes.AddOrUpdate((int)r.StatusCode, 1, (_, v) => v + 1);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { outcomes.AddOrUpdate(0, 1, (_, v) => v + 1); }
                }
            })));
        }
        double attackEnded = double.NaN;
        _ = attack.ContinueWith(_ => attackEnded = sw.Elapsed.TotalSeconds);
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        long postedAtEnd = Interlocked.Read(ref posted);
        double elapsed = sw.Elapsed.TotalSeconds;
        stop.Cancel();
        await Task.WhenAll(steady);
        await probeLoop;
        await Task.WhenAll(probes.ToArray());
        await attack;
        foreach (var c in clients) c.Dispose();
        var lat = probeLatencies.Order().ToArray();
        double p99 = lat.Length == 0 ? double.NaN : lat[Math.Min(lat.Length - 1, (int)Math.Ceiling(lat.Length * 0.99) - 1)];
        string attackText = mode == "none" ? "-" : string.Join(" ", outcomes.OrderBy(o => o.Key).Select(o => $"{(o.Key <= 0 ? (o.Key == 0 ? "err" : "loginfail") : o.Key.ToString())}x{o.Value}"))
            + (mode == "flood" ? $" (done at {attackEnded:0.0} s)" : "");
        double rate = postedAtEnd / elapsed;
        results.Add((mode, rate, p99, lat.Length == 0 ? double.NaN : lat[^1], attackText));
        string logged = serviceLog is null ? "" : $"  logged {(LogBytes() - logBefore) / 1024.0:0} KiB";
        Console.WriteLine($"run {run} {mode,-8} postings {rate,7:0}/s  probe p99 {p99,7:0.0} ms  max {lat[^1],7:0.0} ms  failed {failed}{logged}  attack: {attackText}");
    }

Console.WriteLine();
Console.WriteLine("mode      postings/s median [min-max]   vs baseline   probe p99 ms median [min-max]");
double baseline = Median(results.Where(r => r.Mode == "none").Select(r => r.Rate));
foreach (var group in results.GroupBy(r => r.Mode))
{
    var rates = group.Select(r => r.Rate).ToArray();
    var p99s = group.Select(r => r.ProbeP99).ToArray();
    Console.WriteLine($"{group.Key,-9} {Median(rates),8:0} [{rates.Min():0}-{rates.Max():0}]       {Median(rates) / baseline,6:P0}       {Median(p99s),7:0.0} [{p99s.Min():0.0}-{p99s.Max():0.0}]");
}

static double Median(IEnumerable<double> values)
{
    var v = values.Order().ToArray();
    return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
}
