using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Balance.Bench;

// The job a coordinator hands a worker process on its first stdin line.
public sealed record WorkerJob(string Kind, string Url, string? SourceIp, int[] Players, string[] Tokens, int ConnectConcurrency);

// A socket worker: holds its share of the sockets (a process may hold at most 20,000 open files here),
// stamps every balance message with the monotonic clock, and hands the stamps over on `dump`.
// stdin commands: dump <path> | exit. stdout: `ready <open> <failed>`, `dumped <count>`.
public static class Worker
{
    private static readonly byte[] VersionKey = "\"version\":"u8.ToArray();
    private static readonly byte[] BalanceTarget = "\"target\":\"balance\""u8.ToArray();

    private sealed class Client(int player)
    {
        public readonly int Player = player;
        public ClientWebSocket? Ws;
        public List<long> Stamps = new(64); // version, timestamp, version, timestamp, ...
        public readonly TaskCompletionSource Ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public static async Task<int> RunAsync()
    {
        string first = await Console.In.ReadLineAsync() ?? throw new InvalidOperationException("no job on stdin");
        var job = JsonSerializer.Deserialize<WorkerJob>(first, Json.Options)!;
        bool signalR = job.Kind == "signalr", socketIo = job.Kind == "socketio";
        using var handler = new SocketsHttpHandler { ConnectCallback = (ctx, ct) => ConnectAsync(ctx, job.SourceIp, ct), UseCookies = false };
        using var invoker = new HttpMessageInvoker(handler);
        var clients = job.Players.Select(p => new Client(p)).ToArray();
        using var stop = new CancellationTokenSource();
        using var gate = new SemaphoreSlim(job.ConnectConcurrency);
        var running = new Task[clients.Length];
        for (int i = 0; i < clients.Length; i++)
        {
            await gate.WaitAsync();
            var c = clients[i];
            running[i] = socketIo ? RunSocketIoClientAsync(c, job, i, invoker, stop.Token) : RunClientAsync(c, job, i, signalR, invoker, stop.Token);
            _ = c.Ready.Task.ContinueWith(_ => gate.Release(), TaskScheduler.Default);
        }
        await Task.WhenAll(clients.Select(c => c.Ready.Task.ContinueWith(_ => { }, TaskScheduler.Default)));
        int open = clients.Count(c => c.Ready.Task.IsCompletedSuccessfully);
        Console.WriteLine($"ready {open} {clients.Length - open}");
        var pings = signalR ? PingLoopAsync(clients, stop.Token) : Task.CompletedTask;

        while (await Console.In.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("dump ", StringComparison.Ordinal))
            {
                long n = Dump(clients, line[5..]);
                Console.WriteLine($"dumped {n}");
            }
            else if (line == "exit") break;
        }
        stop.Cancel();
        foreach (var c in clients) c.Ws?.Abort();
        return 0;
    }

    // One source address per worker keeps every worker far below the ~28k ephemeral ports of an address.
    private static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext ctx, string? sourceIp, CancellationToken ct)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (sourceIp is not null) socket.Bind(new IPEndPoint(IPAddress.Parse(sourceIp), 0));
            await socket.ConnectAsync(ctx.DnsEndPoint, ct);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    // As the guide's client does: a connect that fails (in a storm, the server's accept queue overflows) is tried
    // again after a second, up to five times.
    private static async Task<ClientWebSocket> ConnectAsync(Uri uri, HttpMessageInvoker invoker, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            var ws = new ClientWebSocket();
            ws.Options.KeepAliveInterval = TimeSpan.Zero;
            ws.Options.SetBuffer(2048, 1024);
            try
            {
                await ws.ConnectAsync(uri, invoker, ct);
                return ws;
            }
            catch (WebSocketException) when (attempt < 5 && !ct.IsCancellationRequested)
            {
                ws.Dispose();
                await Task.Delay(1000, ct);
            }
        }
    }

    // One whole message into buffer (grown when a message does not fit, and handed back): its length and last frame.
    private static async Task<(byte[] Buffer, int Count, ValueWebSocketReceiveResult Last)> ReceiveMessageAsync(ClientWebSocket ws, byte[] buffer, CancellationToken ct)
    {
        int count = 0;
        ValueWebSocketReceiveResult r;
        do
        {
            if (count == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
            r = await ws.ReceiveAsync(buffer.AsMemory(count), ct);
            count += r.Count;
        } while (!r.EndOfMessage && r.MessageType != WebSocketMessageType.Close);
        return (buffer, count, r);
    }

    private static async Task RunClientAsync(Client c, WorkerJob job, int index, bool signalR, HttpMessageInvoker invoker, CancellationToken ct)
    {
        var buffer = new byte[2048];
        try
        {
            string token = job.Tokens[index];
            var uri = new Uri(signalR ? $"{job.Url}?access_token={Uri.EscapeDataString(token)}" : job.Url);
            ClientWebSocket ws;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                timeout.CancelAfter(TimeSpan.FromSeconds(60));
                c.Ws = ws = await ConnectAsync(uri, invoker, timeout.Token);
                byte[] hello = signalR
                    ? Encoding.UTF8.GetBytes("{\"protocol\":\"json\",\"version\":1}\u001e")
                    : Encoding.UTF8.GetBytes($"{{\"type\":\"auth\",\"access_token\":\"{token}\",\"data\":{{}}}}");
                await ws.SendAsync(hello, WebSocketMessageType.Text, true, timeout.Token);
            }
            while (!ct.IsCancellationRequested)
            {
                (buffer, int count, var r) = await ReceiveMessageAsync(ws, buffer, ct);
                long now = Proc.Now;
                if (r.MessageType == WebSocketMessageType.Close) break;
                var data = buffer.AsSpan(0, count);
                if (!signalR)
                {
                    Record(c, data, now);
                    c.Ready.TrySetResult(); // the snapshot arrived: authenticated
                    continue;
                }
                // SignalR: records separated by 0x1E, several may share a frame; the first answer is the handshake.
                c.Ready.TrySetResult();
                while (data.Length > 0)
                {
                    int end = data.IndexOf((byte)0x1e);
                    var record = end < 0 ? data : data[..end];
                    if (record.IndexOf(BalanceTarget) >= 0) Record(c, record, now);
                    data = end < 0 ? default : data[(end + 1)..];
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or HttpRequestException)
        {
            if (!c.Ready.Task.IsCompleted) await Console.Error.WriteLineAsync($"worker: socket {index} failed: {ex.GetType().Name}: {ex.Message}");
        }
        finally
        {
            c.Ready.TrySetException(new InvalidOperationException("closed before ready"));
        }
    }

    // Socket.IO (Engine.IO 4) over its WebSocket transport, what socket.io-client sends: `0{…}` opens, `40{"token":…}`
    // joins the default namespace with the token as its auth payload, `40{…}` accepts (counted open), `42["balance",{…}]`
    // is an event; the server pings (`2`) and drops a client that does not answer `3`.
    private static async Task RunSocketIoClientAsync(Client c, WorkerJob job, int index, HttpMessageInvoker invoker, CancellationToken ct)
    {
        var buffer = new byte[2048];
        byte[] pong = "3"u8.ToArray();
        byte[] join = Encoding.UTF8.GetBytes($"40{{\"token\":\"{job.Tokens[index]}\"}}");
        try
        {
            ClientWebSocket ws;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                timeout.CancelAfter(TimeSpan.FromSeconds(60));
                c.Ws = ws = await ConnectAsync(new Uri($"{job.Url}?EIO=4&transport=websocket"), invoker, timeout.Token);
            }
            while (!ct.IsCancellationRequested)
            {
                (buffer, int count, var r) = await ReceiveMessageAsync(ws, buffer, ct);
                long now = Proc.Now;
                if (r.MessageType == WebSocketMessageType.Close || count == 0) break;
                var data = buffer.AsSpan(0, count);
                switch (data[0])
                {
                    case (byte)'0': await ws.SendAsync(join, WebSocketMessageType.Text, true, ct); break;
                    case (byte)'2': await ws.SendAsync(pong, WebSocketMessageType.Text, true, ct); break;
                    case (byte)'4' when data.Length > 1 && data[1] == (byte)'0': c.Ready.TrySetResult(); break;
                    case (byte)'4' when data.Length > 1 && data[1] == (byte)'2': Record(c, data, now); break;
                    case (byte)'4' when data.Length > 1 && data[1] == (byte)'4': throw new WebSocketException($"refused: {Encoding.UTF8.GetString(data)}");
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or HttpRequestException)
        {
            if (!c.Ready.Task.IsCompleted) await Console.Error.WriteLineAsync($"worker: socket {index} failed: {ex.GetType().Name}: {ex.Message}");
        }
        finally
        {
            c.Ready.TrySetException(new InvalidOperationException("closed before ready"));
        }
    }

    private static void Record(Client c, ReadOnlySpan<byte> message, long now)
    {
        int i = message.IndexOf(VersionKey);
        if (i < 0) return;
        long version = 0;
        for (int j = i + VersionKey.Length; j < message.Length && message[j] is >= (byte)'0' and <= (byte)'9'; j++) version = version * 10 + (message[j] - '0');
        lock (c) { c.Stamps.Add(version); c.Stamps.Add(now); }
    }

    private static async Task PingLoopAsync(Client[] clients, CancellationToken ct)
    {
        // SignalR drops a client it has not heard from in 30 s.
        byte[] ping = Encoding.UTF8.GetBytes("{\"type\":6}\u001e");
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(10), ct);
                foreach (var c in clients)
                    if (c.Ws is { State: WebSocketState.Open } ws)
                        try { await ws.SendAsync(ping, WebSocketMessageType.Text, true, ct); } catch (Exception ex) when (ex is WebSocketException or IOException) { }
            }
        }
        catch (OperationCanceledException) { }
    }

    // File: int sockets; per socket: int player, int n, n × (long version, long timestamp).
    private static long Dump(Client[] clients, string path)
    {
        long total = 0;
        using var w = new BinaryWriter(File.Create(path));
        w.Write(clients.Length);
        foreach (var c in clients)
        {
            List<long> stamps;
            lock (c) { stamps = c.Stamps; c.Stamps = new List<long>(64); }
            w.Write(c.Player);
            w.Write(stamps.Count / 2);
            foreach (long v in stamps) w.Write(v);
            total += stamps.Count / 2;
        }
        return total;
    }
}

public static class Json
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false };
    public static readonly JsonSerializerOptions Indented = new(Options) { WriteIndented = true };
}
