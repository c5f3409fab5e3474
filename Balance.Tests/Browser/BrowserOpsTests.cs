using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// The operations page at /ops.html, watched while real load runs: postings, sockets, a socket the server closes.
[Collection(BrowserCollection.Name)]
public sealed class BrowserOpsTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static Task FieldAsync(IPage page, string field, string pattern) =>
        page.WaitForAsync("([field, pattern]) => new RegExp(pattern).test(document.querySelector(`#nodes tbody td[data-field=${field}]`)?.textContent ?? '')",
            new[] { field, pattern }, timeout: 20_000);

    [Fact]
    public async Task TheOperationsPageShowsLiveSocketsPostingsDelaysAndClosesOnlyToOperators()
    {
        await using var app = new BalanceApplication();
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/ops.html");
        await using var pageContext = page.Context; // closed before the app: no polling after the test
        await page.SetViewportSizeAsync(1280, 900);

        // A player's login is refused here, and no token stays behind.
        await page.FillAsync("#username", "alice");
        await page.FillAsync("#password", "demo1234");
        await page.ClickAsync("#login-button");
        await page.WaitForAsync("() => document.querySelector('#login-error').textContent.includes('operators')");
        Assert.True(await page.IsHiddenAsync("#ops-view"));
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('balance.ops.tokens')"));

        await page.FillAsync("#username", "operator");
        await page.ClickAsync("#login-button");
        await FieldAsync(page, "sockets_authenticated", "^0$");
        string nodeId = (await page.TextContentAsync("#nodes tbody td[data-field=node_id]"))!;

        // Load: three authenticated sockets of alice, one socket closed by the server (bad frame), postings while the page watches.
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var sockets = new List<TestSocket>();
        for (int i = 0; i < 3; i++)
        {
            var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
            await socket.ReceiveMessageAsync(); // the snapshot: authenticated for sure
            sockets.Add(socket);
        }
        await using (var bad = await app.OpenAuthenticatedSocketAsync(alice.AccessToken))
        {
            await bad.ReceiveMessageAsync();
            await bad.SendTextAsync("{not json");
            Assert.Equal(4500, await bad.ReceiveCloseAsync());
        }
        await FieldAsync(page, "sockets_authenticated", "^3$");
        await FieldAsync(page, "sockets_open", "^3$");

        using var load = new CancellationTokenSource();
        var poster = Task.Run(async () =>
        {
            int n = 0;
            while (!load.IsCancellationRequested)
            {
                await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = n % 2 == 0 ? "deposit" : "withdrawal", amount = "1.00", currency = "USD" });
                n++;
                // Each socket reads what it is sent, so the delay measured is the push, not a full outbox.
                foreach (var s in sockets) await s.ReceiveMessageAsync();
            }
            return n;
        });
        try
        {
            await FieldAsync(page, "postings_per_second", "^[1-9]");
            await FieldAsync(page, "messages_per_second", "^[1-9]");
            await FieldAsync(page, "push_delay_p99_ms", "^[0-9.]+ ms$");
            await FieldAsync(page, "batch_size", "^[0-9.]+ / [0-9]+$");
            await FieldAsync(page, "wal", "^[1-9][0-9,]* pages");
            await page.WaitForAsync("() => document.querySelector('#closes tr[data-code=\"4500\"] td[data-field=count]')?.textContent === '1'");
            // The charts draw the same samples: a line with points in the postings chart above zero.
            await page.WaitForAsync("() => opsState.charts.length === 4 && opsState.charts[1].data[1].filter(v => v > 0).length >= 2", timeout: 20_000);
        }
        finally
        {
            load.Cancel();
        }
        int posted = await poster;
        Assert.True(posted > 0);

        // The page's numbers are the service's: what /api/ops/nodes says is what the page read, and its totals match the ledger.
        using (var http = app.Http(op.AccessToken))
        {
            var view = await http.GetFromJsonAsync<JsonElement>("/api/ops/nodes");
            var node = view.GetProperty("nodes").EnumerateArray().Single();
            Assert.Equal(nodeId, node.GetProperty("node_id").GetString());
            Assert.Equal(1 + posted, node.GetProperty("postings").GetInt64()); // the demo's opening deposit and ours
            Assert.Equal(1, node.GetProperty("closes_by_code").GetProperty("4500").GetInt64());
            Assert.Equal(3, node.GetProperty("current").GetProperty("sockets_authenticated").GetInt64());
        }

        if (Environment.GetEnvironmentVariable("BALANCE_OPS_SCREENSHOT") is { Length: > 0 } path)
        {
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        }
        var png = await page.ScreenshotAsync();
        Assert.Equal([0x89, 0x50, 0x4E, 0x47], png[..4]);
        foreach (var s in sockets) await s.DisposeAsync();

        // Closed sockets leave the count. A close the client started (1000, normal) is answered and recorded with its own code.
        await FieldAsync(page, "sockets_open", "^0$");
        await page.WaitForAsync("() => document.querySelector('#closes tr[data-code=\"1000\"] td[data-field=count]')?.textContent === '3'", timeout: 20_000);
    }

    [Fact]
    public async Task ThePageRefreshesItsTokenWhenItExpiresAndLogoutEndsTheLogin()
    {
        await using var app = new BalanceApplication(new() { ["Auth:AccessTokenLifetime"] = "00:00:02", ["Auth:ClockSkew"] = "00:00:00" });
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/ops.html");
        await using var pageContext = page.Context;
        await page.FillAsync("#password", "demo1234");
        await page.ClickAsync("#login-button");
        await FieldAsync(page, "sockets_open", "^0$");
        string first = await page.EvaluateAsync<string>("() => JSON.parse(sessionStorage.getItem('balance.ops.tokens')).access");

        // Past the token's two seconds the page spends its refresh token and goes on reading.
        await page.WaitForAsync("(first) => JSON.parse(sessionStorage.getItem('balance.ops.tokens') ?? 'null')?.access !== first", first, timeout: 20_000);
        string updated = (await page.TextContentAsync("#updated"))!;
        await page.WaitForAsync("(before) => document.querySelector('#updated').textContent !== before && !document.querySelector('#updated').textContent.includes('retrying')", updated, timeout: 20_000);
        Assert.True(await page.IsVisibleAsync("#ops-view"));

        string refresh = await page.EvaluateAsync<string>("() => JSON.parse(sessionStorage.getItem('balance.ops.tokens')).refresh");
        await page.ClickAsync("#logout");
        await page.WaitForAsync("() => !document.querySelector('#login-view').hidden");
        using var http = app.Http();
        var response = await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = refresh });
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("session_revoked", (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
    }

    [Fact]
    public async Task TheOperationsDataIsForOperatorsOnly()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        using (var anonymous = app.Http())
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/ops/nodes")).StatusCode);
        using (var player = app.Http(alice.AccessToken))
            Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await player.GetAsync("/api/ops/nodes")).StatusCode);
    }
}
