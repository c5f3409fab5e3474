using System.Security.Cryptography;
using System.Text;
using Balance.Postings;
using Balance.Storage;
using Dapper;
using Microsoft.IdentityModel.Tokens;

namespace Balance.Auth;

public sealed record TokenPair(string AccessToken, string RefreshToken, string TokenType, int ExpiresIn, Guid UserId, string Role);

// Logins, refresh-token rotation with reuse detection, logout.
public sealed class Logins(IDatabase db, Tokens tokens, Sessions sessions, AuthOptions options, TimeProvider time, ILogger<Logins> log)
{
    // Spent tokens taken for a lost answer (the refresh grace). Each is also either a flaky network or a copy of the
    // token in other hands, so it is counted and logged as a warning: a rise is worth a look.
    public long GraceRetries;

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
            new { sessionId, userId = user.Id, now = Timestamps.Format(now), ends = Timestamps.Format(ends), accessExpires = Timestamps.Format(access.ExpiresAt.UtcDateTime) }, tx);
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
        await using var tx = await connection.BeginTransactionAsync(); // one winner per token: SQLite's BEGIN IMMEDIATE, or the row lock
        if (db.LockRefreshToken is { } lockToken) await connection.ExecuteAsync(lockToken, new { hash }, tx);
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
                await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id", new { now = Timestamps.Format(now), id = row.SessionId }, tx);
                await tx.CommitAsync();
                sessions.MarkRevoked(row.SessionId);
                log.LogWarning("Refresh token reuse for user {UserId}; session {SessionId} revoked", row.UserId, row.SessionId);
                return (RefreshOutcome.Reused, null);
            }
            // Spent without a successor of its own: presented later, it counts as reuse. Spent only if still unused: on
            // PostgreSQL another node may be rotating that successor right now (only this token is locked), and then
            // two live pairs would fork the login; that race is reuse too.
            if (await connection.ExecuteAsync("UPDATE refresh_tokens SET used_at = @now WHERE token_hash = @successor AND used_at IS NULL",
                    new { now = Timestamps.Format(now), successor = row.ReplacedBy }, tx) == 0)
            {
                await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id", new { now = Timestamps.Format(now), id = row.SessionId }, tx);
                await tx.CommitAsync();
                sessions.MarkRevoked(row.SessionId);
                log.LogWarning("Refresh token reuse for user {UserId}; session {SessionId} revoked", row.UserId, row.SessionId);
                return (RefreshOutcome.Reused, null);
            }
            Interlocked.Increment(ref GraceRetries);
            log.LogWarning("A spent refresh token was presented again within the grace for user {UserId}, session {SessionId}: taken for a lost answer", row.UserId, row.SessionId);
        }
        DateTime ends = Parse(row.SessionEnds);
        if (Parse(row.ExpiresAt) <= now || ends <= now) return (RefreshOutcome.Expired, null);
        string next = NewRefreshToken();
        var access = tokens.CreateAccessToken(row.UserId, row.Role, row.SessionId, ends);
        // used_at keeps the first rotation's time: retries cannot stretch the grace.
        await connection.ExecuteAsync("UPDATE refresh_tokens SET used_at = COALESCE(used_at, @now), replaced_by = @next WHERE token_hash = @hash",
            new { now = Timestamps.Format(now), next = Hash(next), hash }, tx);
        await connection.ExecuteAsync("UPDATE sessions SET access_expires_at = @accessExpires WHERE id = @id",
            new { accessExpires = Timestamps.Format(access.ExpiresAt.UtcDateTime), id = row.SessionId }, tx);
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
        string now = Timestamps.Format(time.GetUtcNow().UtcDateTime);
        foreach (string id in ended) // one or two: a statement each reads alike in both engines' SQL (no list parameter)
            await connection.ExecuteAsync("UPDATE sessions SET revoked_at = @now WHERE id = @id AND revoked_at IS NULL", new { now, id }, tx);
        await tx.CommitAsync();
        foreach (string id in ended) sessions.MarkRevoked(id);
        log.LogInformation("Logout {UserId} ended session {SessionId}", userId, sessionId);
    }

    private static TokenPair Pair(Guid userId, string role, AccessToken access, string refresh, DateTime now) =>
        new(access.Token, refresh, "Bearer", (int)Math.Ceiling((access.ExpiresAt.UtcDateTime - now).TotalSeconds), userId, role);

    private static Task InsertRefreshAsync(System.Data.Common.DbConnection connection, System.Data.Common.DbTransaction tx, string token, string sessionId, DateTime expires) =>
        connection.ExecuteAsync("INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES (@hash, @sessionId, @expires)",
            new { hash = Hash(token), sessionId, expires = Timestamps.Format(expires) }, tx);

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;
    private static string NewRefreshToken() => Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
    private static string Hash(string token) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
    private static DateTime Parse(string stamp) => DateTime.Parse(stamp, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal);
}
