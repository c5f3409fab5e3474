using Microsoft.AspNetCore.Http.Features;

namespace Balance.Sockets;

// Ping and pong frames never reach the application: the runtime's WebSocket answers a ping and drops a pong inside
// ReceiveAsync, so a client could make the server answer pings without end and never spend its message allowance.
// The frames are counted where they pass: the upgraded connection's stream is wrapped (before the WebSocket middleware
// takes the upgrade feature), and each control frame the client sends is reported to its socket (ControlFrameTap),
// which charges it like a message.
public static class ControlFrames
{
    // Goes in front of UseWebSockets: the WebSocket middleware takes the upgrade features when the request arrives.
    public static IApplicationBuilder UseControlFrameCounting(this IApplicationBuilder app) => app.Use((http, next) =>
    {
        var upgrade = http.Features.Get<IHttpUpgradeFeature>();
        var connect = http.Features.Get<IHttpExtendedConnectFeature>();
        if (upgrade is { IsUpgradableRequest: true } || connect is { IsExtendedConnect: true })
        {
            var tap = new ControlFrameTap(upgrade, connect);
            http.Features.Set(tap);
            if (upgrade is { IsUpgradableRequest: true }) http.Features.Set<IHttpUpgradeFeature>(tap);
            if (connect is { IsExtendedConnect: true }) http.Features.Set<IHttpExtendedConnectFeature>(tap);
        }
        return next(http);
    });

    // Reads pass through untouched; the bytes read are followed frame by frame (RFC 6455 §5.2: two header bytes,
    // an extended length of 2 or 8 bytes, a 4-byte mask, then the payload, which is skipped without being looked at).
    internal sealed class CountingStream(Stream inner, ControlFrameTap tap) : Stream
    {
        private int _headerRead; // header bytes seen of the current frame; 0 between frames
        private byte _opcode, _lengthByte;
        private ulong _length;
        private long _payloadLeft;

        internal void Observe(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty)
            {
                if (_payloadLeft > 0)
                {
                    int skip = (int)Math.Min(_payloadLeft, data.Length);
                    _payloadLeft -= skip;
                    data = data[skip..];
                    continue;
                }
                byte b = data[0];
                data = data[1..];
                int at = _headerRead++;
                if (at == 0) { _opcode = (byte)(b & 0x0F); continue; }
                if (at == 1) _lengthByte = b;
                int extended = (_lengthByte & 0x7F) switch { 126 => 2, 127 => 8, _ => 0 };
                if (at >= 2 && at < 2 + extended) _length = _length << 8 | b;
                if (_headerRead < 2 + extended + ((_lengthByte & 0x80) != 0 ? 4 : 0)) continue;
                _payloadLeft = extended == 0 ? _lengthByte & 0x7F : (long)Math.Min(_length, long.MaxValue);
                (_headerRead, _length) = (0, 0);
                if (_opcode is 0x9 or 0xA) tap.Sink?.OnControlFrame();
            }
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            int n = await inner.ReadAsync(buffer, ct);
            Observe(buffer.Span[..n]);
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = inner.Read(buffer, offset, count);
            Observe(buffer.AsSpan(offset, n));
            return n;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => inner.WriteAsync(buffer, ct);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => inner.WriteAsync(buffer, offset, count, ct);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override Task FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);
        public override void Flush() => inner.Flush();
        public override bool CanRead => inner.CanRead;
        public override bool CanWrite => inner.CanWrite;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
        public override ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}

// The upgrade of one request (HTTP/1.1 Upgrade, or HTTP/2 extended CONNECT as in RFC 8441: the same frames inside the
// stream), with its stream wrapped; and where its socket hears of the control frames its client sends. One object per
// socket: fifteen thousand of them stay open.
public sealed class ControlFrameTap(IHttpUpgradeFeature? upgrade, IHttpExtendedConnectFeature? connect) : IHttpUpgradeFeature, IHttpExtendedConnectFeature
{
    /// Told of each ping or pong frame; set by the socket once it exists.
    public IControlFrameSink? Sink { get; set; }

    public bool IsUpgradableRequest => upgrade?.IsUpgradableRequest ?? false;
    public async Task<Stream> UpgradeAsync() => new ControlFrames.CountingStream(await upgrade!.UpgradeAsync(), this);

    public bool IsExtendedConnect => connect?.IsExtendedConnect ?? false;
    public string? Protocol => connect?.Protocol;
    public async ValueTask<Stream> AcceptAsync() => new ControlFrames.CountingStream(await connect!.AcceptAsync(), this);
}

public interface IControlFrameSink
{
    void OnControlFrame();
}
