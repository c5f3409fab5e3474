using System.Buffers;
using System.Threading.Tasks.Sources;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.RateLimiting;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance;

public sealed class SocketOptions
{
    public TimeSpan AuthTimeout { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(10);
    // WebSocket-level pings for every socket (guide protocol included): a peer that does not answer one within
    // KeepAliveTimeout is dropped, so a phone that lost its signal does not keep its place under MaxSocketsPerPlayer.
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(15);
    public int MaxSocketsPerPlayer { get; set; } = 10;
    public int MaxUnauthenticatedPerIp { get; set; } = 200;
    public double MessagesPerSecond { get; set; } = 5;
    public int MessageBurst { get; set; } = 20;
    public string[] AllowedOrigins { get; set; } = [];
    // Opening a socket costs a token check and a database read (the snapshot): a client reconnecting in a tight loop
    // is slowed down first, per address (HTTP 429 + Retry-After on the upgrade) and per player (429 with header auth;
    // close 4004 after the auth message, before the snapshot read). Token buckets: a burst, then a steady rate.
    public int ConnectBurstPerAddress { get; set; } = 200;
    public double ConnectsPerSecondPerAddress { get; set; } = 50;
    public int ConnectBurstPerPlayer { get; set; } = 20;
    public double ConnectsPerSecondPerPlayer { get; set; } = 2;

    // A browser origin other than the service's own: configured ones, and in Development any loopback one.
    // Shared by the socket's Origin check and CORS for the REST routes.
    public bool AllowsCrossOrigin(string origin, bool development) =>
        AllowedOrigins.Any(o => string.Equals(o.TrimEnd('/'), origin.TrimEnd('/'), StringComparison.OrdinalIgnoreCase))
        || (development && Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.IsLoopback);
}

public static class CloseCodes
{
    public const int GoingAway = 1001, PolicyViolation = 1008, TooBig = 1009, InternalError = 1011;
    public const int TokenExpired = 4001, AuthTimeout = 4002, SlowConsumer = 4003, TooManyConnections = 4004;
    public const int BadRequest = 4500, InvalidToken = 4501, Forbidden = 4503;

    public static string Reason(int code) => code switch
    {
        GoingAway => "server_going_away",
        PolicyViolation => "rate_limited",
        TooBig => "frame_too_large",
        InternalError => "unavailable",
        TokenExpired => "token_expired",
        AuthTimeout => "auth_timeout",
        SlowConsumer => "slow_consumer",
        TooManyConnections => "too_many_connections",
        BadRequest => "bad_request",
        InvalidToken => "invalid_token",
        Forbidden => "forbidden",
        _ => "closed",
    };
}

// Everything about sockets: the upgrade, the auth handshake, one send loop per socket,
// and the fan-out of committed changes read from the ledger's channel.
public sealed class BalanceSocket : BackgroundService, IHostedLifecycleService
{
    public const string SubProtocolV2 = "balance.v2";
    public const int MaxMessageBytes = 4096;

    private readonly Ledger _ledger;
    private readonly Tokens _tokens;
    private readonly Sessions _sessions;
    private readonly SocketOptions _options;
    private readonly ILogger<BalanceSocket> _log;
    private readonly ILogger _audit; // "Balance.Audit": one line per push, beside the ledger's line per commit

    private static readonly Action<ILogger, Guid, string, long, long, Exception?> LogPush = LoggerMessage.Define<Guid, string, long, long>(
        LogLevel.Information, new EventId(2, "Pushed"), "Pushed {UserId} {Currency} v{Version} to socket {SocketId}");
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<Connection, byte> _all = new();
    private readonly ConcurrentDictionary<Guid, Connection[]> _byPlayer = new();
    private readonly ConcurrentDictionary<string, int> _pendingByIp = new();
    private long _nextId;
    private volatile bool _stopping;
    private readonly PartitionedRateLimiter<string> _connectsByAddress;
    private readonly PartitionedRateLimiter<Guid> _connectsByPlayer;

    public SocketStats Stats { get; } = new();

    public sealed class SocketStats
    {
        public long Sent, Coalesced, Dropped, DeadPeers, SnapshotFailures, HousekeepingFailures, ConnectsLimited;
        public int Open, Authenticated;
        // The most messages ever waiting in one socket's outbox at once: the bound (one balance per currency, plus
        // control frames) made visible, so a queue that grows with the updates shows up without a heap profile.
        public int DeepestOutbox;
        internal void NoteDepth(int depth)
        {
            int seen;
            while (depth > (seen = Volatile.Read(ref DeepestOutbox)) && Interlocked.CompareExchange(ref DeepestOutbox, depth, seen) != seen) { }
        }
        public event Action<int>? Closed;
        public event Action<double>? Pushed; // milliseconds from the commit to the message written to the socket
        internal void ReportClose(int code) => Closed?.Invoke(code);
        internal void ReportPush(long committedAt) { if (committedAt != 0) Pushed?.Invoke(Stopwatch.GetElapsedTime(committedAt).TotalMilliseconds); }
    }

    public BalanceSocket(Ledger ledger, Tokens tokens, Sessions sessions, SocketOptions options, ILogger<BalanceSocket> log, ILoggerFactory loggers, TimeProvider time)
    {
        (_ledger, _tokens, _sessions, _options, _log, _time) = (ledger, tokens, sessions, options, log, time);
        _audit = loggers.CreateLogger("Balance.Audit");
        _connectsByAddress = ConnectLimiter<string>(options.ConnectBurstPerAddress, options.ConnectsPerSecondPerAddress);
        _connectsByPlayer = ConnectLimiter<Guid>(options.ConnectBurstPerPlayer, options.ConnectsPerSecondPerPlayer);
        _sessions.Revoked += sid =>
        {
            foreach (var c in _all.Keys) if (c.SessionId == sid) c.Close(CloseCodes.Forbidden, "session_revoked", "This login has ended.");
        };
    }

    public int OpenSockets => _all.Count;

    // One token bucket per key; the partitioned limiter replenishes them all from one timer and drops idle ones.
    private static PartitionedRateLimiter<TKey> ConnectLimiter<TKey>(int burst, double perSecond) where TKey : notnull =>
        PartitionedRateLimiter.Create<TKey, TKey>(key => RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = burst,
            TokensPerPeriod = Math.Max(1, (int)Math.Round(perSecond / 10)),
            ReplenishmentPeriod = TimeSpan.FromSeconds(Math.Max(1, (int)Math.Round(perSecond / 10)) / perSecond),
            QueueLimit = 0,
            AutoReplenishment = false,
        }));

    // Null when allowed; otherwise how long to wait.
    private TimeSpan? TryConnect<TKey>(PartitionedRateLimiter<TKey> limiter, TKey key)
    {
        using var lease = limiter.AttemptAcquire(key);
        if (lease.IsAcquired) return null;
        Interlocked.Increment(ref Stats.ConnectsLimited);
        return lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) && wait > TimeSpan.Zero ? wait : TimeSpan.FromSeconds(1);
    }

    private static Task TooFastAsync(HttpContext http, TimeSpan wait)
    {
        int seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        http.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Results.Problem(statusCode: 429, detail: $"Reconnecting too fast; try again in {seconds} s.",
            extensions: new Dictionary<string, object?> { ["code"] = "too_many_connections" }).ExecuteAsync(http);
    }

    // ---- fan-out: committed change → every socket of that player, serialized once ----

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250), _time);
        var housekeeping = HousekeepingAsync(timer, stoppingToken);
        try
        {
            await foreach (var change in _ledger.Changes.ReadAllAsync(stoppingToken))
            {
                if (!_byPlayer.TryGetValue(change.UserId, out var sockets)) continue;
                byte[] bytes = Serialize(change);
                foreach (var socket in sockets) socket.Enqueue(bytes, change.Currency, change.Version, change.CommittedAt);
            }
        }
        catch (OperationCanceledException) { }
        await housekeeping;
    }

    public static byte[] Serialize(BalanceChange change) => JsonSerializer.SerializeToUtf8Bytes(BalanceMessage.From(change), WireJson.Default.BalanceMessage);

    // One timer for all sockets: auth deadlines, token expiry, heartbeats.
    private async Task HousekeepingAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                long now = _time.GetUtcNow().UtcTicks;
                foreach (var (c, _) in _all) // enumerating the dictionary itself copies nothing
                {
                    // One socket's failure must not end deadlines, expiry, heartbeats and slow-consumer checks for all.
                    try { c.Tick(now); }
                    catch (Exception ex)
                    {
                        Interlocked.Increment(ref Stats.HousekeepingFailures);
                        try { _log.LogError(ex, "Housekeeping of socket {SocketId} failed; closing it", c.Id); } catch (Exception) { }
                        c.Abort();
                    }
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    // Shutdown: let in-flight commits finish and reach the sockets, then close every socket with 1001
    // (sockets are long requests: the web server would otherwise wait for them until its timeout).
    public async Task StoppingAsync(CancellationToken ct)
    {
        _stopping = true; // from now on new sockets are refused (503) or closed 1001 at once
        _ledger.StopAccepting(); // so every commit a client is told of reaches the sockets before the 1001
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(5));
        await _ledger.DrainAsync(limit.Token);
        while (_ledger.Changes.Count > 0 && !limit.IsCancellationRequested) await Task.Delay(10, CancellationToken.None);
        foreach (var c in _all.Keys) c.Close(CloseCodes.GoingAway, "server_going_away", "The server is restarting; reconnect.");
        while (!_all.IsEmpty && !limit.IsCancellationRequested) await Task.Delay(10, CancellationToken.None);
    }

    public Task StartingAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken ct) => Task.CompletedTask;

    // ---- the endpoint ----

    public const string Path = "/ws/balance/player";

    // The socket's address, matched like a route: any case, one optional trailing slash.
    public static bool IsSocketPath(HttpContext http) =>
        http.Request.Path.StartsWithSegments(Path, StringComparison.OrdinalIgnoreCase, out var rest) && (!rest.HasValue || rest.Value == "/");

    public bool OriginAllowed(HttpContext http, IHostEnvironment env)
    {
        string? origin = http.Request.Headers.Origin;
        // No Origin: not a browser, so no cross-site hijacking to fear; the token still decides.
        if (string.IsNullOrEmpty(origin)) return true;
        if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri)) return false;
        if (string.Equals(uri.Authority, http.Request.Host.Value, StringComparison.OrdinalIgnoreCase)) return true;
        return _options.AllowsCrossOrigin(origin, env.IsDevelopment());
    }

    public async Task HandleAsync(HttpContext http, IHostEnvironment env)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            await Results.Problem(statusCode: 400, detail: "This endpoint speaks WebSocket only.", extensions: new Dictionary<string, object?> { ["code"] = "websocket_required" }).ExecuteAsync(http);
            return;
        }
        if (_stopping)
        {
            http.Response.Headers.RetryAfter = "1";
            await Results.Problem(statusCode: 503, detail: "The server is restarting; reconnect.", extensions: new Dictionary<string, object?> { ["code"] = "unavailable" }).ExecuteAsync(http);
            return;
        }
        if (!OriginAllowed(http, env))
        {
            _log.LogWarning("Refused socket from origin {Origin}", (string?)http.Request.Headers.Origin);
            await Results.Problem(statusCode: 403, detail: "Origin not allowed.", extensions: new Dictionary<string, object?> { ["code"] = "origin_not_allowed" }).ExecuteAsync(http);
            return;
        }
        string ip = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        if (TryConnect(_connectsByAddress, ip) is { } addressWait)
        {
            await TooFastAsync(http, addressWait);
            return;
        }
        bool v2 = http.WebSockets.WebSocketRequestedProtocols.Contains(SubProtocolV2);
        string? headerToken = http.Request.Headers.Authorization.ToString() is { } h && h.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? h[7..].Trim() : null;
        // With the token on the upgrade, the player is known before the upgrade: refuse in HTTP, as for the address.
        TokenValidationResult? headerAuth = null;
        if (headerToken is not null)
        {
            headerAuth = await _tokens.ValidateAsync(headerToken);
            if (headerAuth.IsValid && Guid.TryParse(((JsonWebToken)headerAuth.SecurityToken).Subject, out var player)
                && TryConnect(_connectsByPlayer, player) is { } playerWait)
            {
                await TooFastAsync(http, playerWait);
                return;
            }
        }
        if (_pendingByIp.AddOrUpdate(ip, 1, (_, n) => n + 1) > _options.MaxUnauthenticatedPerIp)
        {
            Release(ip);
            http.Response.Headers.RetryAfter = "5";
            await Results.Problem(statusCode: 429, detail: "Too many unauthenticated sockets from this address.", extensions: new Dictionary<string, object?> { ["code"] = "too_many_connections" }).ExecuteAsync(http);
            return;
        }
        WebSocket ws;
        try
        {
            ws = await http.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { SubProtocol = v2 ? SubProtocolV2 : null });
        }
        catch
        {
            Release(ip);
            throw;
        }
        var connection = new Connection(this, ws, v2, ip, Interlocked.Increment(ref _nextId), _time.GetUtcNow().UtcTicks + _options.AuthTimeout.Ticks);
        _all.TryAdd(connection, 0);
        Interlocked.Increment(ref Stats.Open);
        if (_stopping) connection.Close(CloseCodes.GoingAway, "server_going_away", "The server is restarting; reconnect."); // raced the close loop
        try
        {
            var sending = connection.SendLoopAsync();
            if (headerToken is null || await connection.AuthenticateAsync(headerToken, headerAuth))
                await connection.ReceiveLoopAsync();
            connection.Close(CloseCodes.GoingAway, null, null); // ends the send loop if the peer left first
            await sending;
        }
        finally
        {
            _all.TryRemove(connection, out _);
            Interlocked.Decrement(ref Stats.Open);
            if (connection.Authenticated) { Unregister(connection); Interlocked.Decrement(ref Stats.Authenticated); }
            else Release(ip);
            Stats.ReportClose(connection.CloseCode);
            _log.LogInformation("Socket {SocketId} of {UserId} closed with {CloseCode}", connection.Id, connection.UserId, connection.CloseCode);
            ws.Dispose();
        }
    }

    private void Release(string ip)
    {
        if (_pendingByIp.AddOrUpdate(ip, 0, (_, n) => n - 1) <= 0) _pendingByIp.TryRemove(new KeyValuePair<string, int>(ip, 0));
    }

    private bool Register(Connection c)
    {
        while (true)
        {
            var current = _byPlayer.GetOrAdd(c.UserId, []);
            if (current.Length >= _options.MaxSocketsPerPlayer) return false;
            if (_byPlayer.TryUpdate(c.UserId, [.. current, c], current)) return true;
        }
    }

    private void Unregister(Connection c)
    {
        while (_byPlayer.TryGetValue(c.UserId, out var current))
        {
            var next = current.Where(x => x != c).ToArray();
            if (next.Length == 0 ? _byPlayer.TryRemove(new KeyValuePair<Guid, Connection[]>(c.UserId, current)) : _byPlayer.TryUpdate(c.UserId, next, current)) return;
        }
    }

    // ---- one socket ----

    private sealed class Connection(BalanceSocket hub, WebSocket ws, bool v2, string ip, long id, long authDeadline) : IValueTaskSource
    {
        private static readonly byte[] Ping = """{"type":"ping"}"""u8.ToArray();

        public readonly long Id = id;
        public Guid UserId;
        public volatile string? SessionId;
        public bool Authenticated;
        public int CloseCode = 1006;
        private long _expiresAt, _lastSeen = hub._time.GetUtcNow().UtcTicks, _lastPing = hub._time.GetUtcNow().UtcTicks;
        private double _tokens = hub._options.MessageBurst;
        private long _tokensAt = hub._time.GetUtcNow().UtcTicks;

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
                    LogPush(hub._audit, UserId, next.Currency, next.Version, Id, null);
                }
            }
        }

        private async Task<bool> SendAsync(byte[] bytes)
        {
            if (ws.State != WebSocketState.Open) return false;
            try
            {
                // No timer per send: the housekeeping tick sees a send stuck past SendTimeout (SlowCheck).
                Volatile.Write(ref _sendStarted, hub._time.GetUtcNow().UtcTicks);
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
            if (started == 0 || now - started <= hub._options.SendTimeout.Ticks || CloseCode == CloseCodes.SlowConsumer) return;
            CloseCode = CloseCodes.SlowConsumer;
            bool wake;
            lock (Gate)
            {
                _close ??= new Outgoing([], null, 0, 0, CloseCodes.SlowConsumer, "slow_consumer");
                _closing = true;
                wake = _waiting; // the stuck send may have finished meanwhile and the loop gone idle: let it end
                _waiting = false;
            }
            hub._log.LogWarning("Socket {SocketId} of {UserId} is a slow consumer; closing 4003", Id, UserId);
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
                await ws.CloseOutputAsync((WebSocketCloseStatus)close.CloseCode, close.Reason, CancellationToken.None).WaitAsync(hub._options.SendTimeout);
                // The peer should answer with its own close frame; if it does not, stop waiting for it.
                _ = Task.Delay(TimeSpan.FromSeconds(5)).ContinueWith(_ => ws.Abort(), TaskScheduler.Default);
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
                    hub._log.LogInformation("Socket {SocketId} from {RemoteIp} sent no auth within {AuthTimeout}; closing 4002", Id, ip, hub._options.AuthTimeout);
                return;
            }
            if (now >= Volatile.Read(ref _expiresAt)) { Close(CloseCodes.TokenExpired, "token_expired", "The access token expired; send a fresh one or reconnect."); return; }
            if (!v2) return;
            long interval = hub._options.HeartbeatInterval.Ticks;
            if (now - Volatile.Read(ref _lastSeen) > 2 * interval + TimeSpan.TicksPerSecond) { CloseCode = CloseCodes.GoingAway; ws.Abort(); return; }
            if (now - _lastPing >= interval) { _lastPing = now; Enqueue(Ping, null, 0); }
        }

        // No pong within KeepAliveTimeout: the runtime aborts the socket, and the pending read fails as cancelled (on
        // Kestrel, "aborted by the application") — with no close of ours under way. A peer that leaves instead fails the
        // read with a WebSocketException (closed without a close frame, or reset).
        private bool IsKeepAliveTimeout(Exception ex) =>
            ex is OperationCanceledException && ws.State == WebSocketState.Aborted && CloseCode == 1006 && !_closing && !hub._stopping;

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
                    buffer = ArrayPool<byte>.Shared.Rent(MaxMessageBytes);
                    int count = 0;
                    ValueWebSocketReceiveResult result;
                    do
                    {
                        if (count == MaxMessageBytes) { Close(CloseCodes.TooBig, "frame_too_large", $"Messages are limited to {MaxMessageBytes} bytes."); return; }
                        result = await ws.ReceiveAsync(buffer.AsMemory(count, MaxMessageBytes - count), CancellationToken.None);
                        count += result.Count;
                    } while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);
                    if (result.MessageType == WebSocketMessageType.Close) return;
                    Volatile.Write(ref _lastSeen, hub._time.GetUtcNow().UtcTicks);
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
                hub._log.LogInformation("Socket {SocketId} of {UserId} stopped answering pings; dropped", Id, UserId);
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

        private bool TakeToken()
        {
            long now = hub._time.GetUtcNow().UtcTicks;
            _tokens = Math.Min(hub._options.MessageBurst, _tokens + (now - _tokensAt) / (double)TimeSpan.TicksPerSecond * hub._options.MessagesPerSecond);
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
            var result = validated ?? await hub._tokens.ValidateAsync(token);
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
            if (role == Roles.Player && !(Authenticated && userId != UserId)) SessionId = sid;
            if (role != Roles.Player || hub._sessions.IsRevoked(sid) || (Authenticated && userId != UserId))
            {
                Close(CloseCodes.Forbidden, "forbidden", Authenticated && userId != UserId
                    ? "A socket belongs to one player; re-authenticate as the same user."
                    : "This token may not watch balances.");
                return false;
            }
            long expires = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero).UtcTicks;
            if (expires <= hub._time.GetUtcNow().UtcTicks)
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
            if (validated is null && hub.TryConnect(hub._connectsByPlayer, userId) is { } wait)
            {
                Close(CloseCodes.TooManyConnections, "too_many_connections", $"Reconnecting too fast; try again in {Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds))} s.");
                return false;
            }
            if (!hub.Register(this))
            {
                Close(CloseCodes.TooManyConnections, "too_many_connections", $"At most {hub._options.MaxSocketsPerPlayer} sockets per player.");
                return false;
            }
            Authenticated = true;
            hub.Release(ip);
            Interlocked.Increment(ref hub.Stats.Authenticated);
            if (v2) Enqueue(AuthOk(userId, expires), null, 0);
            // Registered first, snapshot second: a change committed in between is queued, and the version
            // check in the send loop drops whichever copy is older.
            IReadOnlyList<BalanceChange> wallets;
            try { wallets = await hub._ledger.WalletsAsync(userId); }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Without its snapshot the socket would show nothing, or a stale number: close, and the client retries.
                Interlocked.Increment(ref hub.Stats.SnapshotFailures);
                hub._log.LogWarning(ex, "Socket {SocketId} of {UserId}: the balance snapshot could not be read; closing 1011", Id, userId);
                Close(CloseCodes.InternalError, "unavailable", "Balances cannot be read right now; reconnect shortly.");
                return false;
            }
            foreach (var wallet in wallets)
                Enqueue(Serialize(wallet), wallet.Currency, wallet.Version);
            hub._log.LogInformation("Socket {SocketId} authenticated for {UserId}", Id, userId);
            return true;
        }

        private static byte[] AuthOk(Guid userId, long expiresTicks) => Encoding.UTF8.GetBytes(
            $$"""{"type":"auth_ok","user_id":"{{userId}}","expires_at":"{{new DateTime(expiresTicks, DateTimeKind.Utc):yyyy-MM-dd'T'HH:mm:ss'Z'}}"}""");
    }
}
