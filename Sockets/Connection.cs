using System.Buffers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Tasks.Sources;
using Balance.Auth;
using Balance.Postings;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Sockets;

// One socket: its outbox and send loop, its receive loop, its auth, and what the housekeeping tick checks.
internal sealed class Connection(BalanceSocket hub, SocketAdmission admission, WebSocket ws, bool v2, string ip, long id, long authDeadline) : IValueTaskSource
{
    private static readonly byte[] Ping = """{"type":"ping"}"""u8.ToArray();

    public readonly long Id = id;
    public Guid UserId;
    private string? _sessionId;
    public string? SessionId => Volatile.Read(ref _sessionId);
    public bool Authenticated;
    public int CloseCode = 1006;
    private long _expiresAt, _lastSeen = hub.Time.GetUtcNow().UtcTicks, _lastPing = hub.Time.GetUtcNow().UtcTicks;
    private double _tokens = hub.Options.MessageBurst;
    private long _tokensAt = hub.Time.GetUtcNow().UtcTicks;

    // The outbox: bounded by design. A balance for a currency that is still waiting is replaced by the
    // newer one (only the newest balance per currency is kept); control frames queue in order. Sized for
    // the usual case, one waiting message, held inline; a second one (another currency, a ping) spills into
    // a small list. The send loop waits on this object itself (IValueTaskSource): no allocation per wake,
    // and an idle socket holds no task. Fifteen thousand idle sockets make every field count.
    private object Gate => this;
    private Outgoing _head;
    private bool _hasHead;
    private List<Outgoing>? _more;
    private ManualResetValueTaskSourceCore<bool> _signal = new() { RunContinuationsAsynchronously = true };
    private bool _waiting;
    private Outgoing? _close;
    private volatile bool _closing;
    private string? _sentCurrency; // the newest version sent, per currency: one inline, others in a dictionary
    private long _sentVersion;
    private Dictionary<string, long>? _sentOther;

    private readonly record struct Outgoing(byte[] Bytes, string? Currency, long Version, long CommittedAt = 0, int CloseCode = 0, string? Reason = null);

    public void Enqueue(byte[] bytes, string? currency, long version, long committedAt = 0)
    {
        bool wake;
        lock (Gate)
        {
            if (_close is not null) return;
            var item = new Outgoing(bytes, currency, version, committedAt);
            if (currency is not null && _hasHead && _head.Currency == currency)
            {
                if (_head.Version < version) _head = item;
                Interlocked.Increment(ref hub.Stats.Coalesced);
                return;
            }
            int i = currency is null || _more is null ? -1 : _more.FindIndex(o => o.Currency == currency);
            if (i >= 0)
            {
                if (_more![i].Version < version) _more[i] = item;
                Interlocked.Increment(ref hub.Stats.Coalesced);
                return;
            }
            if (!_hasHead) (_head, _hasHead) = (item, true);
            else (_more ??= new List<Outgoing>(2)).Add(item);
            hub.Stats.NoteDepth(1 + (_more?.Count ?? 0));
            wake = _waiting;
            _waiting = false;
        }
        if (wake) _signal.SetResult(true);
    }

    void IValueTaskSource.GetResult(short token) => _signal.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _signal.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _signal.OnCompleted(continuation, state, token, flags);

    // Under Gate. Returns false when there is nothing to send.
    private bool TryTake(out Outgoing next)
    {
        if (!_hasHead) { next = default; return false; }
        next = _head;
        if (_more is { Count: > 0 }) { _head = _more[0]; _more.RemoveAt(0); }
        else (_head, _hasHead) = (default, false);
        return true;
    }

    // Versions only go up on a socket: a balance older than one already sent for its currency is dropped.
    private bool IsNewer(string currency, long version)
    {
        if (_sentCurrency is null || _sentCurrency == currency)
        {
            if (_sentCurrency is not null && _sentVersion >= version) return false;
            (_sentCurrency, _sentVersion) = (currency, version);
            return true;
        }
        _sentOther ??= new Dictionary<string, long>(1);
        if (_sentOther.TryGetValue(currency, out long sent) && sent >= version) return false;
        _sentOther[currency] = version;
        return true;
    }

    // The peer started the close: answer with its own code (RFC 6455 §5.5.1), and record that code, not ours.
    public int? PeerCloseCode => ws.State == WebSocketState.CloseReceived
        ? ws.CloseStatus is { } status && status != WebSocketCloseStatus.Empty ? (int)status : (int)WebSocketCloseStatus.NormalClosure
        : null;

    /// True when this call started the close.
    public bool Close(int code, string? errorCode, string? message)
    {
        bool wake;
        lock (Gate)
        {
            if (_close is not null) return false;
            byte[] error = v2 && errorCode is not null
                ? JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["type"] = "error", ["code"] = errorCode, ["message"] = message ?? errorCode })
                : [];
            _close = new Outgoing(error, null, 0, 0, code, CloseCodes.Reason(code));
            _closing = true;
            wake = _waiting;
            _waiting = false;
        }
        if (wake) _signal.SetResult(true);
        return true;
    }

    public async Task SendLoopAsync()
    {
        await Task.Yield();
        while (true)
        {
            Outgoing next;
            short token = 0;
            bool wait = false;
            lock (Gate)
            {
                if (TryTake(out next)) { }
                else if (_close is { } close) next = close;
                else { _signal.Reset(); (_waiting, wait, token) = (true, true, _signal.Version); }
            }
            if (wait) { await new ValueTask(this, token); continue; }
            if (next.CloseCode != 0) { await SendCloseAsync(next); return; }
            if (next.Currency is not null)
            {
                if (!IsNewer(next.Currency, next.Version))
                {
                    Interlocked.Increment(ref hub.Stats.Dropped);
                    continue;
                }
            }
            if (!await SendAsync(next.Bytes)) return;
            if (next.Currency is not null)
            {
                Interlocked.Increment(ref hub.Stats.Sent);
                hub.Stats.ReportPush(next.CommittedAt);
                BalanceSocket.LogPush(hub.Audit, UserId, next.Currency, next.Version, Id, null);
            }
        }
    }

    private async Task<bool> SendAsync(byte[] bytes)
    {
        if (ws.State != WebSocketState.Open) return false;
        try
        {
            // No timer per send: the housekeeping tick sees a send stuck past SendTimeout (SlowCheck).
            Volatile.Write(ref _sendStarted, hub.Time.GetUtcNow().UtcTicks);
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
        if (started == 0 || now - started <= hub.Options.SendTimeout.Ticks || CloseCode == CloseCodes.SlowConsumer) return;
        CloseCode = CloseCodes.SlowConsumer;
        bool wake;
        lock (Gate)
        {
            _close ??= new Outgoing([], null, 0, 0, CloseCodes.SlowConsumer, "slow_consumer");
            _closing = true;
            wake = _waiting; // the stuck send may have finished meanwhile and the loop gone idle: let it end
            _waiting = false;
        }
        hub.Log.LogWarning("Socket {SocketId} of {UserId} is a slow consumer; closing 4003", Id, UserId);
        ws.Abort();
        if (wake) _signal.SetResult(true);
    }

    private async Task SendCloseAsync(Outgoing close)
    {
        if (CloseCode == CloseCodes.SlowConsumer) return;
        CloseCode = close.CloseCode;
        if (close.Bytes.Length > 0 && !await SendAsync(close.Bytes)) return;
        if (ws.State is not (WebSocketState.Open or WebSocketState.CloseReceived)) return;
        try
        {
            await ws.CloseOutputAsync((WebSocketCloseStatus)close.CloseCode, close.Reason, CancellationToken.None).WaitAsync(hub.Options.SendTimeout);
            // The peer should answer with its own close frame; if it does not, stop waiting for it.
            _ = Task.Delay(TimeSpan.FromSeconds(5), hub.Time).ContinueWith(_ => ws.Abort(), TaskScheduler.Default);
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
            if (now > authDeadline && Close(CloseCodes.AuthTimeout, "auth_timeout", "No auth message within the deadline."))
                hub.Log.LogInformation("Socket {SocketId} from {RemoteIp} sent no auth within {AuthTimeout}; closing 4002", Id, ip, hub.Options.AuthTimeout);
            return;
        }
        if (now >= Volatile.Read(ref _expiresAt)) { Close(CloseCodes.TokenExpired, "token_expired", "The access token expired; send a fresh one or reconnect."); return; }
        if (!v2) return;
        long interval = hub.Options.HeartbeatInterval.Ticks;
        if (now - Volatile.Read(ref _lastSeen) > 2 * interval + TimeSpan.TicksPerSecond) { CloseCode = CloseCodes.GoingAway; ws.Abort(); return; }
        if (now - _lastPing >= interval) { _lastPing = now; Enqueue(Ping, null, 0); }
    }

    // No pong within KeepAliveTimeout: the runtime aborts the socket, and the pending read fails as cancelled (on
    // Kestrel, "aborted by the application") — with no close of ours under way. A peer that leaves instead fails the
    // read with a WebSocketException (closed without a close frame, or reset).
    private bool IsKeepAliveTimeout(Exception ex) =>
        ex is OperationCanceledException && ws.State == WebSocketState.Aborted && CloseCode == 1006 && !_closing && !hub.Stopping;

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
                if (peek.MessageType == WebSocketMessageType.Binary) { Close(CloseCodes.BadRequest, "bad_request", "Binary frames are not accepted; send JSON text."); return; }
                if (peek.EndOfMessage) { Close(CloseCodes.BadRequest, "bad_request", "Empty message."); return; }
                buffer = ArrayPool<byte>.Shared.Rent(SocketEndpoint.MaxMessageBytes);
                int count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (count == SocketEndpoint.MaxMessageBytes) { Close(CloseCodes.TooBig, "frame_too_large", $"Messages are limited to {SocketEndpoint.MaxMessageBytes} bytes."); return; }
                    result = await ws.ReceiveAsync(buffer.AsMemory(count, SocketEndpoint.MaxMessageBytes - count), CancellationToken.None);
                    count += result.Count;
                } while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);
                if (result.MessageType == WebSocketMessageType.Close) return;
                Volatile.Write(ref _lastSeen, hub.Time.GetUtcNow().UtcTicks);
                if (result.MessageType == WebSocketMessageType.Binary) { Close(CloseCodes.BadRequest, "bad_request", "Binary frames are not accepted; send JSON text."); return; }
                if (!TakeToken()) { Close(CloseCodes.PolicyViolation, "rate_limited", "Too many messages."); return; }
                bool keepGoing = await HandleMessageAsync(buffer.AsMemory(0, count));
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = null;
                if (!keepGoing) return;
            }
        }
        catch (Exception ex) when (IsKeepAliveTimeout(ex))
        {
            Interlocked.Increment(ref hub.Stats.DeadPeers);
            hub.Log.LogInformation("Socket {SocketId} of {UserId} stopped answering pings; dropped", Id, UserId);
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
        if (!TakeToken()) Close(CloseCodes.PolicyViolation, "rate_limited", "Too many messages.");
    }

    private bool TakeToken()
    {
        long now = hub.Time.GetUtcNow().UtcTicks;
        _tokens = Math.Min(hub.Options.MessageBurst, _tokens + (now - _tokensAt) / (double)TimeSpan.TicksPerSecond * hub.Options.MessagesPerSecond);
        _tokensAt = now;
        if (_tokens < 1) return false;
        _tokens -= 1;
        return true;
    }

    private async Task<bool> HandleMessageAsync(ReadOnlyMemory<byte> message)
    {
        if (_closing) return false; // closing: nothing more is read or acted on
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
            Close(CloseCodes.BadRequest, "bad_request", "Messages must be JSON objects such as {\"type\":\"auth\",\"access_token\":\"...\"}.");
            return false;
        }
        switch (type)
        {
            case "auth" when token is not null:
                return await AuthenticateAsync(token);
            case "pong":
                return true;
            default:
                Close(CloseCodes.BadRequest, "bad_request", type is "auth" ? "auth needs access_token." : $"Unknown message type '{type}'.");
                return false;
        }
    }

    /// `validated`: the token was already checked on the upgrade, and the player's connect rate with it.
    public async Task<bool> AuthenticateAsync(string token, TokenValidationResult? validated = null)
    {
        var result = validated ?? await hub.Tokens.ValidateAsync(token);
        if (!result.IsValid)
        {
            bool expired = result.Exception is SecurityTokenExpiredException;
            Close(expired ? CloseCodes.TokenExpired : CloseCodes.InvalidToken, expired ? "token_expired" : "invalid_token",
                expired ? "The access token has expired." : "The access token is not valid.");
            return false;
        }
        var jwt = (JsonWebToken)result.SecurityToken;
        string? role = jwt.TryGetPayloadValue<string>("role", out var r) ? r : null;
        string? sid = jwt.TryGetPayloadValue<string>("sid", out var s) ? s : null;
        if (!Guid.TryParse(jwt.Subject, out Guid userId) || sid is null)
        {
            Close(CloseCodes.InvalidToken, "invalid_token", "The access token is not valid.");
            return false;
        }
        // The session is recorded before it is checked: a logout marks the session revoked before it looks for
        // its sockets, so either this check sees the revocation or the logout sees this socket's session.
        // A full fence on both sides (here, and in Sessions.MarkRevoked): a store followed by a load may otherwise be
        // reordered, and each side could miss the other.
        if (role == Roles.Player && !(Authenticated && userId != UserId)) Interlocked.Exchange(ref _sessionId, sid);
        if (role != Roles.Player || hub.Sessions.IsRevoked(sid) || (Authenticated && userId != UserId))
        {
            Close(CloseCodes.Forbidden, "forbidden", Authenticated && userId != UserId
                ? "A socket belongs to one player; re-authenticate as the same user."
                : "This token may not watch balances.");
            return false;
        }
        long expires = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero).UtcTicks;
        if (expires <= hub.Time.GetUtcNow().UtcTicks)
        {
            Close(CloseCodes.TokenExpired, "token_expired", "The access token has expired.");
            return false;
        }
        Volatile.Write(ref _expiresAt, expires);
        if (Authenticated)
        {
            if (v2) Enqueue(AuthOk(userId, expires), null, 0);
            return true;
        }
        UserId = userId;
        if (validated is null && admission.TryConnectAs(userId) is { } wait)
        {
            Close(CloseCodes.TooManyConnections, "too_many_connections", $"Reconnecting too fast; try again in {Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds))} s.");
            return false;
        }
        if (!hub.Register(this))
        {
            Close(CloseCodes.TooManyConnections, "too_many_connections", $"At most {hub.Options.MaxSocketsPerPlayer} sockets per player.");
            return false;
        }
        Authenticated = true;
        admission.ReleaseUnauthenticated(ip);
        Interlocked.Increment(ref hub.Stats.Authenticated);
        if (v2) Enqueue(AuthOk(userId, expires), null, 0);
        // Registered first, snapshot second: a change committed in between is queued, and the version
        // check in the send loop drops whichever copy is older.
        IReadOnlyList<BalanceChange> wallets;
        try { wallets = await hub.Ledger.WalletsAsync(userId); }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Without its snapshot the socket would show nothing, or a stale number: close, and the client retries.
            Interlocked.Increment(ref hub.Stats.SnapshotFailures);
            hub.Log.LogWarning(ex, "Socket {SocketId} of {UserId}: the balance snapshot could not be read; closing 1011", Id, userId);
            Close(CloseCodes.InternalError, "unavailable", "Balances cannot be read right now; reconnect shortly.");
            return false;
        }
        foreach (var wallet in wallets)
            Enqueue(BalanceSocket.Serialize(wallet), wallet.Currency, wallet.Version);
        hub.Log.LogInformation("Socket {SocketId} authenticated for {UserId}", Id, userId);
        return true;
    }

    private static byte[] AuthOk(Guid userId, long expiresTicks) => Encoding.UTF8.GetBytes(
        $$"""{"type":"auth_ok","user_id":"{{userId}}","expires_at":"{{new DateTime(expiresTicks, DateTimeKind.Utc):yyyy-MM-dd'T'HH:mm:ss'Z'}}"}""");
}
