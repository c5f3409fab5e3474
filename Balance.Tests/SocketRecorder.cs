using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Balance.Tests;

// A socket read continuously in the background; every balance message is kept.
public sealed class SocketRecorder : IAsyncDisposable
{
    private readonly ClientWebSocket _ws;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<JsonElement> _messages = [];
    private readonly Task _reading;
    public WebSocketCloseStatus? CloseStatus => _ws.CloseStatus;
    public Task Reading => _reading;

    private SocketRecorder(ClientWebSocket ws)
    {
        _ws = ws;
        _reading = Task.Run(ReadAsync);
    }

    public static async Task<SocketRecorder> OpenAsync(BalanceApplication app, string accessToken)
    {
        var socket = await app.OpenAuthenticatedSocketAsync(accessToken);
        return new SocketRecorder(socket.Socket);
    }

    /// A socket of a service that runs as its own process (ServiceProcess), authenticated the guide's way.
    public static async Task<SocketRecorder> OpenAsync(Uri socketUri, string accessToken)
    {
        var ws = new ClientWebSocket();
        using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
        await ws.ConnectAsync(socketUri, cts.Token);
        var socket = new TestSocket(ws);
        await socket.SendAuthAsync(accessToken);
        return new SocketRecorder(ws);
    }

    public IReadOnlyList<JsonElement> Snapshot() { lock (_messages) return _messages.ToList(); }

    private async Task ReadAsync()
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                int count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await _ws.ReceiveAsync(buffer.AsMemory(count), _stop.Token);
                    count += result.Count;
                } while (!result.EndOfMessage);
                if (result.MessageType == WebSocketMessageType.Close) return;
                var json = JsonDocument.Parse(buffer.AsMemory(0, count)).RootElement.Clone();
                lock (_messages) _messages.Add(json);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException) { }
    }

    /// Waits (generously) until the messages so far satisfy the condition; returns them.
    public async Task<IReadOnlyList<JsonElement>> WaitForAsync(Func<IReadOnlyList<JsonElement>, bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var now = Snapshot();
            if (condition(now)) return now;
            if (DateTime.UtcNow > deadline || _reading.IsCompleted)
                throw new Xunit.Sdk.XunitException($"socket never got {what} (close {_ws.CloseStatus}); last: {(now.Count > 0 ? now[^1] : "nothing")}");
            await Task.Delay(20);
        }
    }

    public void AssertOnlyOwnBalancesWithRisingVersions(string userId)
    {
        var seen = new Dictionary<string, long>();
        foreach (var m in Snapshot())
        {
            Assert.Equal("balance", m.GetProperty("type").GetString());
            Assert.Equal(userId, m.GetProperty("user_id").GetString());
            string currency = m.GetProperty("currency").GetString()!;
            long version = m.GetProperty("version").GetInt64();
            if (seen.TryGetValue(currency, out long before)) Assert.True(version > before, $"{currency} went from v{before} to v{version}");
            seen[currency] = version;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_ws.State == WebSocketState.Open)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try { await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token); } catch (Exception) { }
        }
        _stop.Cancel();
        try { await _reading.WaitAsync(TimeSpan.FromSeconds(5)); } catch (TimeoutException) { }
        _ws.Dispose();
        _stop.Dispose();
    }

    public static string Text(IEnumerable<JsonElement> messages) => string.Join("\n", messages.Select(m => m.ToString()));
    internal static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
