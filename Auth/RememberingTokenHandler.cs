using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Auth;

// A client sends the same access token with every request; checking its HMAC and parsing its JSON again each
// time is a large share of a small request's CPU (BENCHMARKS.md). A token that validated is remembered by its exact text
// (one changed byte misses and is validated in full) until it expires: the lifetime, with the same clock skew, is
// checked again on every hit, and revocation is checked per request after this (JwtBearer's OnTokenValidated).
// Each hit gets a ClaimsIdentity of its own, so requests never share a mutable identity.
public sealed class RememberingTokenHandler(JsonWebTokenHandler inner, TimeSpan clockSkew, TimeProvider time) : TokenHandler
{
    private const int Capacity = 10_000; // ~10k live tokens; past that, start over (the next requests validate in full)
    private sealed record Entry(JsonWebToken Token, Claim[] Claims, string? AuthenticationType, string NameType, string RoleType, DateTime ValidTo);
    private readonly ConcurrentDictionary<string, Entry> _valid = new(StringComparer.Ordinal);

    public override async Task<TokenValidationResult> ValidateTokenAsync(string token, TokenValidationParameters parameters)
    {
        if (_valid.TryGetValue(token, out var hit))
        {
            if (time.GetUtcNow().UtcDateTime <= hit.ValidTo + clockSkew)
                return new TokenValidationResult
                {
                    IsValid = true,
                    SecurityToken = hit.Token,
                    ClaimsIdentity = new CaseSensitiveClaimsIdentity(hit.Claims, hit.AuthenticationType, hit.NameType, hit.RoleType), // as a miss returns
                };
            _valid.TryRemove(token, out _);
        }
        var result = await inner.ValidateTokenAsync(token, parameters);
        if (result.IsValid && result.SecurityToken is JsonWebToken jwt && result.ClaimsIdentity is { } identity)
        {
            if (_valid.Count >= Capacity) _valid.Clear();
            _valid[token] = new Entry(jwt, [.. identity.Claims], identity.AuthenticationType, identity.NameClaimType, identity.RoleClaimType, jwt.ValidTo);
        }
        return result;
    }

    public override SecurityToken ReadToken(string token) => inner.ReadToken(token);
}
