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
    // Failed logins are counted per (username, address) and per address, never per username alone: a stranger's
    // guesses cannot lock the real user out from where the real user is (LoginThrottle).
    [Range(1, int.MaxValue)]
    public int FailedLoginsPerUsername { get; set; } = 5; // per (username, address)
    [Range(1, int.MaxValue)]
    public int FailedLoginsPerAddress { get; set; } = 30; // any usernames
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan FailedLoginWindow { get; set; } = TimeSpan.FromMinutes(5);
    // Past this many failures for one username from everywhere in the window, that username's password is checked at
    // most SlowedLoginsPerSecond times a second from addresses it never logged in from: slowed, never blocked.
    [Range(1, int.MaxValue)]
    public int FailedLoginsPerUsernameEverywhere { get; set; } = 100;
    [Range(1, 1000)]
    public int SlowedLoginsPerSecond { get; set; } = 1;
    // The service-wide password-hash budget (PasswordBudget): hashes run on this many threads of their own, with at
    // most PasswordHashQueue waiting; past that a login is refused at once (503 + Retry-After).
    [Range(1, 64)]
    public int PasswordHashConcurrency { get; set; } = Math.Max(1, Environment.ProcessorCount / 2);
    [Range(1, 10_000)]
    public int PasswordHashQueue { get; set; } = 4 * Math.Max(1, Environment.ProcessorCount / 2);
    // Refreshes per login (a token bucket: RefreshBurstPerLogin at once, then this many a minute, at least four per access token
    // lifetime: LoginThrottle.RefreshesPerLogin) and per client address (a window of a minute); then 429 + Retry-After.
    [Range(1, int.MaxValue)]
    public int RefreshesPerMinutePerLogin { get; set; } = 10;
    [Range(1, int.MaxValue)]
    public int RefreshBurstPerLogin { get; set; } = 3;
    [Range(1, int.MaxValue)]
    public int RefreshesPerMinutePerIp { get; set; } = 120;
    // How long a 429 of a login or refresh limit is held before it is sent (at most its Retry-After): see AuthApi.
    [Range(typeof(TimeSpan), "00:00:00", "00:00:10")]
    public TimeSpan ThrottledAnswerDelay { get; set; } = TimeSpan.FromSeconds(1);
    // Housekeeping: how often expired sessions and refresh tokens are deleted, and how many rows per statement.
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan HousekeepingInterval { get; set; } = TimeSpan.FromMinutes(10);
    [Range(1, 100_000)]
    public int HousekeepingBatch { get; set; } = 1_000;
}

public static class Roles
{
    public const string Player = "player";
    public const string Operator = "operator";
}
