namespace Balance.Postings;

// The balance JSON shared by GET /api/balance and the socket: a committed change as the contract shows it (money
// formatted), beside BalanceChange, so both the REST handlers and the socket frames find it without reaching into each other.
public sealed record BalanceMessage(
    string Type, Guid UserId, string Balance, string Currency, long Version,
    string? TransactionId, string? TransactionType, string? UpdatedAt)
{
    public static BalanceMessage From(BalanceChange c) =>
        new("balance", c.UserId, Money.Format(c.Balance, c.Currency), c.Currency, c.Version, c.TransactionId, c.TransactionType, c.UpdatedAt);
}
