using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using MsOptions = Microsoft.Extensions.Options.Options;

namespace Balance.Tests;

// What the ledger's counters count (the metrics balance.ledger.postings and balance.ledger.batches read them):
// every posting answered after its batch committed, whatever its answer, and the committed batches; a batch that
// did not commit counts in neither.
[Trait("Category", "Unit")]
public sealed class LedgerStatsTests : IAsyncLifetime
{
    private readonly InMemoryLedgerStore _store = new();
    private readonly Ledger _ledger;
    private readonly Guid _operator, _alice;
    private int _keys;

    public LedgerStatsTests()
    {
        _ledger = new Ledger(_store, new FakeTimeProvider(), MsOptions.Create(new LedgerOptions { MaxBatch = 64 }), NullLoggerFactory.Instance);
        _operator = _store.AddUser(Roles.Operator);
        _alice = _store.AddUser(Roles.Player);
    }

    public Task InitializeAsync() => Task.CompletedTask;
    public async Task DisposeAsync() => await _ledger.CompleteAsync(CancellationToken.None);

    private Task<PostOutcome> PostAsync(string type, Guid user, long amount) =>
        _ledger.PostAsync(new Posting(user, type, amount, "USD", null, null, _operator, $"key-{++_keys}"));

    [Fact]
    public async Task PostingsCountEveryAnswerOfACommittedBatchAndBatchesCountTheCommits()
    {
        // Queued before the writer starts: one batch of three — applied, refused by a rule, refused for its user.
        var deposit = PostAsync(TxTypes.Deposit, _alice, 500);
        var overdraw = PostAsync(TxTypes.Bet, _alice, 501);
        var nobody = PostAsync(TxTypes.Deposit, Guid.NewGuid(), 1);
        await _ledger.StartAsync(CancellationToken.None);
        Assert.IsType<PostOutcome.Committed>(await deposit);
        Assert.IsType<PostOutcome.InsufficientFunds>(await overdraw);
        Assert.IsType<PostOutcome.Refused>(await nobody);
        Assert.Equal((3, 1), (Volatile.Read(ref _ledger.Stats.Postings), Volatile.Read(ref _ledger.Stats.Batches)));

        _store.CommitConflicts = 2; // refused as a whole twice: the batch fails, nothing is answered after a commit
        await Assert.ThrowsAsync<StoreConflictException>(() => PostAsync(TxTypes.Deposit, _alice, 1));
        Assert.Equal((3, 1), (Volatile.Read(ref _ledger.Stats.Postings), Volatile.Read(ref _ledger.Stats.Batches)));

        Assert.IsType<PostOutcome.Committed>(await PostAsync(TxTypes.Deposit, _alice, 1));
        Assert.Equal((4, 2), (Volatile.Read(ref _ledger.Stats.Postings), Volatile.Read(ref _ledger.Stats.Batches)));
    }
}
