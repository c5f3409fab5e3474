using System.Collections.Concurrent;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Threading.RateLimiting;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Auth;

public sealed class AuthOptions
{
    public string? SigningKey { get; set; }
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromMinutes(15);
    // A login slides: each refresh extends it by RefreshTokenLifetime (the idle limit), never past SessionLifetime
    // from the login (the absolute cap); then the user logs in again.
    public TimeSpan RefreshTokenLifetime { get; set; } = TimeSpan.FromDays(7);
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromDays(30);
    // A refresh whose answer was lost may be repeated with the spent token for this long (see Logins.RefreshAsync).
    public TimeSpan RefreshReuseGrace { get; set; } = TimeSpan.FromSeconds(5);
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);
    public string Issuer { get; set; } = "balance";
    public string Audience { get; set; } = "balance";
    public int LoginAttemptsPerMinutePerIp { get; set; } = 30;
    public int FailedLoginsPerUsername { get; set; } = 5;
    public TimeSpan FailedLoginWindow { get; set; } = TimeSpan.FromMinutes(5);
}

public static class Roles
{
    public const string Player = "player";
    public const string Operator = "operator";
}
