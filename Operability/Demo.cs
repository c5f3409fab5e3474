using Balance.Auth;
using Balance.Postings;
using Balance.Storage.Sqlite;
using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance.Operability;

// Development only: the demo accounts of the contract, created on first start.
public sealed class Demo(Users users, Ledger ledger, ILogger<Demo> log) : IHostedService
{
    public const string Password = "demo1234";

    public async Task StartAsync(CancellationToken ct)
    {
        var op = await users.FindAsync("operator") ?? await users.CreateAsync("operator", Password, Roles.Operator);
        var alice = await users.FindAsync("alice") ?? await users.CreateAsync("alice", Password, Roles.Player);
        if (await users.FindAsync("bob") is null) await users.CreateAsync("bob", Password, Roles.Player);
        // A fixed idempotency key makes the opening deposit happen once, however often we start.
        var outcome = await ledger.PostAsync(new Posting(alice!.Id, TxTypes.Deposit, 100_00, "USD", "demo opening balance", null, op!.Id, "demo-seed-alice-opening-deposit"));
        if (outcome is PostOutcome.Committed { Replayed: false }) log.LogInformation("Demo accounts ready: alice, bob, operator (password {Hint})", "see README");
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}
