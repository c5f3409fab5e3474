using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Balance.Tests;

[Collection("Load")]
public sealed class DurabilityTests
{
    [Fact]
    public async Task SigkillMidLoadLosesNoAcknowledgedTransactionAndLeavesNothingHalfWritten()
    {
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        var answered = new ConcurrentDictionary<string, JsonElement>(); // key → the 201 body
        var unanswered = new ConcurrentDictionary<string, object>();    // key → body of a request cut off by the crash
        var bodies = new ConcurrentDictionary<string, object>();
        List<string> players = [];
        string opToken;
        Login firstPlayer;

        await using (var service = await ServiceProcess.StartAsync(db))
        {
            opToken = (await service.LoginAsync("operator")).AccessToken;
            using (var http = service.Http(opToken))
                for (int i = 0; i < 3; i++)
                {
                    var created = await http.PostAsJsonAsync("/api/users", new { username = $"crash{i}", password = "password123", role = "player" });
                    Assert.Equal(HttpStatusCode.Created, created.StatusCode);
                    players.Add((await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("user_id").GetString()!);
                }

            // A socket open through the crash: it sees the connection drop, then reconnects with the same token.
            firstPlayer = await service.LoginAsync("crash0", "password123");
            using var watcher = new ClientWebSocket();
            using (var cts = new CancellationTokenSource(Patience.Long))
            {
                await watcher.ConnectAsync(service.SocketUri, cts.Token);
                await watcher.SendAsync(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = firstPlayer.AccessToken })), WebSocketMessageType.Text, true, cts.Token);
                Assert.Equal("0.00", (await ReceiveJsonAsync(watcher, cts.Token)).GetProperty("balance").GetString());
            }
            using var watching = new CancellationTokenSource();
            var watched = Task.Run(async () =>
            {
                try { while (true) await ReceiveJsonAsync(watcher, watching.Token); }
                catch (Exception ex) when (ex is WebSocketException or Xunit.Sdk.XunitException) { return "dropped"; }
                catch (OperationCanceledException) { return "still open"; }
            });

            // The live service's own writer connection, as SQLite reports it: WAL, and synchronous FULL (2), or an
            // acknowledged commit may sit in the OS cache when the power goes (SIGKILL alone cannot show that).
            Assert.Equal(2, await service.GaugeAsync("balance_ledger_synchronous"));
            Assert.Equal(1, await service.GaugeAsync("balance_ledger_journal_wal"));
            // On Linux that fsync is the WAL flusher's (the connection itself commits with NORMAL): on, and fsyncing
            // under the load below before any answer (WalFlusherTests hold and fail it).
            Assert.Equal(1, await service.GaugeAsync("balance_ledger_wal_flusher"));

            using var stop = new CancellationTokenSource();
            int committed = 0, cutOff = 0;
            long frozenAt = long.MaxValue, killedAt = long.MaxValue; // Stopwatch times of the crash's two steps
            var load = Enumerable.Range(0, 12).Select(w => Task.Run(async () =>
            {
                var random = new Random(4242 + w);
                using var http = service.Http(opToken);
                while (!stop.IsCancellationRequested)
                {
                    string currency = random.Next(2) == 0 ? "USD" : "EUR";
                    string type = random.Next(10) < 6 ? "deposit" : "bet";
                    object body = new { user_id = players[random.Next(players.Count)], type, amount = Money.Format(random.Next(1, 5000), currency), currency };
                    string key = InvariantTests.NewKey();
                    bodies[key] = body;
                    long sentAt = Stopwatch.GetTimestamp();
                    try
                    {
                        var response = await InvariantTests.Post(http, key, body);
                        if (response.StatusCode == HttpStatusCode.Created)
                        {
                            answered[key] = await response.Content.ReadFromJsonAsync<JsonElement>();
                            Interlocked.Increment(ref committed);
                        }
                        else Assert.Equal(HttpStatusCode.Conflict, response.StatusCode); // insufficient funds: nothing written
                    }
                    catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or JsonException)
                    {
                        // Only the crash may cut a request off: a failure before it is the service's own.
                        Assert.True(Stopwatch.GetTimestamp() >= Volatile.Read(ref frozenAt), $"a request failed before the crash: {ex}");
                        unanswered[key] = body; // the crash cut it off: it may or may not have committed
                        // Sent before the kill and never answered: cut off by it. The kind of exception cannot tell:
                        // a request whose pooled connection dies before any byte of its answer is resent by the client
                        // on a new connection, which the dead service refuses (ConnectionError); the time can.
                        if (sentAt < Volatile.Read(ref killedAt)) Interlocked.Increment(ref cutOff);
                        return;
                    }
                }
            })).ToList();

            // Kill only once the load is well under way, so that requests are in flight.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (Volatile.Read(ref committed) < 300 && DateTime.UtcNow < deadline) await Task.Delay(10);
            Assert.True(Volatile.Read(ref committed) >= 300, "the load never got going");
            var fsynced = DateTime.UtcNow.AddSeconds(5); // the exporter caches a scrape briefly
            while (await service.GaugeAsync("balance_ledger_wal_fsyncs_total") == 0 && DateTime.UtcNow < fsynced) await Task.Delay(100);
            Assert.True(await service.GaugeAsync("balance_ledger_wal_fsyncs_total") > 0, "the acknowledged postings had no WAL fsync by the flusher");
            // The crash: the service stops dead mid-load (SIGSTOP), then is killed. In between, what it had sent
            // reaches the clients, and each of them sends its next request, which no one will answer; a SIGKILL alone
            // can land in the instant after a group commit answered every request and before the next were sent.
            Volatile.Write(ref frozenAt, Stopwatch.GetTimestamp());
            service.Freeze();
            await Task.Delay(300);
            Volatile.Write(ref killedAt, Stopwatch.GetTimestamp());
            service.Kill();
            await Task.WhenAll(load).WaitAsync(TimeSpan.FromSeconds(60));
            // The kill landed mid-request: at least one request sent before it never got its answer.
            Assert.True(cutOff >= 1, $"no request was in flight at the kill ({committed} committed before it)");
            stop.Cancel();
            watching.CancelAfter(Patience.Long);
            Assert.Equal("dropped", await watched);
        }

        // Straight from the file: nothing half-written, the wallets are their ledgers.
        SqliteConnection.ClearAllPools();
        var audit = LedgerAudit.Read(db);
        audit.AssertConsistent();
        var byKey = audit.Rows.ToDictionary(r => r.IdempotencyKey);
        foreach (var (key, body) in answered)
        {
            Assert.True(byKey.TryGetValue(key, out var row), $"acknowledged transaction {body} was lost in the crash");
            Assert.Equal(body.GetProperty("transaction_id").GetString(), row.TransactionId);
            Assert.Equal(body.GetProperty("version").GetInt64(), row.Version);
            Assert.Equal(body.GetProperty("balance").GetString(), Money.Format(row.BalanceAfter, row.Currency));
        }
        foreach (var row in audit.Rows)
            Assert.True(row.IdempotencyKey.StartsWith("demo-", StringComparison.Ordinal) || bodies.ContainsKey(row.IdempotencyKey), $"a row nobody posted: {row}");

        // The same database after a restart: the same money, and a cut-off request retried with its key has one effect.
        await using (var service = await ServiceProcess.StartAsync(db))
        {
            using var http = service.Http(opToken); // the Development key is kept beside the database
            foreach (var (key, body) in unanswered)
            {
                var response = await InvariantTests.Post(http, key, body);
                if (byKey.TryGetValue(key, out var row))
                {
                    Assert.Equal(HttpStatusCode.Created, response.StatusCode);
                    Assert.Equal(row.TransactionId, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("transaction_id").GetString());
                    Assert.Equal("true", response.Headers.TryGetValues("Idempotent-Replayed", out var v) ? v.Single() : null);
                }
                else Assert.True(response.StatusCode is HttpStatusCode.Created or HttpStatusCode.Conflict, $"{response.StatusCode}");
            }
            var after = LedgerAudit.Read(db);
            after.AssertConsistent();
            Assert.Equal(after.Rows.Count, after.Rows.Select(r => r.IdempotencyKey).Distinct().Count());

            // A socket reconnecting after the crash gets the durable balance of every wallet.
            for (int i = 0; i < players.Count; i++)
            {
                var login = i == 0 ? firstPlayer : await service.LoginAsync($"crash{i}", "password123");
                using var socket = new ClientWebSocket();
                using var cts = new CancellationTokenSource(Patience.Long);
                await socket.ConnectAsync(service.SocketUri, cts.Token);
                await socket.SendAsync(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = login.AccessToken, data = new { } })), WebSocketMessageType.Text, true, cts.Token);
                var wallets = after.Wallets.Where(w => w.UserId == players[i]).ToList();
                var expected = wallets.Select(w => (w.Currency, Money.Format(w.Balance, w.Currency), w.Version)).ToHashSet();
                if (!wallets.Any(w => w.Currency == "USD")) expected.Add(("USD", "0.00", 0));
                var got = new HashSet<(string, string, long)>();
                while (got.Count < expected.Count)
                {
                    var m = await ReceiveJsonAsync(socket, cts.Token);
                    got.Add((m.GetProperty("currency").GetString()!, m.GetProperty("balance").GetString()!, m.GetProperty("version").GetInt64()));
                }
                Assert.Equal(expected.OrderBy(e => e.Item1), got.OrderBy(e => e.Item1));
            }
        }
        SqliteConnection.ClearAllPools();
        Assert.Equal("ok", LedgerAudit.Read(db).IntegrityCheck);
    }

    [Fact]
    public async Task ADatabaseFromTheFirstSchemaIsUpgradedInPlaceAndKeepsEveryBalance()
    {
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        Login op, alice;
        JsonElement[] balancesBefore;
        await using (var app = new BalanceApplication(databasePath: db))
        {
            op = await app.LoginAsync("operator");
            alice = await app.LoginAsync("alice");
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "EUR" });
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "1.25", currency = "USD" });
            using var mine = app.Http(alice.AccessToken);
            balancesBefore = (await mine.GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
        }
        // Put the file back in the first schema's shape: schema 1's ledger and wallets tables (SqliteLogTests), without
        // wallets.last_transaction_id, and with the ledger's UNIQUE (user_id, currency, version) that the first schema declared.
        SqliteLogTests.DowngradeToSchemaOne(db, firstShape: true);
        await using (var app = new BalanceApplication(databasePath: db))
        {
            using var mine = app.Http(alice.AccessToken);
            var balancesAfter = (await mine.GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
            Assert.Equal(balancesBefore.Select(b => b.ToString()), balancesAfter.Select(b => b.ToString())); // transaction_id and type included
            Assert.All(balancesAfter, b => Assert.Equal(JsonValueKind.String, b.GetProperty("transaction_id").ValueKind));
            var win = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "2.00", currency = "USD" });
            var usd = await mine.GetFromJsonAsync<JsonElement>("/api/balance?currency=USD");
            Assert.Equal(win.GetProperty("transaction_id").GetString(), usd.GetProperty("transaction_id").GetString());
            Assert.Equal(win.GetProperty("version").GetInt64(), usd.GetProperty("version").GetInt64());
            LedgerAudit.Read(db).AssertConsistent();
        }
    }

    [Fact]
    public async Task PlainRestartKeepsEveryBalanceVersionHistoryAndToken()
    {
        // A separate process stopped with SIGTERM, as an orchestrator stops it, and started again on the same files
        // and port: nothing of the first process (its connection pool, its memory) survives into the second.
        using var temp = new TempDatabase();
        string db = temp.FilePath;
        Login op, alice;
        List<JsonElement> before;
        JsonElement[] balancesBefore;
        string key = InvariantTests.NewKey();
        string firstId;
        int port;
        async Task<JsonElement> PostOk(ServiceProcess service, object body, string? idempotencyKey = null)
        {
            using var http = service.Http(op.AccessToken);
            var response = await InvariantTests.Post(http, idempotencyKey ?? InvariantTests.NewKey(), body);
            Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
            return await response.Content.ReadFromJsonAsync<JsonElement>();
        }
        await using (var service = await ServiceProcess.StartAsync(db))
        {
            port = service.Port;
            op = await service.LoginAsync("operator");
            alice = await service.LoginAsync("alice");
            firstId = (await PostOk(service, new { user_id = alice.UserId, type = "deposit", amount = "0.01", currency = "USD" }, key)).GetProperty("transaction_id").GetString()!;
            await PostOk(service, new { user_id = alice.UserId, type = "deposit", amount = "0.00012345", currency = "BTC" });
            await PostOk(service, new { user_id = alice.UserId, type = "deposit", amount = "1200", currency = "JPY" });
            var bet = await PostOk(service, new { user_id = alice.UserId, type = "bet", amount = "40.00", currency = "USD" });
            await PostOk(service, new { type = "rollback", reverses = bet.GetProperty("transaction_id").GetString() });
            await PostOk(service, new { user_id = alice.UserId, type = "withdrawal", amount = "300", currency = "JPY" });
            using var http = service.Http(op.AccessToken);
            before = await InvariantTests.PageHistoryAsync(http, null, 2);
            using var mine = service.Http(alice.AccessToken);
            balancesBefore = (await mine.GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
            await service.StopAsync();
        }
        await using (var service = await ServiceProcess.StartAsync(db, port))
        {
            using var mine = service.Http(alice.AccessToken); // tokens survive a restart in Development
            var balancesAfter = (await mine.GetFromJsonAsync<JsonElement[]>("/api/balances"))!;
            Assert.Equal(balancesBefore.Select(b => b.ToString()), balancesAfter.Select(b => b.ToString()));
            using var http = service.Http(op.AccessToken);
            var after = await InvariantTests.PageHistoryAsync(http, null, 2);
            Assert.Equal(before.Select(b => b.ToString()), after.Select(b => b.ToString()));
            // The key still binds: a replay after the restart is the same transaction, not a new one.
            var replay = await PostOk(service, new { user_id = alice.UserId, type = "deposit", amount = "0.01", currency = "USD" }, key);
            Assert.Equal(firstId, replay.GetProperty("transaction_id").GetString());
            using var ws = new ClientWebSocket();
            using (var cts = new CancellationTokenSource(Patience.Long)) await ws.ConnectAsync(service.SocketUri, cts.Token);
            await using var socket = new TestSocket(ws);
            await socket.SendAuthAsync(alice.AccessToken);
            var seen = new List<JsonElement>();
            for (int i = 0; i < balancesAfter.Length; i++) seen.Add(await socket.ReceiveMessageAsync(Patience.Long));
            Assert.Equal(balancesAfter.Select(b => (b.GetProperty("currency").GetString(), b.GetProperty("balance").GetString(), b.GetProperty("version").GetInt64())).Order(),
                seen.Select(b => (b.GetProperty("currency").GetString(), b.GetProperty("balance").GetString(), b.GetProperty("version").GetInt64())).Order());
            await service.StopAsync();
        }
        SqliteConnection.ClearAllPools();
        LedgerAudit.Read(db).AssertConsistent();
    }

    [Fact]
    public async Task LockedDatabaseAnswers503UnavailableWritesNothingAndRecovers()
    {
        await using var app = new BalanceApplication();
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        var before = LedgerAudit.Read(app.DatabasePath);
        string key = InvariantTests.NewKey();
        object body = new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "USD" };
        using var http = new HttpClient { BaseAddress = app.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", op.AccessToken);

        // Another process holds the write lock far longer than the service's busy timeout (5 s).
        await using (var locker = new SqliteConnection($"Data Source={app.DatabasePath};Pooling=False"))
        {
            await locker.OpenAsync();
            using (var cmd = locker.CreateCommand()) { cmd.CommandText = "BEGIN IMMEDIATE"; await cmd.ExecuteNonQueryAsync(); }
            var clientPatience = Task.Delay(TimeSpan.FromSeconds(28)); // less than a typical client's 30 s timeout

            var posts = Enumerable.Range(0, 3).Select(i => InvariantTests.Post(http, i == 0 ? key : InvariantTests.NewKey(), body)).ToList();
            // Reads keep working meanwhile (WAL).
            using (var mine = app.Http(alice.AccessToken))
                Assert.Equal("100.00", (await mine.GetFromJsonAsync<JsonElement>("/api/balance")).GetProperty("balance").GetString());
            var responses = await Task.WhenAll(posts);
            Assert.False(clientPatience.IsCompleted, "the service kept the requests waiting far beyond its 5 s busy timeout");
            foreach (var response in responses)
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                Assert.Equal("unavailable", (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
                Assert.True(response.Headers.RetryAfter is not null, "503 without Retry-After");
            }
            using (var cmd = locker.CreateCommand()) { cmd.CommandText = "ROLLBACK"; await cmd.ExecuteNonQueryAsync(); }
        }

        // Nothing partial: the ledger and wallets are exactly as before.
        var during = LedgerAudit.Read(app.DatabasePath);
        Assert.Equal(before.Rows, during.Rows);
        Assert.Equal(before.Wallets, during.Wallets);

        // Recovered: the refused key was not bound, so retrying it posts once.
        var retried = await InvariantTests.Post(http, key, body);
        Assert.Equal(HttpStatusCode.Created, retried.StatusCode);
        Assert.Equal("105.00", (await retried.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("balance").GetString());
        var again = await InvariantTests.Post(http, key, body);
        Assert.Equal("105.00", (await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("balance").GetString());
        var after = LedgerAudit.Read(app.DatabasePath);
        after.AssertConsistent();
        Assert.Equal(before.Rows.Count + 1, after.Rows.Count);
    }

    [Fact]
    public async Task AFullDiskAnswers503UnavailableWritesNothingAndRecoversWhenSpaceReturns()
    {
        // A real full disk: the database lives on a 4 MiB tmpfs that a filler file then fills up.
        // Mounting needs root, which CI and the README's test command have (they install Chromium with apt).
        string mountPoint = Path.Combine(Path.GetTempPath(), "balance-tests", "full-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(mountPoint);
        Run("mount", $"-t tmpfs -o size=4m tmpfs {mountPoint}");
        try
        {
            string db = Path.Combine(mountPoint, "balance.db");
            HttpResponseMessage? refused = null;
            string refusedKey = "";
            object body;
            await using (var app = new BalanceApplication(databasePath: db))
            {
                var op = await app.LoginAsync("operator");
                var alice = await app.LoginAsync("alice");
                body = new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD", reference = new string('r', 200) };
                using var http = app.Http(op.AccessToken);
                string filler = Path.Combine(mountPoint, "filler");
                await FillAsync(filler);
                var before = LedgerAudit.Read(db);
                // Not ready while the disk is full: a balancer must not send postings that would all get 503.
                using (var anyone = app.Http())
                {
                    var notReady = await anyone.GetAsync("/readyz");
                    Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
                    Assert.Equal("Unhealthy", await notReady.Content.ReadAsStringAsync());
                }

                // Free pages inside the files may absorb a few commits; the disk runs out within a few hundred.
                for (int i = 0; i < 2000 && refused is null; i++)
                {
                    string key = InvariantTests.NewKey();
                    var response = await InvariantTests.Post(http, key, body);
                    if (response.StatusCode == HttpStatusCode.Created) continue;
                    (refused, refusedKey) = (response, key);
                }
                Assert.NotNull(refused);
                Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
                Assert.Equal("unavailable", (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());

                // Nothing partial: every wallet still equals its ledger, and the refused key bound nothing.
                var during = LedgerAudit.Read(db);
                during.AssertConsistent();
                Assert.DoesNotContain(during.Rows, r => r.IdempotencyKey == refusedKey);
                Assert.True(during.Rows.Count >= before.Rows.Count);
                using (var mine = app.Http(alice.AccessToken))
                    Assert.Equal(HttpStatusCode.OK, (await mine.GetAsync("/api/balance")).StatusCode); // reads still served

                // Space returns: the same key now posts exactly once.
                File.Delete(filler);
                using (var anyone = app.Http()) Assert.Equal(HttpStatusCode.OK, (await anyone.GetAsync("/readyz")).StatusCode);
                var retried = await InvariantTests.Post(http, refusedKey, body);
                Assert.Equal(HttpStatusCode.Created, retried.StatusCode);
                var replay = await InvariantTests.Post(http, refusedKey, body);
                Assert.Equal(HttpStatusCode.Created, replay.StatusCode);
                var after = LedgerAudit.Read(db);
                after.AssertConsistent();
                Assert.Single(after.Rows, r => r.IdempotencyKey == refusedKey);
                Assert.Equal(during.Rows.Count + 1, after.Rows.Count);
            }
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Run("umount", $"-l {mountPoint}");
            try { Directory.Delete(mountPoint, recursive: true); } catch (IOException) { }
        }
    }

    private static Task FillAsync(string path)
    {
        // Unbuffered writes until ENOSPC, first in large then in small pieces, so not a page is left.
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write);
        long offset = 0;
        foreach (int size in new[] { 64 * 1024, 512 })
        {
            var chunk = new byte[size];
            try { while (true) { RandomAccess.Write(handle, chunk, offset); offset += size; } }
            catch (IOException) { /* the disk is full */ }
        }
        return Task.CompletedTask;
    }

    internal static void Run(string command, string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(command, arguments) { RedirectStandardError = true })!;
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{command} {arguments} failed: {error} (this test needs root to mount a small tmpfs)");
    }

    internal static async Task<JsonElement> ReceiveJsonAsync(ClientWebSocket socket, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        int count = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(count), ct);
            count += result.Count;
        } while (!result.EndOfMessage);
        if (result.MessageType == WebSocketMessageType.Close) throw new Xunit.Sdk.XunitException($"socket closed {socket.CloseStatus}");
        return JsonDocument.Parse(buffer.AsMemory(0, count)).RootElement.Clone();
    }
}
