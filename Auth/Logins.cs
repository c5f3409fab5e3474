using Microsoft.Extensions.Options;
using System.Security.Cryptography;
using System.Text;
using Balance.Postings;
using Balance.Storage;
using Dapper;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Auth;

public sealed record TokenPair(string AccessToken, string RefreshToken, string TokenType, int ExpiresIn, Guid UserId, string Role);

// Logins, refresh-token rotation with reuse detection, logout.
public sealed class Logins(IDatabase db, Tokens tokens, Sessions sessions, LoginThrottle throttle, IOptions<AuthOptions> options, TimeProvider time, ILogger<Logins> log)
{
    // The user's row is locked shared by a login and exclusively by what ends a user's logins (disable, password
    // change, end all): a login that checked the password just before either cannot slip a live session in after it.
    // (SQLite's BEGIN IMMEDIATE already serializes the two: its lock is nothing to do.)
    private Task LockUserAsync(System.Data.Common.DbTransaction tx, Guid userId, bool exclusive) => db.LockRowAsync(tx, "users", "id", userId, exclusive);

    // Spent tokens taken for a lost answer (the refresh grace). Each is also either a flaky network or a copy of the
    // token in other hands, so it is counted and logged as a warning: a rise is worth a look.
    public long GraceRetries;

    /// A new login of a user whose password was just checked; null when, meanwhile, the user was disabled or the
    /// password changed (the check no longer holds).
    public async Task<TokenPair?> StartAsync(UserRecord user)
    {
        string sessionId = Guid.NewGuid().ToString("N");
        string refresh = NewRefreshToken();
        DateTime now = time.GetUtcNow().UtcDateTime, ends = now + options.Value.SessionLifetime;
        var access = tokens.CreateAccessToken(user.Id, user.Role, sessionId, ends);
        await using var connection = await db.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await LockUserAsync(tx, user.Id, exclusive: false);
        var current = await connection.QuerySingleOrDefaultAsync<(string PasswordHash, string? DisabledAt)?>(
            "SELECT password_hash, disabled_at FROM users WHERE id = @id", new { id = user.Id }, tx);
        if (current is not { DisabledAt: null } c || c.PasswordHash != user.PasswordHash) return null;
        await connection.ExecuteAsync(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, access_expires_at) VALUES (@sessionId, @userId, @now, @ends, @accessExpires)",
            new { sessionId, userId = user.Id, now = Timestamps.Format(now), ends = Timestamps.Format(ends), accessExpires = Timestamps.Format(access.ExpiresAt.UtcDateTime) }, tx);
        await InsertRefreshAsync(connection, tx, refresh, sessionId, Min(now + options.Value.RefreshTokenLifetime, ends));
        await tx.CommitAsync();
        log.LogInformation("Login {UserId} started session {SessionId}", user.Id, sessionId);
        return Pair(user.Id, user.Role, access, refresh, now);
    }

    public enum RefreshOutcome { Ok, Unknown, Reused, Expired, Revoked, Limited }

    private const string TokenRow = """
        SELECT r.session_id AS SessionId, r.expires_at AS ExpiresAt, r.used_at AS UsedAt, r.replaced_by AS ReplacedBy, n.used_at AS SuccessorUsedAt,
               s.revoked_at AS RevokedAt, s.expires_at AS SessionEnds, s.user_id AS UserId, u.role AS Role, u.disabled_at AS DisabledAt
        FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
        LEFT JOIN refresh_tokens n ON n.token_hash = r.replaced_by
        WHERE r.token_hash = @hash
        """;

    // Rotation: a refresh token is spent by its first use and replaced by a new one. A spent token presented again
    // means someone holds a copy, and the whole login ends — except within RefreshReuseGrace of the rotation when
    // its successor was never used: then the answer was lost on the way (a dropped connection, a closed tab), and
    // the client gets a fresh pair while the unseen successor is spent, so only one of the two can go on.
    //
    // A refresh reads before it writes: an unknown token, one of an ended login or an expired one is
    // answered from a plain read, which on SQLite never waits for the write lock the ledger's writer needs. Only a
    // token that will rotate, or a spent one that ends its login, takes the write transaction — and a rotation is
    // limited per login (Auth:RefreshesPerMinutePerLogin; `wait` then says how long).
    public async Task<(RefreshOutcome Outcome, TokenPair? Pair, TimeSpan? Wait)> RefreshAsync(string refreshToken)
    {
        string hash = Hash(refreshToken);
        DateTime now = time.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenAsync();
        var seen = await connection.QuerySingleOrDefaultAsync<TokenRecord>(TokenRow, new { hash });
        if (seen is null) return (RefreshOutcome.Unknown, null, null);
        if (seen.RevokedAt is not null || seen.DisabledAt is not null) return (RefreshOutcome.Revoked, null, null);
        bool spent = seen.UsedAt is not null;
        if (!spent && seen.Expired(now)) return (RefreshOutcome.Expired, null, null);
        // A spent token outside its grace ends the login whatever the rate; anything that may rotate is counted.
        bool mayRotate = !spent || seen.AnswerMayBeLost(now, options.Value.RefreshReuseGrace);
        if (mayRotate && throttle.CheckRefreshOfLogin(seen.SessionId) is { } wait) return (RefreshOutcome.Limited, null, wait);

        await using var tx = await connection.BeginTransactionAsync(); // one winner per token: SQLite's BEGIN IMMEDIATE, or the row lock
        await db.LockRowAsync(tx, "refresh_tokens", "token_hash", hash, exclusive: true);
        var row = await connection.QuerySingleOrDefaultAsync<TokenRecord>(TokenRow, new { hash }, tx);
        if (row is null) return (RefreshOutcome.Unknown, null, null);
        if (row.RevokedAt is not null || row.DisabledAt is not null) return (RefreshOutcome.Revoked, null, null);
        if (row.UsedAt is not null)
        {
            bool answerLost = row.AnswerMayBeLost(now, options.Value.RefreshReuseGrace);
            // A lost answer's unseen successor is spent, so that, presented later, it counts as reuse. Spent only if still
            // unused: on PostgreSQL another node may be rotating that successor right now (only this token is locked),
            // and then two live pairs would fork the login; that race is reuse too.
            if (!answerLost || await connection.ExecuteAsync("UPDATE refresh_tokens SET used_at = @now WHERE token_hash = @successor AND used_at IS NULL",
                    new { now = Timestamps.Format(now), successor = row.ReplacedBy }, tx) == 0)
            {
                await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id", new { now = Timestamps.Format(now), id = row.SessionId }, tx);
                await tx.CommitAsync();
                sessions.MarkRevoked(row.SessionId);
                log.LogWarning("Refresh token reuse for user {UserId}; session {SessionId} revoked", row.UserId, row.SessionId);
                return (RefreshOutcome.Reused, null, null);
            }
            Interlocked.Increment(ref GraceRetries);
            log.LogWarning("A spent refresh token was presented again within the grace for user {UserId}, session {SessionId}: taken for a lost answer", row.UserId, row.SessionId);
        }
        if (row.Expired(now)) return (RefreshOutcome.Expired, null, null);
        DateTime ends = Timestamps.Parse(row.SessionEnds);
        string next = NewRefreshToken();
        var access = tokens.CreateAccessToken(row.UserId, row.Role, row.SessionId, ends);
        // used_at keeps the first rotation's time: retries cannot stretch the grace.
        await connection.ExecuteAsync("UPDATE refresh_tokens SET used_at = COALESCE(used_at, @now), replaced_by = @next WHERE token_hash = @hash",
            new { now = Timestamps.Format(now), next = Hash(next), hash }, tx);
        await connection.ExecuteAsync("UPDATE sessions SET access_expires_at = @accessExpires WHERE id = @id",
            new { accessExpires = Timestamps.Format(access.ExpiresAt.UtcDateTime), id = row.SessionId }, tx);
        await InsertRefreshAsync(connection, tx, next, row.SessionId, Min(now + options.Value.RefreshTokenLifetime, ends));
        await tx.CommitAsync();
        return (RefreshOutcome.Ok, Pair(row.UserId, row.Role, access, next, now), null);
    }

    private sealed record TokenRecord(string SessionId, string ExpiresAt, string? UsedAt, string? ReplacedBy, string? SuccessorUsedAt,
        string? RevokedAt, string SessionEnds, Guid UserId, string Role, string? DisabledAt)
    {
        /// The token, or the login it belongs to, has reached its end.
        public bool Expired(DateTime now) => Timestamps.Parse(ExpiresAt) <= now || Timestamps.Parse(SessionEnds) <= now;

        /// A spent token presented within the grace of its rotation, whose successor was never used: the answer that
        /// carried the successor may have been lost on the way.
        public bool AnswerMayBeLost(DateTime now, TimeSpan grace) =>
            UsedAt is not null && ReplacedBy is not null && SuccessorUsedAt is null && now - Timestamps.Parse(UsedAt) <= grace;
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
        string now = Timestamps.Format(time.GetUtcNow().UtcDateTime);
        foreach (string id in ended) // one or two: a statement each reads alike in both engines' SQL (no list parameter)
            await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id AND revoked_at IS NULL", new { now, id }, tx);
        await tx.CommitAsync();
        foreach (string id in ended) sessions.MarkRevoked(id);
        log.LogInformation("Logout {UserId} ended session {SessionId}", userId, sessionId);
    }

    /// Ends every login of the user (but `except`): their tokens stop working and their sockets close 4503, on every
    /// node (PostgreSQL: sessions.revoked_tx and the change feed). Returns how many were ended.
    public Task<int> EndAllAsync(Guid userId, string? except = null) => ChangeUserAsync(userId, except, null);

    /// Sets the user's password hash and ends every other login of the user, in one transaction.
    public Task<int> ChangePasswordAsync(Guid userId, string passwordHash, string keepSessionId) => ChangeUserAsync(userId, keepSessionId,
        ("UPDATE users SET password_hash = @value WHERE id = @userId", passwordHash));

    /// Disables (and ends every login of) the user, or enables them again. False when there is no such user.
    public async Task<bool> SetDisabledAsync(Guid userId, bool disabled)
    {
        if (!disabled)
        {
            await using var connection = await db.OpenAsync();
            return await connection.ExecuteAsync("UPDATE users SET disabled_at = NULL WHERE id = @userId", new { userId }) == 1;
        }
        return await ChangeUserAsync(userId, null, ("UPDATE users SET disabled_at = COALESCE(disabled_at, @value) WHERE id = @userId",
            Timestamps.Format(time.GetUtcNow().UtcDateTime))) >= 0;
    }

    // -1 when the user does not exist. The user's row is locked first (LockUserAsync): a login racing this cannot commit
    // a session this transaction does not see.
    private async Task<int> ChangeUserAsync(Guid userId, string? except, (string Sql, string Value)? change)
    {
        string now = Timestamps.Format(time.GetUtcNow().UtcDateTime);
        await using var connection = await db.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await LockUserAsync(tx, userId, exclusive: true);
        if (await connection.QuerySingleOrDefaultAsync<Guid?>("SELECT id FROM users WHERE id = @userId", new { userId }, tx) is null)
            return -1;
        if (change is { } c) await connection.ExecuteAsync(c.Sql, new { userId, value = c.Value }, tx);
        var ended = (await connection.QueryAsync<string>(
            "SELECT id FROM sessions WHERE user_id = @userId AND revoked_at IS NULL AND expires_at > @now", new { userId, now }, tx))
            .Where(id => id != except).ToList();
        foreach (string id in ended)
            await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id AND revoked_at IS NULL", new { now, id }, tx);
        await tx.CommitAsync();
        foreach (string id in ended) sessions.MarkRevoked(id);
        if (ended.Count > 0) log.LogInformation("Ended {Count} logins of user {UserId}", ended.Count, userId);
        return ended.Count;
    }

    private static TokenPair Pair(Guid userId, string role, AccessToken access, string refresh, DateTime now) =>
        new(access.Token, refresh, "Bearer", (int)Math.Ceiling((access.ExpiresAt.UtcDateTime - now).TotalSeconds), userId, role);

    private static Task InsertRefreshAsync(System.Data.Common.DbConnection connection, System.Data.Common.DbTransaction tx, string token, string sessionId, DateTime expires) =>
        connection.ExecuteAsync("INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES (@hash, @sessionId, @expires)",
            new { hash = Hash(token), sessionId, expires = Timestamps.Format(expires) }, tx);

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;
    private static string NewRefreshToken() => Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
    private static string Hash(string token) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
}
