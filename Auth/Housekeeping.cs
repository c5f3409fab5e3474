using Microsoft.Extensions.Options;
using Balance.Postings;
using Balance.Storage;
using Dapper;

namespace Balance.Auth;

// Every Auth:HousekeepingInterval: ended logins whose access tokens can no longer pass are dropped from memory
// (Sessions.Forget), and expired refresh tokens and dead sessions are deleted from the database — in statements of at
// most Auth:HousekeepingBatch rows, each its own short transaction, at most MaxStatements per round, so it never holds
// the write lock long enough to delay the ledger's writer. What it deletes can never be used again:
// - a refresh token past its expiry, or of an ended login whose access tokens have expired;
// - a session none of whose access tokens can pass and that has no refresh token left (so it can never be
//   refreshed): an ended one is thus kept exactly as long as it must be remembered (Sessions.LoadAsync).
// On PostgreSQL every node runs it; the deletes are idempotent, so they only share the work.
public sealed class Housekeeping(IDatabase db, Sessions sessions, IOptions<AuthOptions> options, TimeProvider time, ILogger<Housekeeping> log) : BackgroundService
{
    private const int MaxStatements = 50;
    public long TokensDeleted, SessionsDeleted, Rounds;

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(options.Value.HousekeepingInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try { await RunOnceAsync(ct); }
                catch (Exception e) when (e is not OperationCanceledException) { log.LogWarning(e, "Auth housekeeping failed; next round in {Interval}", options.Value.HousekeepingInterval); }
            }
        }
        catch (OperationCanceledException) { }
    }

    /// One round; returns the rows deleted (refresh tokens, sessions).
    public async Task<(int Tokens, int Sessions)> RunOnceAsync(CancellationToken ct = default)
    {
        sessions.Forget();
        string cutoff = Timestamps.Format((time.GetUtcNow() - options.Value.ClockSkew).UtcDateTime);
        int tokens = await DeleteAsync("""
            DELETE FROM refresh_tokens WHERE token_hash IN (
                SELECT r.token_hash FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
                WHERE r.expires_at < @cutoff OR (s.revoked_at IS NOT NULL AND COALESCE(s.access_expires_at, s.expires_at) < @cutoff)
                LIMIT @batch)
            """, cutoff, ct);
        int ended = await DeleteAsync("""
            DELETE FROM sessions WHERE id IN (
                SELECT s.id FROM sessions s
                WHERE COALESCE(s.access_expires_at, s.expires_at) < @cutoff
                  AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id)
                LIMIT @batch)
            """, cutoff, ct);
        Interlocked.Add(ref TokensDeleted, tokens);
        Interlocked.Add(ref SessionsDeleted, ended);
        Interlocked.Increment(ref Rounds);
        if (tokens + ended > 0) log.LogInformation("Auth housekeeping deleted {Tokens} refresh tokens and {Sessions} sessions", tokens, ended);
        return (tokens, ended);
    }

    private async Task<int> DeleteAsync(string sql, string cutoff, CancellationToken ct)
    {
        int total = 0;
        for (int i = 0; i < MaxStatements; i++)
        {
            await using var connection = await db.OpenAsync(ct);
            int deleted = await connection.ExecuteAsync(new CommandDefinition(sql, new { cutoff, batch = options.Value.HousekeepingBatch }, cancellationToken: ct));
            total += deleted;
            if (deleted < options.Value.HousekeepingBatch) break;
        }
        return total;
    }
}
