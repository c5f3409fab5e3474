using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using MsOptions = Microsoft.Extensions.Options.Options;

namespace Balance.Tests;

// The ledger's rules (Ledger.cs) over the in-memory store: no overdraft, idempotency (replay vs another body), a bet
// rolled back once, versions that step by one, every refusal, and a store that refuses one posting or a whole batch.
// The real writer loop runs (its own thread, group commit); only the database is replaced.
[Trait("Category", "Unit")]
public sealed class LedgerRulesTests : IAsyncLifetime
{
    private readonly InMemoryLedgerStore _store = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 3, 18, 0, 0, 123, TimeSpan.Zero));
    private readonly Ledger _ledger;
    private readonly Guid _operator, _alice, _bob;
    private int _keys;

    public LedgerRulesTests()
    {
        _ledger = new Ledger(_store, _time, MsOptions.Create(new LedgerOptions { MaxBatch = 64 }), NullLoggerFactory.Instance);
        _operator = _store.AddUser(Roles.Operator);
        _alice = _store.AddUser(Roles.Player);
        _bob = _store.AddUser(Roles.Player);
    }

    public Task InitializeAsync() => Task.CompletedTask;
    public async Task DisposeAsync() => await _ledger.CompleteAsync(CancellationToken.None);

    private Posting Post(string type, Guid? user, long amount, string currency = "USD", string? key = null, string? reverses = null, Guid? by = null, string? reference = null) =>
        new(user, type, amount, type == TxTypes.Rollback ? null : currency, reference, reverses, by ?? _operator, key ?? $"key-{++_keys}");

    private async Task<PostOutcome> StartAndPostAsync(Posting posting)
    {
        await _ledger.StartAsync(CancellationToken.None);
        return await _ledger.PostAsync(posting);
    }

    private static TransactionResult Committed(PostOutcome outcome)
    {
        var committed = Assert.IsType<PostOutcome.Committed>(outcome);
        Assert.False(committed.Replayed);
        return committed.Result;
    }

    private List<BalanceChange> Published()
    {
        var changes = new List<BalanceChange>();
        while (_ledger.Changes.TryRead(out var c)) changes.Add(c.Change);
        return changes;
    }

    [Fact]
    public async Task ACreditCommitsWithTheNewBalanceAndVersionAndIsPublished()
    {
        var result = Committed(await StartAndPostAsync(Post(TxTypes.Deposit, _alice, 2_550, reference: "cashier-42")));
        Assert.Equal(new TransactionResult(result.TransactionId, _alice, "deposit", "25.50", "USD", "25.50", 1, "2026-12-03T18:00:00.123Z", "cashier-42", null), result);
        Assert.Equal((2_550, 1), _store.Wallet(_alice, "USD"));
        var change = Assert.Single(Published());
        Assert.Equal(new BalanceChange(_alice, "USD", 2_550, 1, result.TransactionId, "deposit", "2026-12-03T18:00:00.123Z"), change);
    }

    [Fact]
    public async Task VersionsStepByOnePerWalletAndChangesArePublishedInCommitOrder()
    {
        await _ledger.StartAsync(CancellationToken.None);
        var results = new List<TransactionResult>();
        foreach (var (type, amount) in new[] { (TxTypes.Deposit, 1_000L), (TxTypes.Bet, 300L), (TxTypes.Win, 50L), (TxTypes.Withdrawal, 750L) })
            results.Add(Committed(await _ledger.PostAsync(Post(type, _alice, amount))));
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 5, "EUR"))); // another currency: a wallet of its own

        Assert.Equal([1L, 2, 3, 4], results.Select(r => r.Version));
        Assert.Equal(["10.00", "7.00", "7.50", "0.00"], results.Select(r => r.Balance));
        Assert.Equal((0, 4), _store.Wallet(_alice, "USD"));
        Assert.Equal((5, 1), _store.Wallet(_alice, "EUR"));
        Assert.Equal([("USD", 1L, 1_000L), ("USD", 2, 700), ("USD", 3, 750), ("USD", 4, 0), ("EUR", 1, 5)],
            Published().Select(c => (c.Currency, c.Version, c.Balance)));
    }

    [Fact]
    public async Task ADebitLargerThanTheBalanceIsRefusedAndChangesNothing()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 500)));
        Published();

        foreach (string type in new[] { TxTypes.Bet, TxTypes.Withdrawal })
        {
            var refused = Assert.IsType<PostOutcome.InsufficientFunds>(await _ledger.PostAsync(Post(type, _alice, 501)));
            Assert.Equal(new PostOutcome.InsufficientFunds("5.00", "USD"), refused);
        }
        Assert.IsType<PostOutcome.InsufficientFunds>(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 1, "EUR"))); // no EUR wallet: 0
        Assert.Equal((500, 1), _store.Wallet(_alice, "USD"));
        Assert.Single(_store.Entries);
        Assert.Empty(Published());

        Assert.Equal("0.00", Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 500))).Balance); // exactly the balance: allowed
    }

    [Fact]
    public async Task DebitsInOneBatchSeeEachOtherAndTheOneThatWouldOverdrawIsRefused()
    {
        // Queued before the writer starts: they land in one batch.
        var deposit = _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 1_000));
        var first = _ledger.PostAsync(Post(TxTypes.Bet, _alice, 600));
        var second = _ledger.PostAsync(Post(TxTypes.Bet, _alice, 600));
        var third = _ledger.PostAsync(Post(TxTypes.Bet, _alice, 400));
        await _ledger.StartAsync(CancellationToken.None);

        Assert.Equal("10.00", Committed(await deposit).Balance);
        Assert.Equal("4.00", Committed(await first).Balance);
        Assert.Equal(new PostOutcome.InsufficientFunds("4.00", "USD"), await second);
        Assert.Equal("0.00", Committed(await third).Balance);
        Assert.Equal(1, _ledger.Stats.Batches);
        Assert.Equal(1, _store.Commits);
        Assert.Equal([1L, 2, 3], Published().Select(c => c.Version));
    }

    [Fact]
    public async Task TheSameKeyWithTheSameBodyReplaysTheFirstAnswerAndChargesOnce()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 1_000)));
        var first = Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 250, key: "bet-1", reference: "round-7")));
        _time.Advance(TimeSpan.FromMinutes(3));
        var again = Assert.IsType<PostOutcome.Committed>(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 250, key: "bet-1", reference: "round-7")));

        Assert.True(again.Replayed);
        Assert.Equal(first, again.Result); // the same transaction, balance and time as first answered
        Assert.Equal((750, 2), _store.Wallet(_alice, "USD"));
        Assert.Equal(2, _store.Entries.Count);
        Assert.Equal([1L, 2], Published().Select(c => c.Version)); // a replay publishes nothing
    }

    [Theory]
    [InlineData(TxTypes.Bet, 251, "USD", "round-7")] // another amount
    [InlineData(TxTypes.Win, 250, "USD", "round-7")] // another type
    [InlineData(TxTypes.Bet, 250, "EUR", "round-7")] // another currency
    [InlineData(TxTypes.Bet, 250, "USD", "round-8")] // another reference
    public async Task TheSameKeyWithAnotherBodyIsAConflictAndChangesNothing(string type, long amount, string currency, string reference)
    {
        await _ledger.StartAsync(CancellationToken.None);
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 1_000)));
        Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 250, key: "bet-1", reference: "round-7")));

        Assert.IsType<PostOutcome.IdempotencyConflict>(await _ledger.PostAsync(Post(type, _alice, amount, currency, key: "bet-1", reference: reference)));
        Assert.IsType<PostOutcome.IdempotencyConflict>(await _ledger.PostAsync(Post(TxTypes.Bet, _bob, 250, key: "bet-1", reference: "round-7"))); // another player
        Assert.Equal((750, 2), _store.Wallet(_alice, "USD"));
        Assert.Equal(2, _store.Entries.Count);
    }

    [Fact]
    public async Task ARefusedPostingDoesNotBindItsKey()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Assert.IsType<PostOutcome.InsufficientFunds>(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 100, key: "bet-1")));
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100)));
        Assert.Equal("0.00", Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 100, key: "bet-1"))).Balance);
    }

    [Fact]
    public async Task ABetIsRolledBackOnceInItsOwnCurrencyAndAmount()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 10_000, "BTC")));
        var bet = Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 2_500, "BTC")));

        // No amount, currency or user given: all come from the bet.
        var rollback = Committed(await _ledger.PostAsync(Post(TxTypes.Rollback, null, 0, reverses: bet.TransactionId)));
        Assert.Equal(("rollback", _alice, "0.00002500", "BTC", "0.00010000", 3L, bet.TransactionId),
            (rollback.Type, rollback.UserId, rollback.Amount, rollback.Currency, rollback.Balance, rollback.Version, rollback.Reverses));

        Assert.Equal(new PostOutcome.AlreadyReversed(bet.TransactionId), await _ledger.PostAsync(Post(TxTypes.Rollback, _alice, 0, reverses: bet.TransactionId)));
        Assert.Equal((10_000, 3), _store.Wallet(_alice, "BTC"));
    }

    [Fact]
    public async Task ARollbackOfSomethingElseThanTheNamedPlayersBetIsRefused()
    {
        await _ledger.StartAsync(CancellationToken.None);
        var deposit = Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 1_000)));
        var bet = Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 100)));

        Assert.Equal(Refusal.TransactionNotFound, Refused(await _ledger.PostAsync(Post(TxTypes.Rollback, null, 0, reverses: Guid.NewGuid().ToString()))));
        Assert.Equal(Refusal.NotReversible, Refused(await _ledger.PostAsync(Post(TxTypes.Rollback, null, 0, reverses: deposit.TransactionId))));
        Assert.Equal(Refusal.UserMismatch, Refused(await _ledger.PostAsync(Post(TxTypes.Rollback, _bob, 0, reverses: bet.TransactionId))));
        Assert.Equal((900, 2), _store.Wallet(_alice, "USD"));
        Assert.Equal(2, _store.Entries.Count);
    }

    private static Refusal Refused(PostOutcome outcome) => Assert.IsType<PostOutcome.Refused>(outcome).Kind;

    [Fact]
    public async Task PostingsForUnknownUsersOperatorsOrByNonOperatorsAreRefused()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Assert.Equal(Refusal.UserNotFound, Refused(await _ledger.PostAsync(Post(TxTypes.Deposit, Guid.NewGuid(), 100))));
        Assert.Equal(Refusal.NotAPlayer, Refused(await _ledger.PostAsync(Post(TxTypes.Deposit, _operator, 100))));
        Assert.Equal(Refusal.NotAnOperator, Refused(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100, by: _bob)))); // a player's token
        Assert.Equal(Refusal.NotAnOperator, Refused(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100, by: Guid.NewGuid())))); // not in this ledger
        Assert.Empty(_store.Entries);
        Assert.Empty(Published());
    }

    [Fact]
    public async Task ACreditThatWouldOverflowTheBalanceIsRefused()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, long.MaxValue - 1, "JPY")));
        Assert.Equal(long.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Committed(await _ledger.PostAsync(Post(TxTypes.Win, _alice, 1, "JPY"))).Balance);
        Assert.Equal(Refusal.BalanceOverflow, Refused(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 1, "JPY"))));
        Assert.Equal((long.MaxValue, 2), _store.Wallet(_alice, "JPY"));
    }

    [Fact]
    public async Task APostingTheStoreRefusesIsUndoneAloneAndItsBatchMatesCommit()
    {
        _store.BeforeWrite = entry => { if (entry.UserId == _bob) throw new StoreConflictException("the wallet moved"); };
        var alice = _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100));
        var bob = _ledger.PostAsync(Post(TxTypes.Deposit, _bob, 100, key: "bob-1"));
        var aliceAgain = _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100));
        await _ledger.StartAsync(CancellationToken.None);

        Assert.Equal("1.00", Committed(await alice).Balance);
        Assert.Equal(Refusal.Conflict, Refused(await bob));
        Assert.Equal("2.00", Committed(await aliceAgain).Balance);
        Assert.Equal(1, _store.Commits);
        Assert.Equal((0, 0), _store.Wallet(_bob, "USD"));
        Assert.All(Published(), c => Assert.Equal(_alice, c.UserId));

        _store.BeforeWrite = null; // the conflict bound nothing: the same key goes through on retry
        Assert.Equal("1.00", Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _bob, 100, key: "bob-1"))).Balance);
    }

    [Fact]
    public async Task ABatchTheStoreRefusesAsAWholeRunsOnceMore()
    {
        _store.CommitConflicts = 1;
        var first = _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100));
        var second = _ledger.PostAsync(Post(TxTypes.Deposit, _bob, 200));
        await _ledger.StartAsync(CancellationToken.None);

        Assert.Equal(1, Committed(await first).Version);
        Assert.Equal(1, Committed(await second).Version);
        Assert.Equal((1, 1), (_store.Commits, _store.Rollbacks));
        Assert.Equal(2, Published().Count); // published once, from the run that committed
    }

    [Fact]
    public async Task ABatchRefusedTwiceFailsEveryPostingAndWritesAndPublishesNothing()
    {
        _store.CommitConflicts = 2;
        var first = _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100));
        var second = _ledger.PostAsync(Post(TxTypes.Deposit, _bob, 200));
        await _ledger.StartAsync(CancellationToken.None);

        await Assert.ThrowsAsync<StoreConflictException>(() => first);
        await Assert.ThrowsAsync<StoreConflictException>(() => second);
        Assert.Empty(_store.Entries);
        Assert.Empty(Published());

        // The writer lives on, on a fresh session.
        Assert.Equal("1.00", Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100))).Balance);
    }

    // An outage fails every batch; each posting gets its error, but the log gets the first failure in full and then
    // one line a second counting the batches since, not a stack trace per batch (on the monotonic clock, faked here).
    [Fact]
    public async Task AnOutageFailsEveryBatchAndLogsTheFirstInFullThenOneLineASecond()
    {
        var logs = new CapturingLoggerProvider();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs));
        var ledger = new Ledger(_store, _time, MsOptions.Create(new LedgerOptions { MaxBatch = 64 }), loggers);
        _store.BeforeWrite = _ => throw new IOException("the test's outage");
        await ledger.StartAsync(CancellationToken.None);
        for (int i = 0; i < 50; i++) await Assert.ThrowsAsync<IOException>(() => ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100)));
        string[] Lines() => logs.Lines.Where(l => l.Contains("postings failed; none was applied", StringComparison.Ordinal)).ToArray();
        var first = Assert.Single(Lines());
        Assert.Contains("the test's outage", first); // in full: the exception with it
        Assert.Contains("(and 0 more failed batches since the last line)", first);

        _time.Advance(TimeSpan.FromSeconds(1));
        await Assert.ThrowsAsync<IOException>(() => ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100)));
        Assert.Equal(2, Lines().Length);
        Assert.Contains("(and 49 more failed batches since the last line)", Lines()[1]);
        Assert.Empty(_store.Entries);
        await ledger.CompleteAsync(CancellationToken.None);
    }

    [Fact]
    public async Task AfterCompleteNoPostingIsTakenAndChangesEnd()
    {
        await _ledger.StartAsync(CancellationToken.None);
        Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100)));
        await _ledger.CompleteAsync(CancellationToken.None);

        await Assert.ThrowsAsync<ServiceStoppingException>(() => _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 100)));
        Assert.Single(Published());
        Assert.True(_ledger.Changes.Completion.IsCompleted);
    }

    // Ledger.WalletMoved is what PostgreSQL locks before the rules run: for every kind of posting, the wallet it names is
    // the one Apply moves, and it names none exactly when Apply moves none.
    [Fact]
    public async Task WalletMovedNamesTheWalletApplyMovesAndNoneWhenItMovesNone()
    {
        await _ledger.StartAsync(CancellationToken.None);
        var deposit = Committed(await _ledger.PostAsync(Post(TxTypes.Deposit, _alice, 1_000)));
        var bet = Committed(await _ledger.PostAsync(Post(TxTypes.Bet, _alice, 300, "USD")));
        Published();
        var roles = new Dictionary<Guid, string> { [_alice] = Roles.Player, [_bob] = Roles.Player, [_operator] = Roles.Operator };
        var cases = new[]
        {
            Post(TxTypes.Deposit, _bob, 100, "EUR"),                          // a player's own wallet, created by it
            Post(TxTypes.Win, _alice, 100),
            Post(TxTypes.Deposit, _operator, 100),                            // no player: none
            Post(TxTypes.Deposit, Guid.CreateVersion7(), 100),                // no user: none
            Post(TxTypes.Rollback, null, 0, reverses: bet.TransactionId),     // the bet's wallet
            Post(TxTypes.Rollback, null, 0, reverses: deposit.TransactionId), // no bet: none
            Post(TxTypes.Rollback, null, 0, reverses: Guid.CreateVersion7().ToString()), // unknown: none
        };
        foreach (var posting in cases)
        {
            var reversed = posting.Reverses is { } id ? _store.Entries.FirstOrDefault(e => e.TransactionId == id) : null;
            var expected = Ledger.WalletMoved(posting, reversed, posting.UserId is { } u ? roles.GetValueOrDefault(u) : null);
            var outcome = await _ledger.PostAsync(posting);
            var moved = Published().Select(c => (c.UserId, c.Currency)).ToList();
            if (expected is null)
            {
                Assert.IsNotType<PostOutcome.Committed>(outcome);
                Assert.Empty(moved);
            }
            else
            {
                Committed(outcome);
                Assert.Equal([expected.Value], moved);
            }
        }
    }
}
