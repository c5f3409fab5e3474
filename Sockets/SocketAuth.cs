using Balance.Auth;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Sockets;

// Who a socket's token says it is, read in one place for the `auth` message and the upgrade's Authorization header:
// the token's checks (Auth/Tokens), its claims, whether its login has ended, and when it has expired.
public sealed class SocketAuth(Tokens tokens, Sessions sessions)
{
    /// What a valid token says: its player (or other role), its login, and its exp in UTC ticks.
    public readonly record struct Claims(Guid UserId, string SessionId, string? Role, long ExpiresAt)
    {
        public bool IsPlayer => Role == Roles.Player;
    }

    public Task<TokenValidationResult> ValidateAsync(string token) => tokens.ValidateAsync(token);

    /// The claims of a token that passed its checks; otherwise why the socket closes.
    public static CloseReason? Read(TokenValidationResult result, out Claims claims)
    {
        claims = default;
        if (!result.IsValid) return result.Exception is SecurityTokenExpiredException ? CloseReason.TokenExpired : CloseReason.InvalidToken;
        var jwt = (JsonWebToken)result.SecurityToken;
        string? role = jwt.TryGetPayloadValue<string>("role", out var r) ? r : null;
        string? sid = jwt.TryGetPayloadValue<string>("sid", out var s) ? s : null;
        if (!Guid.TryParse(jwt.Subject, out Guid userId) || sid is null) return CloseReason.InvalidToken;
        claims = new Claims(userId, sid, role, new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero).UtcTicks);
        return null;
    }

    public bool IsRevoked(string sessionId) => sessions.IsRevoked(sessionId);

    // An expired token, and the close it gets, decided here only. Its exp has come on the service's clock (the clock
    // skew the token's checks allow does not lengthen a socket's life), or its checks found it expired (Read above).
    // Offered on the auth message or the upgrade, it is refused (TokenExpired); coming while the socket is open (the
    // housekeeping tick asks), it closes the socket with the hint to send a fresh one (TokenExpiredWhileOpen).
    private static bool HasExpired(long expiresAt, long now) => now >= expiresAt;

    /// Why a token whose checks passed is refused as it is offered: null while its exp has not come.
    public static CloseReason? ExpiredOnAuth(Claims claims, long now) => HasExpired(claims.ExpiresAt, now) ? CloseReason.TokenExpired : null;

    /// Why an open socket closes as its token's exp (`expiresAt`, UTC ticks) comes: null before.
    public static CloseReason? ExpiredWhileOpen(long expiresAt, long now) => HasExpired(expiresAt, now) ? CloseReason.TokenExpiredWhileOpen : null;

    /// The player this upgrade's token could open a socket for — a player's token of a login that has not ended — or
    /// null. Only such a token spends the player's connect allowance (a stolen token of an ended login must not lock
    /// the real player out).
    public Guid? PlayerOf(TokenValidationResult result) =>
        Read(result, out var claims) is null && claims.IsPlayer && !IsRevoked(claims.SessionId) ? claims.UserId : null;
}
