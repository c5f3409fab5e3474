using Balance.Postings;
using Balance.Storage;
using Dapper;
using Microsoft.AspNetCore.Identity;

namespace Balance.Auth;

public sealed record UserRecord(Guid Id, string Username, string PasswordHash, string Role, string? DisabledAt)
{
    public bool Disabled => DisabledAt is not null;
}
public sealed record UserView(Guid UserId, string Username, string Role);
public sealed record UserAccount(Guid UserId, string Username, string Role, bool Disabled);

/// The password-hash budget was spent: nothing was checked or written; answered 503 + Retry-After.
public sealed class PasswordBudgetSpentException() : Exception("Too many password checks at once; try again in a second.");

// Usernames have one normal form: ASCII letters, digits, '_', '-', '.', lower case (Normalize). Every name is
// stored, looked up and counted (LoginThrottle) in it, so `ALICE` is alice and no other spelling — no Unicode case
// fold or compatibility form (`alİce`, a fullwidth `ａlice`) — can reach alice's row or dodge her counters. ASCII
// only, rather than NFKC + case fold: one rule, the same in both engines and in C#, with nothing that depends on
// the database's collation or ICU version; a casino's login names lose nothing by it.
public sealed class Users(IDatabase db, PasswordBudget budget, TimeProvider time)
{
    private static readonly PasswordHasher<UserRecord> Hasher = new();
    // Verifying against this when the user does not exist keeps the timing of both answers alike.
    private static readonly string DummyHash = Hasher.HashPassword(null!, "not-a-real-password-" + Guid.NewGuid());
    private const string Columns = "id, username, password_hash AS passwordhash, role, disabled_at AS disabledat";

    public static bool IsValidUsername(string? name) =>
        name is { Length: >= 3 and <= 32 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');

    /// The username's normal form, or null when no user can have that name.
    public static string? Normalize(string? name) => IsValidUsername(name) ? name!.ToLowerInvariant() : null;

    public static bool HasControlCharacters(string text) => text.Any(char.IsControl);

    public async Task<UserRecord?> FindAsync(string username)
    {
        if (Normalize(username) is not { } key) return null;
        await using var connection = await db.OpenAsync();
        return await connection.QuerySingleOrDefaultAsync<UserRecord>(
            $"SELECT {Columns} FROM users WHERE username = @key", new { key }); // stored in the normal form too
    }

    public async Task<UserRecord?> FindAsync(Guid id)
    {
        await using var connection = await db.OpenAsync();
        return await connection.QuerySingleOrDefaultAsync<UserRecord>($"SELECT {Columns} FROM users WHERE id = @id", new { id });
    }

    /// The user when the password is theirs, else null (alike for an unknown user). Throws PasswordBudgetSpentException.
    public async Task<UserRecord?> VerifyAsync(string username, string password)
    {
        if (budget.RefuseIfFull()) throw new PasswordBudgetSpentException(); // refused before the read it would have cost
        var user = await FindAsync(username);
        return await CheckAsync(user, password) ? user : null;
    }

    /// Whether the password is the user's; a missing user is checked against a dummy hash, and is never right.
    public async Task<bool> CheckAsync(UserRecord? user, string password)
    {
        string hash = user?.PasswordHash ?? DummyHash;
        var result = await (budget.TryRun(() => Hasher.VerifyHashedPassword(user!, hash, password)) ?? throw new PasswordBudgetSpentException());
        return user is not null && result != PasswordVerificationResult.Failed;
    }

    public async Task<string> HashAsync(UserRecord user, string password) =>
        await (budget.TryRun(() => Hasher.HashPassword(user, password)) ?? throw new PasswordBudgetSpentException());

    /// Returns null when the username is taken.
    public async Task<UserRecord?> CreateAsync(string username, string password, string role)
    {
        var user = new UserRecord(Guid.NewGuid(), Normalize(username) ?? throw new ArgumentException("Not a valid username.", nameof(username)), "", role, null);
        user = user with { PasswordHash = await HashAsync(user, password) };
        await using var connection = await db.OpenAsync();
        int inserted = await connection.ExecuteAsync(
            "INSERT INTO users (id, username, password_hash, role, created_at) VALUES (@Id, @Username, @PasswordHash, @Role, @now) ON CONFLICT DO NOTHING",
            new { user.Id, user.Username, user.PasswordHash, user.Role, now = Timestamps.Format(time.GetUtcNow().UtcDateTime) });
        return inserted == 1 ? user : null;
    }
}
