using System.Security.Cryptography;
using System.Text;


namespace Balance.Postings;

public static class TxTypes
{
    public const string Deposit = "deposit", Withdrawal = "withdrawal", Bet = "bet", Win = "win", Rollback = "rollback";
    public static bool IsCredit(string type) => type is Deposit or Win or Rollback;
    public static bool IsKnown(string? type) => type is Deposit or Withdrawal or Bet or Win or Rollback;
}

// A validated request, amounts already in minor units.
public sealed record Posting(Guid? UserId, string Type, long Amount, string? Currency, string? Reference, string? Reverses, Guid PostedBy, string IdempotencyKey)
{
    // What "the same body" means for idempotency: every field that changes the effect.
    public string Hash() => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
        $"{Type}\n{UserId}\n{Amount}\n{Currency}\n{Reference}\n{Reverses}")));
}

public sealed record TransactionResult(
    string TransactionId, Guid UserId, string Type, string Amount, string Currency, string Balance,
    long Version, string CreatedAt, string? Reference, string? Reverses);

// A committed change of one wallet; what the sockets are told.
public sealed record BalanceChange(Guid UserId, string Currency, long Balance, long Version, string? TransactionId, string? TransactionType, string? UpdatedAt);

// A change as the ledger publishes it: the change itself, and beside it the Stopwatch timestamp of its durable
// commit, which the socket's commit → send delay is measured from.
public readonly record struct CommittedChange(BalanceChange Change, long CommittedAt);

public abstract record PostOutcome
{
    public sealed record Committed(TransactionResult Result, bool Replayed) : PostOutcome;
    public sealed record InsufficientFunds(string Balance, string Currency) : PostOutcome;
    public sealed record IdempotencyConflict : PostOutcome;
    public sealed record AlreadyReversed(string TransactionId) : PostOutcome;
    public sealed record Refused(Refusal Kind, string Detail) : PostOutcome;

    /// A refusal with money's words for it (RefusalText), filled with the values they name.
    public static Refused Refuse(Refusal kind, params object?[] values) => new(kind, RefusalText.Of(kind, values));
}

public sealed class ServiceStoppingException() : Exception("The service is shutting down.");

// Why the ledger refused a posting: money's words, no HTTP. Api/ProblemCodes.cs maps each kind to its code and status,
// and shows RefusalText's words as its rows' detail.
public enum Refusal
{
    Conflict,            // a concurrent posting moved the wallet first: retry with the same key
    TransactionNotFound, // the bet to roll back does not exist
    NotReversible,       // only a bet can be rolled back
    UserMismatch,        // the rollback names another user than the bet's owner
    UserNotFound,
    NotAPlayer,          // operators have no wallets
    NotAnOperator,       // the poster is not an operator of this ledger (a token signed for another database)
    BalanceOverflow,
}

// What each refusal says, once: a composite format naming the values ({0}, {1}) the ledger fills in. The problem-code
// table (Api/ProblemCodes.cs) shows the same text as its row's detail; NotAnOperator's answer is the route's plain 403.
public static class RefusalText
{
    // No default arm: a Refusal without its words does not build (CS8509).
#pragma warning disable CS8524 // a value outside the enum's names cannot come from the ledger
    public static string Format(Refusal kind) => kind switch
    {
        Refusal.Conflict => "The transaction conflicts with another one; retry with the same Idempotency-Key.",
        Refusal.TransactionNotFound => "No transaction {0} to roll back.",
        Refusal.NotReversible => "Only a bet can be rolled back; {0} is a {1}.",
        Refusal.UserMismatch => "user_id is not the owner of that bet.",
        Refusal.UserNotFound => "No user {0}.",
        Refusal.NotAPlayer => "Only players have wallets.",
        Refusal.NotAnOperator => "The token's user is not an operator of this ledger.",
        Refusal.BalanceOverflow => "The balance would overflow.",
    };
#pragma warning restore CS8524

    public static string Of(Refusal kind, params object?[] values) =>
        string.Format(System.Globalization.CultureInfo.InvariantCulture, Format(kind), values);
}
