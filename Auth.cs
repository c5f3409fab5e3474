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

namespace Balance;

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

public sealed record UserRecord(Guid Id, string Username, string PasswordHash, string Role);
public sealed record UserView(Guid UserId, string Username, string Role);
public sealed record LoginRequest(string? Username, string? Password);
public sealed record RefreshRequest(string? RefreshToken);
public sealed record CreateUserRequest(string? Username, string? Password, string? Role);
public sealed record TokenPair(string AccessToken, string RefreshToken, string TokenType, int ExpiresIn, Guid UserId, string Role);
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

    public static byte[] LoadSigningKey(AuthOptions options, Database db, IHostEnvironment env)
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
        // Development: generate once and keep beside the database so tokens survive a restart.
        string path = db.FilePath + ".key";
        if (File.Exists(path)) return Convert.FromBase64String(File.ReadAllText(path).Trim());
        byte[] key = RandomNumberGenerator.GetBytes(64);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, Convert.ToBase64String(key));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return key;
    }
}

// A client sends the same access token with every request; checking its HMAC and parsing its JSON again each
// time was about a tenth of the server's CPU under load. A token that validated is remembered by its exact text
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

// Login sessions. Revocation is checked on every request and socket, so it is kept in memory
// (loaded at start) and announced to whoever holds open sockets of that session.
public sealed class Sessions(Database db, AuthOptions options, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, byte> _revoked = new(StringComparer.Ordinal);
    public event Action<string>? Revoked;

    public bool IsRevoked(string? sessionId) => sessionId is null || _revoked.ContainsKey(sessionId);

    // Every ended login whose newest access token could still pass validation (its expiry, plus the clock skew).
    public async Task LoadAsync()
    {
        await using var connection = await db.OpenAsync();
        foreach (string id in await connection.QueryAsync<string>(
                     "SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND access_expires_at > @cutoff",
                     new { cutoff = Logins.Stamp((time.GetUtcNow() - options.ClockSkew).UtcDateTime) }))
            _revoked.TryAdd(id, 0);
    }

    public void MarkRevoked(string sessionId)
    {
        if (_revoked.TryAdd(sessionId, 0)) Revoked?.Invoke(sessionId);
    }
}

// Login throttles on the framework's partitioned rate limiters: attempts per client address (a window of a minute),
// and failed logins per username (a window of FailedLoginWindow that counts failures only, alike for real and unknown
// names). The limiter creates a partition on first use and drops it once idle: nothing on the login path scans them.
// Per node: with several nodes behind a balancer, each node counts its own (the README says so).
public sealed class LoginThrottle : IDisposable
{
    private readonly PartitionedRateLimiter<string> _attempts;
    private readonly PartitionedRateLimiter<string> _failures;

    public LoginThrottle(AuthOptions options)
    {
        _attempts = Windows(options.LoginAttemptsPerMinutePerIp, TimeSpan.FromMinutes(1));
        _failures = Windows(options.FailedLoginsPerUsername, options.FailedLoginWindow);
    }

    private static PartitionedRateLimiter<string> Windows(int limit, TimeSpan window) =>
        PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = limit,
            Window = window,
            QueueLimit = 0,
            AutoReplenishment = false, // the partitioned limiter's one timer replenishes every partition
        }));

    /// Counts an attempt from this address; the wait when it is over the limit.
    public TimeSpan? CheckAttempt(string ip) => WaitOf(_attempts.AttemptAcquire(ip));

    /// Counts nothing: whether this username may try a password now.
    public TimeSpan? CheckUsername(string username) => WaitOf(_failures.AttemptAcquire(Key(username), 0));

    public void Failed(string username) => _failures.AttemptAcquire(Key(username)).Dispose();

    private static string Key(string username) => username.ToUpperInvariant(); // usernames are case-insensitive

    private static TimeSpan? WaitOf(RateLimitLease lease)
    {
        using (lease)
            return lease.IsAcquired ? null : lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromMinutes(1);
    }

    public void Dispose()
    {
        _attempts.Dispose();
        _failures.Dispose();
    }
}

public sealed class Users(Database db)
{
    private static readonly PasswordHasher<UserRecord> Hasher = new();
    // Verifying against this when the user does not exist keeps the timing of both answers alike.
    private static readonly string DummyHash = Hasher.HashPassword(null!, "not-a-real-password-" + Guid.NewGuid());

    public static bool IsValidUsername(string? name) =>
        name is { Length: >= 3 and <= 32 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');

    public async Task<UserRecord?> FindAsync(string username)
    {
        await using var connection = await db.OpenAsync();
        return await connection.QuerySingleOrDefaultAsync<UserRecord>(
            "SELECT id, username, password_hash AS passwordhash, role FROM users WHERE username = @username", new { username });
    }

    public async Task<UserRecord?> FindAsync(Guid id)
    {
        await using var connection = await db.OpenAsync();
        return await connection.QuerySingleOrDefaultAsync<UserRecord>(
            "SELECT id, username, password_hash AS passwordhash, role FROM users WHERE id = @id", new { id });
    }

    public async Task<UserRecord?> VerifyAsync(string username, string password)
    {
        var user = await FindAsync(username);
        var result = Hasher.VerifyHashedPassword(user!, user?.PasswordHash ?? DummyHash, password);
        return user is not null && result != PasswordVerificationResult.Failed ? user : null;
    }

    /// Returns null when the username is taken.
    public async Task<UserRecord?> CreateAsync(string username, string password, string role)
    {
        var user = new UserRecord(Guid.NewGuid(), username, "", role);
        user = user with { PasswordHash = Hasher.HashPassword(user, password) };
        await using var connection = await db.OpenAsync();
        int inserted = await connection.ExecuteAsync(
            "INSERT INTO users (id, username, password_hash, role, created_at) VALUES (@Id, @Username, @PasswordHash, @Role, @now) ON CONFLICT DO NOTHING",
            new { user.Id, user.Username, user.PasswordHash, user.Role, now = db.Now() });
        return inserted == 1 ? user : null;
    }
}

// Logins, refresh-token rotation with reuse detection, logout.
public sealed class Logins(Database db, Tokens tokens, Sessions sessions, AuthOptions options, TimeProvider time, ILogger<Logins> log)
{
    public async Task<TokenPair> StartAsync(UserRecord user)
    {
        string sessionId = Guid.NewGuid().ToString("N");
        string refresh = NewRefreshToken();
        DateTime now = time.GetUtcNow().UtcDateTime, ends = now + options.SessionLifetime;
        var access = tokens.CreateAccessToken(user.Id, user.Role, sessionId, ends);
        await using var connection = await db.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, access_expires_at) VALUES (@sessionId, @userId, @now, @ends, @accessExpires)",
            new { sessionId, userId = user.Id, now = Stamp(now), ends = Stamp(ends), accessExpires = Stamp(access.ExpiresAt.UtcDateTime) }, tx);
        await InsertRefreshAsync(connection, tx, refresh, sessionId, Min(now + options.RefreshTokenLifetime, ends));
        await tx.CommitAsync();
        log.LogInformation("Login {UserId} started session {SessionId}", user.Id, sessionId);
        return Pair(user.Id, user.Role, access, refresh, now);
    }

    public enum RefreshOutcome { Ok, Unknown, Reused, Expired, Revoked }

    // Rotation: a refresh token is spent by its first use and replaced by a new one. A spent token presented again
    // means someone holds a copy, and the whole login ends — except within RefreshReuseGrace of the rotation when
    // its successor was never used: then the answer was lost on the way (a dropped connection, a closed tab), and
    // the client gets a fresh pair while the unseen successor is spent, so only one of the two can go on.
    public async Task<(RefreshOutcome, TokenPair?)> RefreshAsync(string refreshToken)
    {
        string hash = Hash(refreshToken);
        DateTime now = time.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync(); // BEGIN IMMEDIATE: one winner per token
        var row = await connection.QuerySingleOrDefaultAsync<(string SessionId, string ExpiresAt, string? UsedAt, string? ReplacedBy, string? SuccessorUsedAt,
            string? RevokedAt, string SessionEnds, Guid UserId, string Role)>(
            """
            SELECT r.session_id, r.expires_at, r.used_at, r.replaced_by, n.used_at, s.revoked_at, s.expires_at, s.user_id, u.role
            FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
            LEFT JOIN refresh_tokens n ON n.token_hash = r.replaced_by
            WHERE r.token_hash = @hash
            """, new { hash }, tx);
        if (row.SessionId is null) return (RefreshOutcome.Unknown, null);
        if (row.RevokedAt is not null) return (RefreshOutcome.Revoked, null);
        if (row.UsedAt is not null)
        {
            bool answerLost = row.ReplacedBy is not null && row.SuccessorUsedAt is null && now - Parse(row.UsedAt) <= options.RefreshReuseGrace;
            if (!answerLost)
            {
                await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id", new { now = Stamp(now), id = row.SessionId }, tx);
                await tx.CommitAsync();
                sessions.MarkRevoked(row.SessionId);
                log.LogWarning("Refresh token reuse for user {UserId}; session {SessionId} revoked", row.UserId, row.SessionId);
                return (RefreshOutcome.Reused, null);
            }
            // Spent without a successor of its own: presented later, it counts as reuse.
            await connection.ExecuteAsync("UPDATE refresh_tokens SET used_at = @now WHERE token_hash = @successor",
                new { now = Stamp(now), successor = row.ReplacedBy }, tx);
            log.LogInformation("Refresh retried within the grace for user {UserId}, session {SessionId}", row.UserId, row.SessionId);
        }
        DateTime ends = Parse(row.SessionEnds);
        if (Parse(row.ExpiresAt) <= now || ends <= now) return (RefreshOutcome.Expired, null);
        string next = NewRefreshToken();
        var access = tokens.CreateAccessToken(row.UserId, row.Role, row.SessionId, ends);
        // used_at keeps the first rotation's time: retries cannot stretch the grace.
        await connection.ExecuteAsync("UPDATE refresh_tokens SET used_at = COALESCE(used_at, @now), replaced_by = @next WHERE token_hash = @hash",
            new { now = Stamp(now), next = Hash(next), hash }, tx);
        await connection.ExecuteAsync("UPDATE sessions SET access_expires_at = @accessExpires WHERE id = @id",
            new { accessExpires = Stamp(access.ExpiresAt.UtcDateTime), id = row.SessionId }, tx);
        await InsertRefreshAsync(connection, tx, next, row.SessionId, Min(now + options.RefreshTokenLifetime, ends));
        await tx.CommitAsync();
        return (RefreshOutcome.Ok, Pair(row.UserId, row.Role, access, next, now));
    }

    /// Ends the caller's session and the session of the given refresh token if it is the caller's too.
    public async Task LogoutAsync(Guid userId, string sessionId, string? refreshToken)
    {
        var ended = new List<string> { sessionId };
        await using var connection = await db.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        if (!string.IsNullOrEmpty(refreshToken))
        {
            string? other = await connection.QuerySingleOrDefaultAsync<string>(
                "SELECT r.session_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = @hash AND s.user_id = @userId",
                new { hash = Hash(refreshToken), userId }, tx);
            if (other is not null && other != sessionId) ended.Add(other);
        }
        await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id IN @ended AND revoked_at IS NULL",
            new { now = Stamp(time.GetUtcNow().UtcDateTime), ended }, tx);
        await tx.CommitAsync();
        foreach (string id in ended) sessions.MarkRevoked(id);
        log.LogInformation("Logout {UserId} ended session {SessionId}", userId, sessionId);
    }

    private static TokenPair Pair(Guid userId, string role, AccessToken access, string refresh, DateTime now) =>
        new(access.Token, refresh, "Bearer", (int)Math.Ceiling((access.ExpiresAt.UtcDateTime - now).TotalSeconds), userId, role);

    private static Task InsertRefreshAsync(System.Data.Common.DbConnection connection, System.Data.Common.DbTransaction tx, string token, string sessionId, DateTime expires) =>
        connection.ExecuteAsync("INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES (@hash, @sessionId, @expires)",
            new { hash = Hash(token), sessionId, expires = Stamp(expires) }, tx);

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;
    private static string NewRefreshToken() => Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
    private static string Hash(string token) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
    public static string Stamp(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
    private static DateTime Parse(string stamp) => DateTime.Parse(stamp, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal);
}

public static class AuthApi
{
    public static Guid UserId(this ClaimsPrincipal user) => Guid.Parse(user.FindFirstValue(JwtRegisteredClaimNames.Sub)!);
    public static string SessionId(this ClaimsPrincipal user) => user.FindFirstValue("sid")!;

    public static IEndpointRouteBuilder MapAuthApi(this IEndpointRouteBuilder app)
    {
        var auth = app.MapGroup("/api/auth").WithTags("Auth");
        auth.MapPost("/login", LoginAsync).AllowAnonymous();
        auth.MapPost("/refresh", RefreshAsync).AllowAnonymous();
        auth.MapPost("/logout", LogoutAsync).RequireAuthorization();

        var users = app.MapGroup("/api/users").WithTags("Users").RequireAuthorization(Roles.Operator);
        users.MapGet("/", FindUserAsync);
        users.MapPost("/", CreateUserAsync);
        return app;
    }

    private static async Task<Results<Ok<TokenPair>, ProblemHttpResult>> LoginAsync(
        LoginRequest body, HttpContext http, Users users, Logins logins, LoginThrottle throttle, ILogger<Logins> log)
    {
        string ip = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        if (throttle.CheckAttempt(ip) is { } ipWait) return TooMany(http, ipWait);
        if (string.IsNullOrEmpty(body.Username) || string.IsNullOrEmpty(body.Password) || body.Username.Length > 64 || body.Password.Length > 256)
            return Problems.Unauthorized("invalid_credentials", "Username or password is wrong.");
        if (throttle.CheckUsername(body.Username) is { } userWait) return TooMany(http, userWait);
        var user = await users.VerifyAsync(body.Username, body.Password);
        if (user is null)
        {
            throttle.Failed(body.Username);
            log.LogWarning("Failed login from {RemoteIp}", ip);
            return Problems.Unauthorized("invalid_credentials", "Username or password is wrong.");
        }
        return TypedResults.Ok(await logins.StartAsync(user));
    }

    private static ProblemHttpResult TooMany(HttpContext http, TimeSpan wait)
    {
        int seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        http.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Problems.Create(StatusCodes.Status429TooManyRequests, "too_many_attempts", $"Too many login attempts; try again in {seconds} s.");
    }

    private static async Task<Results<Ok<TokenPair>, ProblemHttpResult>> RefreshAsync(RefreshRequest body, Logins logins)
    {
        if (string.IsNullOrEmpty(body.RefreshToken) || body.RefreshToken.Length > 512)
            return Problems.Unauthorized("invalid_refresh_token", "The refresh token is missing or unknown.");
        var (outcome, pair) = await logins.RefreshAsync(body.RefreshToken);
        return outcome switch
        {
            Logins.RefreshOutcome.Ok => TypedResults.Ok(pair!),
            Logins.RefreshOutcome.Reused => Problems.Unauthorized("refresh_token_reused", "This refresh token was already used; the login has been ended. Log in again."),
            Logins.RefreshOutcome.Expired => Problems.Unauthorized("refresh_token_expired", "The refresh token has expired. Log in again."),
            Logins.RefreshOutcome.Revoked => Problems.Unauthorized("session_revoked", "This login has ended. Log in again."),
            _ => Problems.Unauthorized("invalid_refresh_token", "The refresh token is missing or unknown."),
        };
    }

    private static async Task<NoContent> LogoutAsync(RefreshRequest? body, ClaimsPrincipal user, Logins logins)
    {
        await logins.LogoutAsync(user.UserId(), user.SessionId(), body?.RefreshToken);
        return TypedResults.NoContent();
    }

    private static async Task<Results<Ok<UserView[]>, ValidationProblem>> FindUserAsync(string? username, Users users)
    {
        if (string.IsNullOrWhiteSpace(username))
            return Problems.Validation("username", "Give ?username= to look a user up.");
        var user = await users.FindAsync(username);
        return TypedResults.Ok(user is null ? [] : new[] { new UserView(user.Id, user.Username, user.Role) });
    }

    private static async Task<Results<Created<UserView>, ValidationProblem, ProblemHttpResult>> CreateUserAsync(
        CreateUserRequest body, Users users, ClaimsPrincipal caller, ILogger<Users> log)
    {
        var errors = new Dictionary<string, string[]>();
        if (!Users.IsValidUsername(body.Username)) errors["username"] = ["3-32 characters: letters, digits, '_', '-', '.'."];
        if (body.Password is not { Length: >= 8 and <= 256 }) errors["password"] = ["8-256 characters."];
        if (body.Role is not (Roles.Player or Roles.Operator)) errors["role"] = ["'player' or 'operator'."];
        if (errors.Count > 0) return Problems.Validation(errors);
        var user = await users.CreateAsync(body.Username!, body.Password!, body.Role!);
        if (user is null) return Problems.Create(StatusCodes.Status409Conflict, "username_taken", "That username is taken.");
        log.LogInformation("User {UserId} ({Role}) created by {OperatorId}", user.Id, user.Role, caller.UserId());
        return TypedResults.Created($"/api/users?username={Uri.EscapeDataString(user.Username)}", new UserView(user.Id, user.Username, user.Role));
    }
}
