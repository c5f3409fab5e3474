using Balance.Postings;
using Balance.Storage;
using Dapper;
using Microsoft.AspNetCore.Identity;

namespace Balance.Auth;

public sealed record UserRecord(Guid Id, string Username, string PasswordHash, string Role);
public sealed record UserView(Guid UserId, string Username, string Role);

public sealed class Users(IDatabase db, TimeProvider time)
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
            $"SELECT id, username, password_hash AS passwordhash, role FROM users WHERE {db.UsernameIs}", new { username });
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
            new { user.Id, user.Username, user.PasswordHash, user.Role, now = Timestamps.Format(time.GetUtcNow().UtcDateTime) });
        return inserted == 1 ? user : null;
    }
}
