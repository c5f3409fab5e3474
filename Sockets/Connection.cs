using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Sockets;

// One socket: its send loop (over its Outbox), its receive loop, its auth (SocketAuth decides, this applies), and what
// the housekeeping tick checks. Why it closes is a CloseReason; what it writes are Frames.
internal sealed class Connection(SocketContext context, ISocketRegistry hub, WebSocket ws, bool v2, string ip, long id, long authDeadline) : IControlFrameSink
{
    public readonly long Id = id;
    public Guid UserId;
    private string? _sessionId;
    public string? SessionId => Volatile.Read(ref _sessionId);
    public bool Authenticated;
    public int CloseCode = 1006;
    private long _expiresAt, _lastSeen = context.Now, _lastPing = context.Now;
    private double _tokens = context.Options.MessageBurst;
    private long _tokensAt = context.Now;
    private readonly Outbox _outbox = new(context.Stats);

    public void Enqueue(byte[] bytes, string? currency, long version, long committedAt = 0) => _outbox.Enqueue(bytes, currency, version, committedAt);

    // The peer started the close: answer with its own code (RFC 6455 §5.5.1), and record that code, not ours.
    public int? PeerCloseCode => ws.State == WebSocketState.CloseReceived
        ? ws.CloseStatus is { } status && status != WebSocketCloseStatus.Empty ? (int)status : (int)WebSocketCloseStatus.NormalClosure
        : null;

    /// True when this call started the close.
    public bool Close(CloseReason reason) => _outbox.TryClose(reason, v2 ? Frames.Error(reason) : []);

    public async Task SendLoopAsync()
    {
        await Task.Yield();
        while (true)
        {
            if (!_outbox.TryTake(out var next, out var wait)) { await wait; continue; }
            if (next.Close is { } close) { await SendCloseAsync(close, next.Bytes); return; }
            if (next.Currency is not null && !_outbox.IsNewer(next.Currency, next.Version))
            {
                Interlocked.Increment(ref context.Stats.Dropped);
                continue;
            }
            if (!await SendAsync(next.Bytes)) return;
            if (next.Currency is not null)
            {
                Interlocked.Increment(ref context.Stats.Sent);
                context.Stats.ReportPush(next.CommittedAt);
                SocketContext.LogPush(context.Audit, UserId, next.Currency, next.Version, Id, null);
            }
        }
    }

    private async Task<bool> SendAsync(byte[] bytes)
    {
        if (ws.State != WebSocketState.Open) return false;
        try
        {
            // No timer per send: the housekeeping tick sees a send stuck past SendTimeout (SlowCheck).
            Volatile.Write(ref _sendStarted, context.Now);
            var sending = ws.SendAsync(bytes.AsMemory(), WebSocketMessageType.Text, true, CancellationToken.None);
            if (!sending.IsCompletedSuccessfully) await sending;
            Volatile.Write(ref _sendStarted, 0);
            return true;
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    private long _sendStarted;

    // The peer stopped reading and its buffers are full: let go rather than hold memory for it.
    private void SlowCheck(long now)
    {
        long started = Volatile.Read(ref _sendStarted);
        if (started == 0 || now - started <= context.Options.SendTimeout.Ticks || CloseCode == CloseCodes.SlowConsumer) return;
        CloseCode = CloseCodes.SlowConsumer;
        _outbox.TryClose(CloseReason.SlowConsumer, []); // the stuck send may have finished meanwhile and the loop gone idle: let it end
        context.Log.LogWarning("Socket {SocketId} of {UserId} is a slow consumer; closing 4003", Id, UserId);
        ws.Abort();
    }

    private async Task SendCloseAsync(CloseReason close, byte[] before)
    {
        if (CloseCode == CloseCodes.SlowConsumer) return;
        CloseCode = close.Code;
        if (before.Length > 0 && !await SendAsync(before)) return;
        if (ws.State is not (WebSocketState.Open or WebSocketState.CloseReceived)) return;
        try
        {
            await ws.CloseOutputAsync((WebSocketCloseStatus)close.Code, close.Reason, CancellationToken.None).WaitAsync(context.Options.SendTimeout);
            // The peer should answer with its own close frame; if it does not, stop waiting for it.
            _ = Task.Delay(TimeSpan.FromSeconds(5), context.Time).ContinueWith(_ => ws.Abort(), TaskScheduler.Default);
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or IOException or TimeoutException)
        {
            ws.Abort();
        }
    }

    // Housekeeping failed for this socket: let it go rather than leave it unsupervised.
    public void Abort()
    {
        if (CloseCode == 1006) CloseCode = CloseCodes.InternalError;
        ws.Abort();
    }

    public void Tick(long now)
    {
        SlowCheck(now);
        if (!Authenticated)
        {
            if (now > authDeadline && Close(CloseReason.AuthTimeout))
                context.Log.LogInformation("Socket {SocketId} from {RemoteIp} sent no auth within {AuthTimeout}; closing 4002", Id, ip, context.Options.AuthTimeout);
            return;
        }
        if (SocketAuth.ExpiredWhileOpen(Volatile.Read(ref _expiresAt), now) is { } expired) { Close(expired); return; }
        if (!v2) return;
        long interval = context.Options.HeartbeatInterval.Ticks;
        if (now - Volatile.Read(ref _lastSeen) > 2 * interval + TimeSpan.TicksPerSecond) { CloseCode = CloseCodes.GoingAway; ws.Abort(); return; }
        if (now - _lastPing >= interval) { _lastPing = now; Enqueue(Frames.Ping, null, 0); }
    }

    // No pong within KeepAliveTimeout: the runtime aborts the socket, and the pending read fails as cancelled (on
    // Kestrel, "aborted by the application") — with no close of ours under way. A peer that leaves instead fails the
    // read with a WebSocketException (closed without a close frame, or reset).
    private bool IsKeepAliveTimeout(Exception ex) =>
        ex is OperationCanceledException && ws.State == WebSocketState.Aborted && CloseCode == 1006 && !_outbox.Closing && !hub.Stopping;

    // The read is not tied to RequestAborted: a peer that leaves fails the read anyway, and the runtime's
    // keep-alive fault only reaches the read when nothing else cancels it first.
    public async Task ReceiveLoopAsync()
    {
        byte[]? buffer = null;
        try
        {
            while (ws.State == WebSocketState.Open)
            {
                // A zero-byte read waits for data without holding a buffer: idle sockets stay small.
                var peek = await ws.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
                if (peek.MessageType == WebSocketMessageType.Close) return;
                if (peek.MessageType == WebSocketMessageType.Binary) { Close(CloseReason.Binary); return; }
                if (peek.EndOfMessage) { Close(CloseReason.EmptyMessage); return; }
                buffer = ArrayPool<byte>.Shared.Rent(SocketEndpoint.MaxMessageBytes);
                int count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (count == SocketEndpoint.MaxMessageBytes) { Close(CloseReason.TooBig); return; }
                    result = await ws.ReceiveAsync(buffer.AsMemory(count, SocketEndpoint.MaxMessageBytes - count), CancellationToken.None);
                    count += result.Count;
                } while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);
                if (result.MessageType == WebSocketMessageType.Close) return;
                Volatile.Write(ref _lastSeen, context.Now);
                if (result.MessageType == WebSocketMessageType.Binary) { Close(CloseReason.Binary); return; }
                if (!TakeToken()) { Close(CloseReason.RateLimited); return; }
                bool keepGoing = await HandleMessageAsync(buffer.AsMemory(0, count));
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = null;
                if (!keepGoing) return;
            }
        }
        catch (Exception ex) when (IsKeepAliveTimeout(ex))
        {
            Interlocked.Increment(ref context.Stats.DeadPeers);
            context.Log.LogInformation("Socket {SocketId} of {UserId} stopped answering pings; dropped", Id, UserId);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            // The peer vanished; nothing to answer.
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // A ping or pong frame from the client (ControlFrames): charged like a message.
    public void OnControlFrame()
    {
        if (!TakeToken()) Close(CloseReason.RateLimited);
    }

    private bool TakeToken()
    {
        long now = context.Now;
        _tokens = Math.Min(context.Options.MessageBurst, _tokens + (now - _tokensAt) / (double)TimeSpan.TicksPerSecond * context.Options.MessagesPerSecond);
        _tokensAt = now;
        if (_tokens < 1) return false;
        _tokens -= 1;
        return true;
    }

    private async Task<bool> HandleMessageAsync(ReadOnlyMemory<byte> message)
    {
        if (_outbox.Closing) return false; // closing: nothing more is read or acted on
        string? type = null, token = null;
        try
        {
            var reader = new Utf8JsonReader(message.Span, new JsonReaderOptions { MaxDepth = 8 });
            using var doc = JsonDocument.ParseValue(ref reader);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new JsonException("not an object");
            if (doc.RootElement.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String) type = t.GetString();
            if (doc.RootElement.TryGetProperty("access_token", out var a) && a.ValueKind == JsonValueKind.String) token = a.GetString();
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException or InvalidOperationException)
        {
            Close(CloseReason.NotJson);
            return false;
        }
        switch (type)
        {
            case "auth" when token is not null:
                return await AuthenticateAsync(token);
            case "pong":
                return true;
            default:
                Close(type is "auth" ? CloseReason.AuthWithoutToken : CloseReason.UnknownType(type));
                return false;
        }
    }

    /// `validated`: the token was already checked on the upgrade, and the player's connect rate with it.
    public async Task<bool> AuthenticateAsync(string token, TokenValidationResult? validated = null)
    {
        var result = validated ?? await context.Auth.ValidateAsync(token);
        if (SocketAuth.Read(result, out var claims) is { } refused)
        {
            Close(refused);
            return false;
        }
        var userId = claims.UserId;
        bool anotherPlayer = Authenticated && userId != UserId;
        // The session is recorded before it is checked: a logout marks the session revoked before the hub looks for
        // its sockets (BalanceSocket.CloseEndedAsync), so either this check sees the revocation or the hub sees this
        // socket's session.
        // A full fence on both sides (here, and in Sessions.MarkRevoked): a store followed by a load may otherwise be
        // reordered, and each side could miss the other.
        if (claims.IsPlayer && !anotherPlayer) Interlocked.Exchange(ref _sessionId, claims.SessionId);
        if (!claims.IsPlayer || context.Auth.IsRevoked(claims.SessionId) || anotherPlayer)
        {
            Close(anotherPlayer ? CloseReason.AnotherPlayer : CloseReason.NotAPlayer);
            return false;
        }
        if (SocketAuth.ExpiredOnAuth(claims, context.Now) is { } expired)
        {
            Close(expired);
            return false;
        }
        long expires = claims.ExpiresAt;
        Volatile.Write(ref _expiresAt, expires);
        if (Authenticated)
        {
            if (v2) Enqueue(Frames.AuthOk(userId, expires), null, 0);
            return true;
        }
        UserId = userId;
        if (validated is null && context.Admission.TryConnectAs(userId) is { } wait)
        {
            Close(CloseReason.ReconnectingTooFast(wait));
            return false;
        }
        if (!context.Admission.TryTakePlace(userId))
        {
            Close(CloseReason.TooManySockets(context.Options.MaxSocketsPerPlayer));
            return false;
        }
        hub.Register(this);
        Authenticated = true;
        context.Admission.ReleaseUnauthenticated(ip);
        Interlocked.Increment(ref context.Stats.Authenticated);
        if (v2) Enqueue(Frames.AuthOk(userId, expires), null, 0);
        // Registered first, snapshot second: a change committed in between is queued, and the version
        // check in the send loop drops whichever copy is older.
        IReadOnlyList<Postings.BalanceChange> wallets;
        try { wallets = await context.SnapshotAsync(userId); }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Without its snapshot the socket would show nothing, or a stale number: close, and the client retries.
            Interlocked.Increment(ref context.Stats.SnapshotFailures);
            context.Log.LogWarning(ex, "Socket {SocketId} of {UserId}: the balance snapshot could not be read; closing 1011", Id, userId);
            Close(CloseReason.Unavailable);
            return false;
        }
        foreach (var wallet in wallets)
            Enqueue(Frames.Balance(wallet), wallet.Currency, wallet.Version);
        context.Log.LogInformation("Socket {SocketId} authenticated for {UserId}", Id, userId);
        return true;
    }
}
