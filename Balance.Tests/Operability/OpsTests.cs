using System.Net.Http.Json;
using System.Text.Json;

namespace Balance.Tests;

public sealed class OpsTests
{
    // The page's p50/p99 come from these buckets: within 5 % of the exact percentile, and only of what was
    // recorded between the two snapshots.
    [Fact]
    public void PercentilesBetweenTwoSnapshotsAreWithinFivePercentOfTheExactOnes()
    {
        var histogram = new LogHistogram();
        for (int i = 0; i < 1000; i++) histogram.Record(500); // before the window: must not count
        var before = histogram.Snapshot();
        var random = new Random(14);
        var values = Enumerable.Range(0, 20_000).Select(_ => Math.Exp(random.NextDouble() * 8 - 3)).ToArray(); // 0.05 ms … 150 ms
        foreach (double v in values) histogram.Record(v);
        var after = histogram.Snapshot();
        Array.Sort(values);
        foreach (double p in new[] { 0.5, 0.99 })
        {
            double exact = values[(int)Math.Ceiling(p * values.Length) - 1];
            double measured = LogHistogram.Percentile(before, after, p)!.Value;
            Assert.InRange(measured / exact, 0.95, 1.05);
        }
        Assert.Null(LogHistogram.Percentile(after, histogram.Snapshot(), 0.5));
    }

    // A node's sample carries what the meter says: postings and authenticated sockets, this host's only.
    [Fact]
    public async Task TheNodeSampleCountsThisHostsPostingsAndSocketsOnly()
    {
        await using var app = new BalanceApplication(new() { ["Balance:NodeId"] = "node-a" });
        await using var other = new BalanceApplication(); // a second host in this process, with a meter of the same name
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        var otherOp = await other.LoginAsync("operator");
        var otherAlice = await other.LoginAsync("alice");
        for (int i = 0; i < 5; i++) await other.PostOkAsync(otherOp.AccessToken, new { user_id = otherAlice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
        await using var otherSocket = await other.OpenAuthenticatedSocketAsync(otherAlice.AccessToken);
        await otherSocket.ReceiveMessageAsync();

        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        for (int i = 0; i < 3; i++)
        {
            await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
            await socket.ReceiveMessageAsync();
        }

        using var http = app.Http(op.AccessToken);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        JsonElement node;
        do
        {
            node = (await http.GetFromJsonAsync<JsonElement>("/api/ops/nodes")).GetProperty("nodes").EnumerateArray().Single();
            if (node.GetProperty("current").ValueKind == JsonValueKind.Object && node.GetProperty("current").GetProperty("sockets_authenticated").GetInt64() == 1
                && node.GetProperty("series").EnumerateArray().Any(s => s.GetProperty("push_delay_p99_ms").ValueKind == JsonValueKind.Number)) break;
            await Task.Delay(100);
        } while (DateTime.UtcNow < deadline);
        Assert.Equal("node-a", node.GetProperty("node_id").GetString());
        Assert.Equal(4, node.GetProperty("postings").GetInt64()); // the demo's opening deposit and three
        Assert.Equal(4, node.GetProperty("messages_sent").GetInt64()); // the snapshot and three
        Assert.Equal(1, node.GetProperty("current").GetProperty("sockets_authenticated").GetInt64());
        Assert.Contains(node.GetProperty("series").EnumerateArray(), s => s.GetProperty("push_delay_p99_ms").ValueKind == JsonValueKind.Number);
        // Rates are per second of each sample's own interval (a busy box samples late): rate × interval adds up to the count.
        var series = node.GetProperty("series").EnumerateArray().ToList();
        double posted = series.Select((s, i) => s.GetProperty("postings_per_second").GetDouble()
            * (i == 0 ? 1.0 : (s.GetProperty("at").GetInt64() - series[i - 1].GetProperty("at").GetInt64()) / 1000.0)).Sum();
        // The test's three, and the demo's opening deposit too when it fell after the first sample's baseline.
        Assert.InRange(posted, 2.5, 4.5);
    }
}
