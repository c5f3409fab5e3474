using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Balance.Postings;
using Balance.Storage.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

// Balance:Synchronous=FULL on SQLite: the writer commits with synchronous=NORMAL and a thread of its own fsyncs the WAL
// while the writer goes on with the next batch (Storage/Sqlite/WalFlusher.cs). Nothing may leave the service before
// the fsync that covers it — no answer, no push, no read — and a failed fsync fails the service until a restart. The
// tests hold or fail the fsync itself (WalSync), on a real file, behind the service's real writer.
public sealed class WalFlusherTests
{
    // The WAL's fsync, held by the test or failing; the real fsync otherwise.
    private sealed class TestDisk : WalSync
    {
        private readonly ManualResetEventSlim _open = new(true);
        public volatile bool Fail;
        public int Held; // fsyncs that found the disk held

        public void Hold() => _open.Reset();
        public void Release() => _open.Set();

        public override void Sync(FileStream wal)
        {
            if (!_open.IsSet) Interlocked.Increment(ref Held);
            if (!_open.Wait(Patience.Long)) throw new TimeoutException("the test never released the disk");
            if (Fail) throw new IOException("Input/output error (the test's disk)");
            base.Sync(wal);
        }
    }

    private static BalanceApplication App(TestDisk disk, string? db = null) =>
        new(databasePath: db) { ConfigureTestServices = services => services.AddSingleton<WalSync>(disk) };

    private static async Task Until(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < Patience.Long, $"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task NoAnswerPushOrReadLeavesBeforeTheWalFsyncAndTheWriterGoesOnMeanwhile()
    {
        var disk = new TestDisk();
        await using var app = App(disk);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        var store = (SqliteLedgerStore)app.Services.GetRequiredService<ILedgerStore>();
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "EUR" });
        Assert.Equal(1, Volatile.Read(ref store.WalFlusherOn));
        Assert.Equal(2, Volatile.Read(ref store.Synchronous)); // what a commit gets before its answer: FULL
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        // The snapshot: a frame per wallet, EUR and USD (the demo account's).
        var snapshot = new[] { await socket.ReceiveMessageAsync(), await socket.ReceiveMessageAsync() };
        Assert.Equal("1.00", snapshot.Single(m => m.GetProperty("currency").GetString() == "EUR").GetProperty("balance").GetString());
        int rowsBefore = LedgerAudit.Read(app.DatabasePath).Rows.Count;

        disk.Hold();
        var first = app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "2.00", currency = "EUR" });
        await Until(() => Volatile.Read(ref disk.Held) > 0, "the first posting's fsync");
        // The writer is not waiting for the disk: the next posting commits too (its row is in the file) ...
        var second = app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "0.50", currency = "EUR" });
        await Until(() => LedgerAudit.Read(app.DatabasePath).Rows.Count == rowsBefore + 2, "the second posting's commit");
        // ... but nothing of either leaves the service while the fsync is held: no answer, no push, no read.
        var pushed = socket.ReceiveMessageAsync(Patience.Long);
        using var aliceHttp = app.Http(alice.AccessToken);
        var read = aliceHttp.GetAsync("/api/balance?currency=EUR");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(first.IsCompleted, "a posting was answered before the fsync that covers it");
        Assert.False(second.IsCompleted, "a posting was answered before the fsync that covers it");
        if (pushed.IsCompleted) Assert.Fail($"a change was pushed before the fsync that covers it: {await pushed}");
        Assert.False(read.IsCompleted, "a balance was read out before the fsync that covers it");

        disk.Release();
        Assert.Equal(HttpStatusCode.Created, (await first).StatusCode);
        Assert.Equal(HttpStatusCode.Created, (await second).StatusCode);
        // The read was sent before either posting was answered, once the second's row was in the file: it may have
        // found the writer's state just before that commit was applied to it (3.00) or after (3.50), never older.
        Assert.Contains((await (await read).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("balance").GetString(), new[] { "3.00", "3.50" });
        // The socket gets 3.00 then 3.50, or only 3.50 when the hub folds the two (a socket is sent each wallet's newest).
        string firstPush = (await pushed).GetProperty("balance").GetString()!;
        Assert.Contains(firstPush, new[] { "3.00", "3.50" });
        if (firstPush == "3.00") Assert.Equal("3.50", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());
        Assert.True(store.WalFlushes > 0);
    }

    [Fact]
    public async Task AFailedWalFsyncAnswersOutcomeUnknownAndFailsEveryLaterPostingAndReadUntilARestart()
    {
        using var temp = new TempDatabase();
        var disk = new TestDisk();
        Login op, alice;
        string key = InvariantTests.NewKey();
        var body = new { user_id = "", type = "deposit", amount = "2.00", currency = "EUR" };
        await using (var app = App(disk, temp.FilePath))
        {
            op = await app.LoginAsync("operator");
            alice = await app.LoginAsync("alice");
            body = body with { user_id = alice.UserId };
            disk.Fail = true;
            var lost = await app.PostTransactionAsync(op.AccessToken, body, key);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, lost.StatusCode);
            Assert.Contains("may or may not have been applied", (await lost.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("detail").GetString());
            // Failed for good: the writer's state may hold what the disk lost, so nothing more is decided or read on it.
            // A later posting is refused before it is applied (so not "may or may not"), and readiness says why.
            disk.Fail = false;
            var later = await app.PostTransactionAsync(op.AccessToken, body with { amount = "1.00" });
            Assert.Equal(HttpStatusCode.ServiceUnavailable, later.StatusCode);
            Assert.DoesNotContain("may or may not", (await later.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("detail").GetString());
            using var aliceHttp = app.Http(alice.AccessToken);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await aliceHttp.GetAsync("/api/balance?currency=EUR")).StatusCode);
            var ready = await app.Http().GetAsync("/readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }
        // A restart rebuilds the state from the file. Here the test's disk kept the batch, so the same key replays it.
        await using (var app = new BalanceApplication(databasePath: temp.FilePath))
        {
            var retry = await app.PostTransactionAsync(op.AccessToken, body, key);
            Assert.Equal(HttpStatusCode.Created, retry.StatusCode);
            Assert.Equal("true", retry.Headers.GetValues("Idempotent-Replayed").Single());
            Assert.Equal(1, LedgerAudit.Read(temp.FilePath).Rows.Count(r => r.IdempotencyKey == key));
            LedgerAudit.Read(temp.FilePath).AssertConsistent();
        }
    }
}
