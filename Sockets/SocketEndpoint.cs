using System.Net.WebSockets;
using Balance.Api;
using Balance.Operability;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Sockets;

// The endpoint: what a request must pass before it becomes a socket (WebSocket only, not while stopping, the address's
// allowance, an allowed Origin, the player's allowance with header auth, the unauthenticated cap), the upgrade, and the
// socket's life from its first frame to its close.
public sealed class SocketEndpoint(BalanceSocket hub, SocketContext context, IHostEnvironment env)
{
    private SocketOptions Options => context.Options;
    private SocketAdmission Admission => context.Admission;

    public const string Path = "/ws/balance/player";
    public const string SubProtocolV2 = "balance.v2";
    public const int MaxMessageBytes = 4096;

    // The socket's address, matched like a route: any case, one optional trailing slash.
    public static bool IsSocketPath(HttpContext http) =>
        http.Request.Path.StartsWithSegments(Path, StringComparison.OrdinalIgnoreCase, out var rest) && (!rest.HasValue || rest.Value == "/");

    public bool OriginAllowed(HttpContext http)
    {
        string? origin = http.Request.Headers.Origin;
        // No Origin: not a browser, so no cross-site hijacking to fear; the token still decides.
        if (string.IsNullOrEmpty(origin)) return true;
        if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri)) return false;
        if (string.Equals(uri.Authority, http.Request.Host.Value, StringComparison.OrdinalIgnoreCase)) return true;
        return Options.AllowsCrossOrigin(origin, env.IsDevelopment());
    }

    // The Origin is the client's text: at most MaxLoggedOrigin characters of it, and at most one line a second, which
    // counts the refusals it stands for (a flood of 6 KB origins from many addresses must not fill the disk).
    private const int MaxLoggedOrigin = 100;
    private readonly LogSampler _refusedOrigins = new(context.Time, TimeSpan.FromSeconds(1));

    private void LogRefusedOrigin(string? origin)
    {
        if (!_refusedOrigins.TryTake(out int unlogged)) return;
        if (origin is { Length: > MaxLoggedOrigin }) origin = string.Concat(origin.AsSpan(0, MaxLoggedOrigin), $"… ({origin.Length} characters)");
        context.Log.LogWarning("Refused socket from origin {Origin} (and {Unlogged} more refused origins since the last line)", origin, unlogged);
    }

    // A refusal before the upgrade: its row of the problem-code table (ProblemCodes.SocketUpgrade), written the
    // table's way, and how long to wait before trying again.
    private static readonly TimeSpan RestartWait = TimeSpan.FromSeconds(1), UnauthenticatedWait = TimeSpan.FromSeconds(5);

    private static Task RefuseAsync(HttpContext http, ProblemCode row, TimeSpan? retryAfter = null)
    {
        if (retryAfter is { } wait) RetryAfter.Set(http.Response, wait);
        return row.Problem().ExecuteAsync(http);
    }

    private static Task TooFastAsync(HttpContext http, TimeSpan wait) =>
        ProblemCodes.ReconnectingTooFast.Problem(RetryAfter.Set(http.Response, wait)).ExecuteAsync(http);

    public async Task HandleAsync(HttpContext http)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            await RefuseAsync(http, ProblemCodes.WebSocketRequired);
            return;
        }
        if (hub.Stopping)
        {
            await RefuseAsync(http, ProblemCodes.ServerRestarting, RestartWait);
            return;
        }
        // The address's allowance first: a refused upgrade (a wrong Origin among them) still spends it, so a flood of
        // them from one address is answered 429 like any other.
        // Counted as the auth routes count (an IPv6 /64 is one address: its owner picks the low 64 bits at will).
        string ip = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        string address = Balance.Auth.ClientAddress.Key(http);
        if (Admission.TryConnectFrom(address) is { } addressWait)
        {
            await TooFastAsync(http, addressWait);
            return;
        }
        if (!OriginAllowed(http))
        {
            LogRefusedOrigin(http.Request.Headers.Origin);
            await RefuseAsync(http, ProblemCodes.OriginNotAllowed);
            return;
        }
        bool v2 = http.WebSockets.WebSocketRequestedProtocols.Contains(SubProtocolV2);
        string? headerToken = http.Request.Headers.Authorization.ToString() is { } h && h.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? h[7..].Trim() : null;
        // With the token on the upgrade, the player is known before the upgrade: refuse in HTTP, as for the address.
        TokenValidationResult? headerAuth = null;
        if (headerToken is not null)
        {
            headerAuth = await context.Auth.ValidateAsync(headerToken);
            if (context.Auth.PlayerOf(headerAuth) is { } player && Admission.TryConnectAs(player) is { } playerWait)
            {
                await TooFastAsync(http, playerWait);
                return;
            }
        }
        if (!Admission.TryHoldUnauthenticated(address))
        {
            await RefuseAsync(http, ProblemCodes.TooManyUnauthenticatedSockets, UnauthenticatedWait);
            return;
        }
        WebSocket ws;
        try
        {
            ws = await http.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { SubProtocol = v2 ? SubProtocolV2 : null });
        }
        catch
        {
            Admission.ReleaseUnauthenticated(address);
            throw;
        }
        // The upgrade request's headers would stay referenced for the socket's whole life (a browser's cookies and
        // user agent among them, often a KB or more); everything that needed them ran before the upgrade.
        http.Request.Headers.Clear();
        var connection = new Connection(context, hub, ws, v2, ip, hub.NextId(), context.Now + Options.AuthTimeout.Ticks);
        if (http.Features.Get<ControlFrameTap>() is { } tap) tap.Sink = connection;
        hub.Attach(connection);
        try
        {
            var sending = connection.SendLoopAsync();
            bool authenticated = headerToken is null || await connection.AuthenticateAsync(headerToken, headerAuth);
            // This method's locals live as long as the socket: the token and its validated form (claims, signature,
            // a few KB) are let go once the socket is authenticated.
            (headerToken, headerAuth) = (null, null);
            if (authenticated) await connection.ReceiveLoopAsync();
            connection.Close(CloseReason.Echo(connection.PeerCloseCode ?? CloseCodes.GoingAway)); // ends the send loop if the peer left first
            await sending;
        }
        finally
        {
            hub.Detach(connection);
            if (!connection.Authenticated) Admission.ReleaseUnauthenticated(address);
            context.Log.LogInformation("Socket {SocketId} of {UserId} closed with {CloseCode}", connection.Id, connection.UserId, connection.CloseCode);
            ws.Dispose();
        }
    }
}
