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
}

public sealed class ServiceStoppingException() : Exception("The service is shutting down.");

// Why the ledger refused a posting: money's words, no HTTP. Api/ProblemCodes.cs maps each kind to its code and status.
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
