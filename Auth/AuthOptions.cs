using System.ComponentModel.DataAnnotations;

namespace Balance.Auth;

public sealed class AuthOptions
{
    public string? SigningKey { get; set; }
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromMinutes(15);
    // A login slides: each refresh extends it by RefreshTokenLifetime (the idle limit), never past SessionLifetime
    // from the login (the absolute cap); then the user logs in again.
    [Range(typeof(TimeSpan), "00:00:01", "3650.00:00:00")]
    public TimeSpan RefreshTokenLifetime { get; set; } = TimeSpan.FromDays(7);
    [Range(typeof(TimeSpan), "00:00:01", "3650.00:00:00")]
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromDays(30);
    // A refresh whose answer was lost may be repeated with the spent token for this long (see Logins.RefreshAsync).
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan RefreshReuseGrace { get; set; } = TimeSpan.FromSeconds(5);
    [Range(typeof(TimeSpan), "00:00:00", "00:00:30")] // the contract: never more than 30 s
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);
    public string Issuer { get; set; } = "balance";
    public string Audience { get; set; } = "balance";
    [Range(1, int.MaxValue)]
    public int LoginAttemptsPerMinutePerIp { get; set; } = 30;
    [Range(1, int.MaxValue)]
    public int FailedLoginsPerUsername { get; set; } = 5;
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan FailedLoginWindow { get; set; } = TimeSpan.FromMinutes(5);
}

public static class Roles
{
    public const string Player = "player";
    public const string Operator = "operator";
}
