using System.Net.Sockets;
using System.Text;

namespace Balance.Tests;

// A WebSocket client by hand, for what ClientWebSocket cannot do: send ping and pong frames of its own, and send the
// upgrade request alone to read its status. Every read has a timeout.
public sealed class RawSocket : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    private RawSocket(TcpClient tcp) => (_tcp, _stream) = (tcp, tcp.GetStream());

    private static string Upgrade(Uri service, string? origin, string? bearer, string? subProtocol = null) =>
        $"GET /ws/balance/player HTTP/1.1\r\nHost: {service.Authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        (origin is null ? "" : $"Origin: {origin}\r\n") + (bearer is null ? "" : $"Authorization: Bearer {bearer}\r\n") +
        (subProtocol is null ? "" : $"Sec-WebSocket-Protocol: {subProtocol}\r\n") + "\r\n";

    private static async Task<RawSocket> OpenAsync(Uri service, string request)
    {
        var tcp = new TcpClient();
        using var cts = new CancellationTokenSource(Timeout);
        await tcp.ConnectAsync(service.Host, service.Port, cts.Token);
        var raw = new RawSocket(tcp);
        await raw._stream.WriteAsync(Encoding.ASCII.GetBytes(request), cts.Token);
        return raw;
    }

    // The response head, byte by byte up to the blank line (nothing of what follows is consumed).
    private async Task<string> ReadHeadAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await _stream.ReadAsync(one, cts.Token) == 0) break;
            head.Append((char)one[0]);
        }
        return head.ToString();
    }

    public static async Task<int> UpgradeStatusAsync(Uri service, string origin)
    {
        using var raw = await OpenAsync(service, Upgrade(service, origin, null));
        string head = await raw.ReadHeadAsync();
        return int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    public static async Task<RawSocket> ConnectAsync(Uri service, string? bearer, string? subProtocol = null)
    {
        var raw = await OpenAsync(service, Upgrade(service, null, bearer, subProtocol));
        string head = await raw.ReadHeadAsync();
        Assert.StartsWith("HTTP/1.1 101", head);
        return raw;
    }

    /// A masked frame, as a client must send; split over two writes at `splitAt` bytes when given.
    public async Task SendAsync(int opcode, byte[] payload, int? splitAt = null)
    {
        if (payload.Length > (opcode >= 0x8 ? 125 : ushort.MaxValue)) throw new ArgumentException("a control frame carries at most 125 bytes, this client's others 65,535");
        var mask = new byte[] { 0x12, 0x34, 0x56, 0x78 };
        int header = payload.Length > 125 ? 4 : 2;
        var frame = new byte[header + 4 + payload.Length];
        frame[0] = (byte)(0x80 | opcode);
        if (header == 2) frame[1] = (byte)(0x80 | payload.Length);
        else (frame[1], frame[2], frame[3]) = (0x80 | 126, (byte)(payload.Length >> 8), (byte)payload.Length);
        mask.CopyTo(frame, header);
        for (int i = 0; i < payload.Length; i++) frame[header + 4 + i] = (byte)(payload[i] ^ mask[i % 4]);
        using var cts = new CancellationTokenSource(Timeout);
        int split = Math.Min(splitAt ?? frame.Length, frame.Length);
        await _stream.WriteAsync(frame.AsMemory(0, split), cts.Token);
        if (split < frame.Length)
        {
            await _stream.FlushAsync(cts.Token);
            await _stream.WriteAsync(frame.AsMemory(split), cts.Token);
        }
    }

    public async Task<(int Opcode, byte[] Payload)> ReadFrameAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var head = new byte[2];
        await _stream.ReadExactlyAsync(head, cts.Token);
        long length = head[1] & 0x7F;
        if (length >= 126)
        {
            var ext = new byte[length == 126 ? 2 : 8];
            await _stream.ReadExactlyAsync(ext, cts.Token);
            length = ext.Aggregate(0L, (n, b) => n << 8 | b);
        }
        var payload = new byte[length];
        await _stream.ReadExactlyAsync(payload, cts.Token);
        return (head[0] & 0x0F, payload);
    }

    /// Reads past data and pong frames to the server's close frame: its code and reason.
    public async Task<(int Code, string Reason)> ReadCloseAsync()
    {
        while (true)
        {
            var (opcode, payload) = await ReadFrameAsync();
            if (opcode == 0x8) return (payload[0] << 8 | payload[1], Encoding.UTF8.GetString(payload, 2, payload.Length - 2));
        }
    }

    public void Dispose()
    {
        _stream.Dispose();
        _tcp.Dispose();
    }
}
