using Balance.Api;

namespace Balance.Sockets;

// Why a socket closes, as one value: the close code, the close frame's reason (the wire vocabulary of the contract,
// CloseCodes.Reason), and for balance.v2 clients the error frame sent before it (its code and message). Each decision
// names one of these; no close spells its code or texts again (centrifuge's disconnect.go keeps the same vocabulary).
public sealed record CloseReason(int Code, string? ErrorCode, string? Message)
{
    public string Reason => CloseCodes.Reason(Code);

    // The words of the upgrade's 503 while the server stops.
    public static readonly CloseReason GoingAway = new(CloseCodes.GoingAway, "server_going_away", ProblemCodes.ServerRestarting.Text());
    public static readonly CloseReason RateLimited = new(CloseCodes.PolicyViolation, "rate_limited", "Too many messages.");
    public static readonly CloseReason TooBig = new(CloseCodes.TooBig, "frame_too_large", $"Messages are limited to {SocketEndpoint.MaxMessageBytes} bytes.");
    public static readonly CloseReason Unavailable = new(CloseCodes.InternalError, "unavailable", "Balances cannot be read right now; reconnect shortly.");

    // The token's exp has passed: as it is offered, and later while the socket is open (SocketAuth picks which).
    public static readonly CloseReason TokenExpired = new(CloseCodes.TokenExpired, "token_expired", "The access token has expired.");
    public static readonly CloseReason TokenExpiredWhileOpen = new(CloseCodes.TokenExpired, "token_expired", "The access token expired; send a fresh one or reconnect.");
    public static readonly CloseReason AuthTimeout = new(CloseCodes.AuthTimeout, "auth_timeout", "No auth message within the deadline.");
    // Nothing is sent before it: the peer is not reading.
    public static readonly CloseReason SlowConsumer = new(CloseCodes.SlowConsumer, null, null);
    public static CloseReason TooManySockets(int max) => new(CloseCodes.TooManyConnections, "too_many_connections", $"At most {max} sockets per player.");
    // The words of the upgrade's 429 (a token on the upgrade is refused there; one in the auth message, here).
    public static CloseReason ReconnectingTooFast(TimeSpan wait) =>
        new(CloseCodes.TooManyConnections, "too_many_connections", ProblemCodes.ReconnectingTooFast.Text(RetryAfter.Seconds(wait)));

    public static readonly CloseReason NotJson = new(CloseCodes.BadRequest, "bad_request", "Messages must be JSON objects such as {\"type\":\"auth\",\"access_token\":\"...\"}.");
    public static readonly CloseReason Binary = new(CloseCodes.BadRequest, "bad_request", "Binary frames are not accepted; send JSON text.");
    public static readonly CloseReason EmptyMessage = new(CloseCodes.BadRequest, "bad_request", "Empty message.");
    public static readonly CloseReason AuthWithoutToken = new(CloseCodes.BadRequest, "bad_request", "auth needs access_token.");
    public static CloseReason UnknownType(string? type) => new(CloseCodes.BadRequest, "bad_request", $"Unknown message type '{type}'.");

    public static readonly CloseReason InvalidToken = new(CloseCodes.InvalidToken, "invalid_token", "The access token is not valid.");
    public static readonly CloseReason NotAPlayer = new(CloseCodes.Forbidden, "forbidden", "This token may not watch balances.");
    public static readonly CloseReason AnotherPlayer = new(CloseCodes.Forbidden, "forbidden", "A socket belongs to one player; re-authenticate as the same user.");
    public static readonly CloseReason SessionRevoked = new(CloseCodes.Forbidden, "session_revoked", "This login has ended.");

    // The peer closed first: our close answers with its code (RFC 6455 §5.5.1), and nothing before it.
    public static CloseReason Echo(int code) => new(code, null, null);
}
