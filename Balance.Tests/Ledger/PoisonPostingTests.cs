using System.Net;
using System.Text.Json;
using Balance.Postings;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

// One posting that the store refuses for a reason that is no rule of the ledger must fail alone, never its
// batch-mates: a batch that failed whole would answer 503 to every honest concurrent posting in it. The service
// refuses such text (a NUL in a reference) at the door (HostileInputTests), so the poison is put in behind
// it, by a test-only decorator of the engine's real store: on PostgreSQL the posting's reference gets a NUL on its way
// to the database, which the database itself refuses (22021, at the batch's set-based write); on SQLite, which takes a
// NUL, the write throws what SQLite's session throws for a value too big (SQLITE_TOOBIG) before the row is written.
public sealed class PoisonPostingTests
{
    private const string Poison = "poison";

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task APostingTheStoreRefusesFailsAloneAndEveryBatchMateCommits(Store store)
    {
        var hook = new PoisonHook(store);
        await using var app = new BalanceApplication(store: store)
        {
            ConfigureTestServices = services =>
            {
                var real = services.Last(d => d.ServiceType == typeof(ILedgerStore));
                services.Remove(real);
                services.AddSingleton<ILedgerStore>(sp => new PoisonStore(
                    (ILedgerStore)(real.ImplementationFactory?.Invoke(sp) ?? ActivatorUtilities.CreateInstance(sp, real.ImplementationType!)), hook));
            },
        };
        var op = await app.LoginAsync("operator");
        var players = new List<Login>();
        for (int i = 0; i < 8; i++)
        {
            string name = $"honest{i}";
            await app.CreatePlayerAsync(name);
            players.Add(await app.LoginAsync(name, "password123"));
        }
        var ledgerBefore = LedgerAudit.Read(app.DatabasePath);

        // Hold the writer in a batch of its own, so the next 40 postings queue and are taken as one batch.
        hook.Hold();
        var holder = app.PostTransactionAsync(op.AccessToken, new { user_id = players[0].UserId, type = "deposit", amount = "1.00", currency = "USD", reference = "holder" });
        await hook.WaitHeldAsync();
        var posts = Enumerable.Range(0, 40).Select(i => app.PostTransactionAsync(op.AccessToken, new
        {
            user_id = players[i % players.Count].UserId, type = "deposit", amount = "1.00", currency = "USD", reference = i == 17 ? Poison : $"honest-{i}",
        })).ToList();
        // Every one of the 40 in the writer's queue before it goes on, however long a loaded box takes to send them.
        var ledger = app.Services.GetRequiredService<Ledger>();
        var queued = System.Diagnostics.Stopwatch.StartNew();
        while (ledger.Queued < 40)
        {
            Assert.True(queued.Elapsed < Patience.Long, $"{ledger.Queued} of 40 postings reached the writer's queue");
            await Task.Delay(10);
        }
        hook.Release();
        Assert.Equal(HttpStatusCode.Created, (await holder).StatusCode);
        var answers = await Task.WhenAll(posts);

        Assert.True(hook.PoisonBatchSizes.Count > 0 && hook.PoisonBatchSizes[0] >= 20,
            $"the poison came in a batch of {string.Join(", ", hook.PoisonBatchSizes)}: the test did not make the batch it is about");
        var failures = new List<string>();
        for (int i = 0; i < answers.Length; i++)
        {
            string text = await answers[i].Content.ReadAsStringAsync();
            if (i == 17)
            {
                if (answers[i].StatusCode != HttpStatusCode.ServiceUnavailable) failures.Add($"the poison: {(int)answers[i].StatusCode} {text}");
                else Assert.Equal("unavailable", JsonDocument.Parse(text).RootElement.GetProperty("code").GetString());
            }
            else if (answers[i].StatusCode != HttpStatusCode.Created) failures.Add($"honest {i}: {(int)answers[i].StatusCode} {text}");
        }
        Assert.True(failures.Count == 0, "wrong answers:\n" + string.Join("\n", failures));

        var after = LedgerAudit.Read(app.DatabasePath);
        after.AssertConsistent();
        Assert.Equal(ledgerBefore.Rows.Count + 1 + 39, after.Rows.Count); // the holder and 39 honest; no poison row
        foreach (var (player, i) in players.Select((p, i) => (p, i)))
        {
            int credits = Enumerable.Range(0, 40).Count(n => n != 17 && n % players.Count == i) + (i == 0 ? 1 : 0);
            Assert.Equal(credits * 100L, after.Wallet(player.UserId, "USD")!.Balance);
        }

        // The writer goes on: the next posting commits.
        await app.PostOkAsync(op.AccessToken, new { user_id = players[1].UserId, type = "win", amount = "1.00", currency = "USD" });
    }

    private sealed class PoisonHook(Store store)
    {
        private readonly ManualResetEventSlim _gate = new(true);
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _holding;
        public readonly List<int> PoisonBatchSizes = [];

        public void Hold() { _gate.Reset(); Volatile.Write(ref _holding, 1); }
        public Task WaitHeldAsync() => _held.Task.WaitAsync(TimeSpan.FromSeconds(30));
        public void Release() => _gate.Set();

        public void Begin(IReadOnlyList<Posting> postings)
        {
            if (postings.Any(p => p.Reference == Poison)) lock (PoisonBatchSizes) PoisonBatchSizes.Add(postings.Count);
            if (Interlocked.Exchange(ref _holding, 0) == 1)
            {
                _held.TrySetResult();
                _gate.Wait(TimeSpan.FromSeconds(30));
            }
        }

        public LedgerEntry Write(LedgerEntry entry)
        {
            if (entry.Reference != Poison) return entry;
            if (store == Store.Postgres) return entry with { Reference = "poi\0son" }; // PostgreSQL refuses it: 22021
            // What SQLite's session throws from Write when SQLite refuses the row (SQLITE_TOOBIG): SQLite would take
            // the NUL, and no value small enough to send here is too big for it.
            throw new PostingRefusedByStoreException(new SqliteException("string or blob too big", 18));
        }
    }

    private sealed class PoisonStore(ILedgerStore inner, PoisonHook hook) : ILedgerStore
    {
        public ILedgerSession OpenSession() => new Session(inner.OpenSession(), hook);
        public Task<IReadOnlyList<BalanceChange>> WalletsAsync(Guid userId, CancellationToken ct = default) => inner.WalletsAsync(userId, ct);
        public Task<(IReadOnlyList<TransactionResult> Items, string? NextBefore)?> HistoryAsync(Guid? userId, int limit, string? before, CancellationToken ct = default) =>
            inner.HistoryAsync(userId, limit, before, ct);

        private sealed class Session(ILedgerSession inner, PoisonHook hook) : ILedgerSession
        {
            public void Begin(IReadOnlyList<Posting> postings) { hook.Begin(postings); inner.Begin(postings); }
            public void Commit() => inner.Commit();
            public void Rollback() => inner.Rollback();
            public void WhenDurable(Action<Exception?> then) => inner.WhenDurable(then);
            public LedgerEntry? FindByKey(Guid postedBy, string idempotencyKey) => inner.FindByKey(postedBy, idempotencyKey);
            public LedgerEntry? FindById(string transactionId) => inner.FindById(transactionId);
            public bool IsReversed(string transactionId) => inner.IsReversed(transactionId);
            public string? RoleOf(Guid userId) => inner.RoleOf(userId);
            public (long Balance, long Version) ReadWallet(Guid userId, string currency) => inner.ReadWallet(userId, currency);
            public void Write(LedgerEntry entry, string idempotencyKey, Guid postedBy) => inner.Write(hook.Write(entry), idempotencyKey, postedBy);
            public void Dispose() => inner.Dispose();
        }
    }
}
