using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

[Collection("Load")]
public sealed class SlowConsumerTests
{
    // Small server-side buffers (Kestrel's write pipe, and a fixed SO_SNDBUF the accepted sockets inherit, instead of
    // Linux's autotuning up to 4 MB) so that a few hundred updates fill them; the send timeout is what is under test.
    private static void SmallServerBuffers(IServiceCollection services) => services.Configure<SocketTransportOptions>(o =>
    {
        o.MaxWriteBufferSize = 4096;
        o.CreateBoundListenSocket = endpoint =>
        {
            var listen = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
            listen.SendBufferSize = 8192;
            return listen;
        };
    });

    // A client whose sockets have a tiny receive buffer: once it stops reading, the server's sends back up quickly.
    private static HttpMessageInvoker TinyReceiveBufferClient() => new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, ct) =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
            await s.ConnectAsync(context.DnsEndPoint, ct);
            return new NetworkStream(s, ownsSocket: true);
        },
    });

    // ---- slow consumers ----

    [Fact]
    public async Task ASocketThatNeverReadsIsClosedAsASlowConsumerWhileOthersKeepUp()
    {
        await using var app = new BalanceApplication(new() { ["Balance:Socket:SendTimeout"] = "00:00:03" }) { ConfigureTestServices = SmallServerBuffers };
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var closes = new ConcurrentQueue<int>();
        hub.Stats.Closed += closes.Enqueue;

        // The slow one: a tiny receive buffer, authenticated, and then never read again.
        using var invoker = TinyReceiveBufferClient();
        using var slow = new ClientWebSocket();
        using (var cts = new CancellationTokenSource(Patience.Long))
        {
            await slow.ConnectAsync(app.SocketUri, invoker, cts.Token);
            await slow.SendAsync(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = alice.AccessToken })), WebSocketMessageType.Text, true, cts.Token);
        }
        await using var fast = await SocketRecorder.OpenAsync(app, alice.AccessToken);
        await fast.WaitForAsync(m => m.Count > 0, "the snapshot");

        // Updates in every currency (the outbox keeps only the newest per currency, so one currency alone would be coalesced away).
        string[] currencies = ["USD", "EUR", "GBP", "CAD", "AUD", "JPY", "BTC", "ETH"];
        using var http = app.Http(op.AccessToken);
        int posted = 0;
        // Bounded by time, not by a count of updates: the close comes a send timeout (3 s) after the socket's buffers
        // fill, however fast the ledger posts (a fast writer can post thousands of updates inside those 3 s).
        var stuckFor = System.Diagnostics.Stopwatch.StartNew();
        while (!closes.Contains(4003))
        {
            Assert.True(stuckFor.Elapsed < Patience.Long, $"{posted} updates in {stuckFor.Elapsed.TotalSeconds:F0} s and the non-reading socket is still open; closes {string.Join(",", closes)}, open {hub.OpenSockets}, sent {hub.Stats.Sent}, coalesced {hub.Stats.Coalesced}");
            var batch = await Task.WhenAll(currencies.Select(async currency =>
            {
                var response = await InvariantTests.Post(http, InvariantTests.NewKey(),
                    new { user_id = alice.UserId, type = "deposit", amount = Money.Format(1, currency), currency });
                Assert.Equal(HttpStatusCode.Created, response.StatusCode);
                return await response.Content.ReadFromJsonAsync<JsonElement>();
            }));
            posted += batch.Length;
            // The reading socket gets every update of the batch within a second of its commit, although its neighbour
            // is stuck: well inside the 3 s send timeout, so a fan-out that waited on the stuck socket's send fails here.
            await KeepsUpAsync(fast, batch, TimeSpan.FromSeconds(1));
        }
        // The stuck socket's outbox held at most one balance per currency, however many updates came; the rest coalesced.
        Assert.InRange(hub.Stats.DeepestOutbox, 1, currencies.Length);
        Assert.True(hub.Stats.Coalesced > 0, "nothing was coalesced: the outbox bound was never reached");
        Assert.Null(fast.CloseStatus);
        Assert.False(fast.Reading.IsCompleted, "the reading socket was closed too");
        Assert.DoesNotContain(closes, c => c != 4003);
        // The stuck one is gone on the server: only the reader remains.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (hub.OpenSockets != 1 && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Equal(1, hub.OpenSockets);
        var win = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        long final = win.GetProperty("version").GetInt64();
        await fast.WaitForAsync(m => m[^1].GetProperty("version").GetInt64() == final, $"v{final}");
    }

    private static async Task KeepsUpAsync(SocketRecorder reader, JsonElement[] batch, TimeSpan within)
    {
        var due = DateTime.UtcNow + within;
        foreach (var done in batch)
        {
            string currency = done.GetProperty("currency").GetString()!;
            long version = done.GetProperty("version").GetInt64();
            await reader.WaitForAsync(m => m.Any(x => x.GetProperty("currency").GetString() == currency && x.GetProperty("version").GetInt64() >= version),
                $"{currency} v{version} within {within.TotalSeconds} s", TimeSpan.FromTicks(Math.Max(0, (due - DateTime.UtcNow).Ticks)));
        }
    }

    [Fact]
    public async Task AThousandSocketsThatNeverReadHoldBoundedOutboxesAndAreClosedWhileAReaderKeepsUp()
    {
        const int stuck = 1000;
        await using var app = new BalanceApplication(new()
        {
            ["Balance:Socket:SendTimeout"] = "00:00:04",
            ["Balance:Socket:MaxSocketsPerPlayer"] = "1100",
            ["Balance:Socket:MaxUnauthenticatedPerIp"] = "2000",
            ["Balance:Socket:ConnectBurstPerAddress"] = "2000",
            ["Balance:Socket:ConnectBurstPerPlayer"] = "2000",
        }) { ConfigureTestServices = SmallServerBuffers };
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var closes = new ConcurrentQueue<int>();
        hub.Stats.Closed += closes.Enqueue;

        using var invoker = TinyReceiveBufferClient();
        byte[] auth = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = "auth", access_token = alice.AccessToken }));
        var sockets = new List<ClientWebSocket>();
        try
        {
            for (int i = 0; i < stuck; i += 50)
                sockets.AddRange(await Task.WhenAll(Enumerable.Range(0, 50).Select(async _ =>
                {
                    var ws = new ClientWebSocket();
                    using var cts = new CancellationTokenSource(Patience.Long);
                    await ws.ConnectAsync(app.SocketUri, invoker, cts.Token);
                    await ws.SendAsync(auth, WebSocketMessageType.Text, true, cts.Token);
                    return ws;
                })));
            await using var reader = await SocketRecorder.OpenAsync(app, alice.AccessToken);
            await reader.WaitForAsync(m => m.Count > 0, "the snapshot");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (hub.Stats.Authenticated < stuck + 1 && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.Equal(stuck + 1, hub.Stats.Authenticated);

            string[] currencies = ["USD", "EUR", "GBP", "CAD", "AUD", "JPY", "BTC", "ETH"];
            using var http = app.Http(op.AccessToken);
            int rounds = 0;
            // Keep posting until every stuck socket has been let go (the send timeout is real time: rounds can be quick);
            // the reader must see every round promptly.
            var giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(90);
            while (closes.Count(c => c == 4003) < stuck)
            {
                rounds++;
                Assert.True(DateTime.UtcNow < giveUp, $"after {rounds} rounds only {closes.Count(c => c == 4003)} of {stuck} stuck sockets were closed");
                var batch = await Task.WhenAll(currencies.Select(async currency =>
                    await (await InvariantTests.Post(http, InvariantTests.NewKey(),
                        new { user_id = alice.UserId, type = "deposit", amount = Money.Format(1, currency), currency })).Content.ReadFromJsonAsync<JsonElement>()));
                await KeepsUpAsync(reader, batch, TimeSpan.FromSeconds(2)); // half the send timeout, with 1,000 stuck neighbours
            }
            // Each stuck socket held at most one waiting balance per currency (an unbounded queue would hold up to
            // rounds × 8 per socket); the rest was coalesced.
            Assert.InRange(hub.Stats.DeepestOutbox, 1, currencies.Length);
            Assert.True(hub.Stats.Coalesced >= stuck, $"only {hub.Stats.Coalesced} balances coalesced across {stuck} stuck sockets over {rounds} rounds");
            Assert.Null(reader.CloseStatus);
            Assert.DoesNotContain(closes, c => c != 4003);
        }
        finally
        {
            foreach (var ws in sockets) ws.Abort();
            foreach (var ws in sockets) ws.Dispose();
        }
    }
}
