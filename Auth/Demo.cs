using Balance.Postings;

namespace Balance.Auth;

// Development only: the demo accounts of the contract, created on first start.
public sealed class Demo(Users users, Ledger ledger, ILogger<Demo> log) : IHostedService
{
    public const string Password = "demo1234";

    public async Task StartAsync(CancellationToken ct)
    {
        // Nodes that start together race to create them: whoever loses finds the winner's.
        var op = await EnsureAsync("operator", Roles.Operator);
        var alice = await EnsureAsync("alice", Roles.Player);
        await EnsureAsync("bob", Roles.Player);
        // A fixed idempotency key makes the opening deposit happen once, however often we start.
        var outcome = await ledger.PostAsync(new Posting(alice.Id, TxTypes.Deposit, 100_00, "USD", "demo opening balance", null, op.Id, "demo-seed-alice-opening-deposit"));
        if (outcome is PostOutcome.Committed { Replayed: false }) log.LogInformation("Demo accounts ready: alice, bob, operator (password {Hint})", "see README");
    }

    private async Task<UserRecord> EnsureAsync(string username, string role) =>
        await users.FindAsync(username) ?? await users.CreateAsync(username, Password, role) ?? await users.FindAsync(username)
        ?? throw new InvalidOperationException($"Demo account {username} could be neither created nor found.");

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}
