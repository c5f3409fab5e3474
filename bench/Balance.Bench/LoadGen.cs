using System.Net;
using System.Net.Http.Headers;
using System.Text;

namespace Balance.Bench;

// One posted transaction as the harness saw it. Start is the *scheduled* time in open loop, so a stalled
// server is charged for the requests it made wait (no coordinated omission).
public struct Tx
{
    public int Player;
    public long Version;
    public long Start, End;
    public int Status; // HTTP status; 0 = transport error; -1 = not sent (the in-flight cap was reached)
}

// The load generator: HTTP/1.1 keep-alive pool, bet/win of 1.00 alternating per player, unique Idempotency-Key.
public sealed class Target(string name, HttpClient http, Uri uri, string bearer, Guid[] players)
{
    private static readonly byte[] VersionKey = "\"version\":"u8.ToArray();
    private static readonly MediaTypeHeaderValue JsonType = new("application/json");
    private readonly string _run = Guid.NewGuid().ToString("N")[..8];
    private readonly int[] _perPlayer = new int[players.Length];
    private long _seq;

    public string Name => name;
    public int Players => players.Length;

    public static HttpClient Client(int connections) => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = connections,
        UseCookies = false,
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
    }) { Timeout = TimeSpan.FromSeconds(60) };

    public async Task SendAsync(int player, long start, Tx[] into, long index, string type = "")
    {
        var tx = new Tx { Player = player, Start = start };
        try
        {
            if (type == "") type = (Interlocked.Increment(ref _perPlayer[player]) & 1) == 1 ? "bet" : "win";
            long seq = Interlocked.Increment(ref _seq);
            string amount = type == "deposit" ? "1000.00" : "1.00";
            var body = Encoding.UTF8.GetBytes($"{{\"user_id\":\"{players[player]}\",\"type\":\"{type}\",\"amount\":\"{amount}\",\"currency\":\"USD\"}}");
            using var req = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new ByteArrayContent(body) };
            req.Content.Headers.ContentType = JsonType;
            req.Headers.TryAddWithoutValidation("Authorization", bearer);
            req.Headers.TryAddWithoutValidation("Idempotency-Key", $"{_run}-{seq}");
            using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseContentRead);
            var bytes = await resp.Content.ReadAsByteArrayAsync();
            tx.Status = (int)resp.StatusCode;
            tx.Version = ParseVersion(bytes);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
        {
            tx.Status = 0;
        }
        tx.End = Proc.Now;
        into[index] = tx;
    }

    private static long ParseVersion(ReadOnlySpan<byte> json)
    {
        int i = json.IndexOf(VersionKey);
        if (i < 0) return 0;
        long v = 0;
        for (int j = i + VersionKey.Length; j < json.Length && json[j] is >= (byte)'0' and <= (byte)'9'; j++) v = v * 10 + (json[j] - '0');
        return v;
    }

    // As fast as possible: `concurrency` requests in flight, each sent when the previous one answered.
    public async Task<Tx[]> ClosedLoopAsync(int concurrency, TimeSpan duration)
    {
        long deadline = Proc.Now + (long)(duration.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        var lanes = new List<Tx>[concurrency];
        long next = 0;
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async lane =>
        {
            var mine = lanes[lane] = new List<Tx>(4096);
            var one = new Tx[1];
            await Task.Yield();
            while (Proc.Now < deadline)
            {
                long i = Interlocked.Increment(ref next) - 1;
                await SendAsync((int)(i % players.Length), Proc.Now, one, 0);
                mine.Add(one[0]);
            }
        }));
        return lanes.SelectMany(l => l).ToArray();
    }

    // Open loop: transaction i is due at start + i/rate whatever happened to the earlier ones.
    public async Task<Tx[]> OpenLoopAsync(double rate, TimeSpan duration, int maxInFlight)
    {
        long n = (long)(rate * duration.TotalSeconds);
        var txs = new Tx[n];
        var pending = new Task[n];
        int inFlight = 0;
        double ticksPer = System.Diagnostics.Stopwatch.Frequency / rate;
        var pacer = new Thread(() =>
        {
            long t0 = Proc.Now;
            long i = 0;
            while (i < n)
            {
                long now = Proc.Now;
                for (; i < n && t0 + (long)(i * ticksPer) <= now; i++)
                {
                    long due = t0 + (long)(i * ticksPer);
                    if (Volatile.Read(ref inFlight) >= maxInFlight)
                    {
                        txs[i] = new Tx { Player = (int)(i % players.Length), Start = due, End = due, Status = -1 };
                        pending[i] = Task.CompletedTask;
                        continue;
                    }
                    Interlocked.Increment(ref inFlight);
                    long index = i;
                    pending[i] = SendAsync((int)(i % players.Length), due, txs, index).ContinueWith(_ => Interlocked.Decrement(ref inFlight), TaskScheduler.Default);
                }
                Thread.Sleep(1);
            }
        }) { IsBackground = true, Name = "pacer", Priority = ThreadPriority.AboveNormal };
        pacer.Start();
        await Task.Run(pacer.Join);
        await Task.WhenAll(pending);
        return txs;
    }
}
