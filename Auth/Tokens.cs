using System.Security.Cryptography;
using System.Text;
using Balance.Storage;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Auth;

public sealed record AccessToken(string Token, DateTimeOffset ExpiresAt);

// Signing key, token creation and the one set of validation rules used by REST and the socket.
public sealed class Tokens
{
    private readonly AuthOptions _options;
    private readonly TimeProvider _time;
    private readonly SymmetricSecurityKey _key;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    public TokenValidationParameters Parameters { get; }

    public Tokens(AuthOptions options, byte[] key, TimeProvider time)
    {
        _options = options;
        _time = time;
        _key = new SymmetricSecurityKey(key);
        RequestHandler = new RememberingTokenHandler(_handler, options.ClockSkew, time);
        Parameters = new TokenValidationParameters
        {
            ValidIssuer = options.Issuer,
            ValidAudience = options.Audience,
            IssuerSigningKey = _key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256], // pinned: no "none", no RS/HS confusion
            ValidateIssuer = true,
            ValidateAudience = true,
            ValidateLifetime = true,
            ValidateIssuerSigningKey = true,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ClockSkew = options.ClockSkew,
            // IdentityModel's own lifetime rule (Validators.ValidateLifetime, the same exceptions), read on the
            // service's clock instead of DateTime.UtcNow: the socket and the sessions already keep time by it.
            LifetimeValidator = (notBefore, expires, _, p) =>
            {
                DateTime now = time.GetUtcNow().UtcDateTime;
                if (expires is null) throw new SecurityTokenNoExpirationException("The token has no expiration time.");
                if (notBefore > expires) throw new SecurityTokenInvalidLifetimeException("The token's nbf is after its exp.") { NotBefore = notBefore, Expires = expires };
                if (notBefore is { } nbf && nbf > now + p.ClockSkew) throw new SecurityTokenNotYetValidException("The token is not yet valid.") { NotBefore = nbf };
                if (expires.Value < now - p.ClockSkew) throw new SecurityTokenExpiredException("The token has expired.") { Expires = expires.Value };
                return true;
            },
            NameClaimType = JwtRegisteredClaimNames.Sub,
            RoleClaimType = "role",
        };
    }

    /// Never valid past `notAfter`, the end of its login.
    public AccessToken CreateAccessToken(Guid userId, string role, string sessionId, DateTime notAfter)
    {
        var now = _time.GetUtcNow().UtcDateTime;
        var expires = now + _options.AccessTokenLifetime;
        if (expires > notAfter) expires = notAfter;
        string token = _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = _options.Issuer,
            Audience = _options.Audience,
            IssuedAt = now,
            NotBefore = now,
            Expires = expires,
            SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.HmacSha256),
            Claims = new Dictionary<string, object>
            {
                [JwtRegisteredClaimNames.Sub] = userId.ToString(),
                ["role"] = role,
                ["sid"] = sessionId,
                [JwtRegisteredClaimNames.Jti] = Guid.NewGuid().ToString("N"),
            },
        });
        return new AccessToken(token, new DateTimeOffset(expires).AddTicks(-(expires.Ticks % TimeSpan.TicksPerSecond)));
    }

    public Task<TokenValidationResult> ValidateAsync(string token) => _handler.ValidateTokenAsync(token, Parameters);

    // What JwtBearer validates REST requests with: the same handler, remembering tokens that passed.
    public TokenHandler RequestHandler { get; }

    public static byte[] LoadSigningKey(AuthOptions options, IDatabase db, IHostEnvironment env)
    {
        if (!string.IsNullOrEmpty(options.SigningKey))
        {
            byte[] configured = options.SigningKey.StartsWith("base64:", StringComparison.Ordinal)
                ? Convert.FromBase64String(options.SigningKey["base64:".Length..])
                : Encoding.UTF8.GetBytes(options.SigningKey);
            if (configured.Length < 32)
                throw new InvalidOperationException("Auth:SigningKey must be at least 32 bytes.");
            return configured;
        }
        if (!env.IsDevelopment())
            throw new InvalidOperationException("Auth:SigningKey is required outside Development (at least 32 bytes; prefix with 'base64:' for binary keys).");
        // Development: generated once and kept with the database (a file beside SQLite's, a row in PostgreSQL's).
        return db.DevelopmentSigningKeyAsync().GetAwaiter().GetResult();
    }
}
