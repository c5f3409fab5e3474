using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

public sealed class SocketTests
{
    [Fact]
    public async Task GuideAuthMessageOnRealKestrelGetsSnapshotThenLiveUpdate()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);

        var snapshot = await socket.ReceiveMessageAsync();
        Assert.Equal("balance", snapshot.GetProperty("type").GetString());
        Assert.Equal(alice.UserId, snapshot.GetProperty("user_id").GetString());
        Assert.Equal("100.00", snapshot.GetProperty("balance").GetString());
        Assert.Equal("USD", snapshot.GetProperty("currency").GetString());

        var posted = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "25.50", currency = "USD" });
        var update = await socket.ReceiveMessageAsync();
        Assert.Equal("125.50", update.GetProperty("balance").GetString());
        Assert.Equal(posted.GetProperty("transaction_id").GetString(), update.GetProperty("transaction_id").GetString());
        Assert.Equal("deposit", update.GetProperty("transaction_type").GetString());
        Assert.Equal(snapshot.GetProperty("version").GetInt64() + 1, update.GetProperty("version").GetInt64());
    }

    [Fact]
    public async Task EverySocketOfThePlayerIsUpdatedAndNobodyElses()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var op = await app.LoginAsync("operator");
        await using var tab1 = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await using var tab2 = await app.OpenAuthenticatedSocketAsync((await app.LoginAsync("alice")).AccessToken);
        await using var bobSocket = await app.OpenAuthenticatedSocketAsync(bob.AccessToken);
        await tab1.ReceiveMessageAsync();
        await tab2.ReceiveMessageAsync();
        var bobSnapshot = await bobSocket.ReceiveMessageAsync();
        Assert.Equal("0.00", bobSnapshot.GetProperty("balance").GetString());
        Assert.Equal(0, bobSnapshot.GetProperty("version").GetInt64());

        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        Assert.Equal("90.00", (await tab1.ReceiveMessageAsync()).GetProperty("balance").GetString());
        Assert.Equal("90.00", (await tab2.ReceiveMessageAsync()).GetProperty("balance").GetString());
        await bobSocket.AssertSilentAsync(TimeSpan.FromMilliseconds(500));
    }

    [Fact]
    public async Task HeaderAuthOnTheUpgradeWorksForNonBrowserClients()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenSocketAsync(bearer: alice.AccessToken);
        Assert.Equal("100.00", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task V2ClientsGetAuthOkAndErrorBeforeClose()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken, "balance.v2");
        Assert.Equal("balance.v2", socket.Socket.SubProtocol);
        var ok = await socket.ReceiveMessageAsync();
        Assert.Equal("auth_ok", ok.GetProperty("type").GetString());
        Assert.Equal(alice.UserId, ok.GetProperty("user_id").GetString());
        Assert.True(DateTimeOffset.Parse(ok.GetProperty("expires_at").GetString()!) > DateTimeOffset.UtcNow);
        Assert.Equal("balance", (await socket.ReceiveMessageAsync()).GetProperty("type").GetString());

        await socket.SendTextAsync("""{"type":"subscribe"}""");
        var error = await socket.ReceiveMessageAsync();
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal("bad_request", error.GetProperty("code").GetString());
        Assert.Equal(4500, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task BadTokenClosesWith4501()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenAuthenticatedSocketAsync("not-a-jwt");
        Assert.Equal(4501, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task OperatorTokenOnThePlayerSocketClosesWith4503()
    {
        await using var app = new BalanceApplication();
        var op = await app.LoginAsync("operator");
        await using var socket = await app.OpenAuthenticatedSocketAsync(op.AccessToken);
        Assert.Equal(4503, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task NoAuthWithinTheDeadlineClosesWith4002()
    {
        await using var app = new BalanceApplication(new() { ["Balance:Socket:AuthTimeout"] = "00:00:01" });
        await using var socket = await app.OpenSocketAsync();
        Assert.Equal(4002, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task TheDefaultAuthDeadlineIsTenSeconds()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        var opened = DateTime.UtcNow;
        Assert.Equal(4002, await socket.ReceiveCloseAsync(TimeSpan.FromSeconds(20)));
        // Not before ten seconds; the upper bound only catches a deadline that never fires on time.
        Assert.InRange((DateTime.UtcNow - opened).TotalSeconds, 9.5, 16);
    }

    [Fact]
    public async Task ExpiringTokenWithoutAFreshOneClosesWith4001()
    {
        await using var app = new BalanceApplication(new() { ["Auth:AccessTokenLifetime"] = "00:00:02", ["Auth:ClockSkew"] = "00:00:00" });
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        Assert.Equal(4001, await socket.ReceiveCloseAsync(TimeSpan.FromSeconds(6)));
    }

    [Fact]
    public async Task ReauthWithAFreshTokenKeepsTheSocketOpenPastTheFirstExpiry()
    {
        // The fresh token is issued 5 s after the first, so it outlives it by seconds even on a loaded machine.
        await using var app = new BalanceApplication(new() { ["Auth:AccessTokenLifetime"] = "00:00:08", ["Auth:ClockSkew"] = "00:00:00" });
        var alice = await app.LoginAsync("alice");
        var firstExpiry = DateTime.UtcNow.AddSeconds(8);
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        var opLogin = await app.LoginAsync("operator");
        await Task.Delay(5000);
        // Fresh tokens through refresh: cheap (no password hashing), so they are issued right now even under load.
        string fresh = await RefreshAsync(app, alice.RefreshToken);
        string op = await RefreshAsync(app, opLogin.RefreshToken);
        await socket.SendAuthAsync(fresh); // the guide's updateToken
        var untilPastFirstExpiry = firstExpiry - DateTime.UtcNow + TimeSpan.FromMilliseconds(500);
        if (untilPastFirstExpiry > TimeSpan.Zero) await Task.Delay(untilPastFirstExpiry);
        await app.PostOkAsync(op, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        Assert.Equal("101.00", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());
    }

    private static async Task<string> RefreshAsync(BalanceApplication app, string refreshToken)
    {
        using var http = app.Http();
        var response = await http.PostAsync("/api/auth/refresh", JsonContent(new { refresh_token = refreshToken }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("access_token").GetString()!;
    }

    [Fact]
    public async Task ReauthAsAnotherUserClosesWith4503()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        await socket.SendAuthAsync(bob.AccessToken);
        Assert.Equal(4503, await socket.ReceiveCloseAsync());
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("[1,2,3]")]
    [InlineData("""{"type":"dance"}""")]
    [InlineData("""{"type":"auth"}""")]
    public async Task MalformedMessagesCloseWith4500(string text)
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        await socket.SendTextAsync(text);
        Assert.Equal(4500, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task BinaryFramesCloseWith4500()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        await socket.Socket.SendAsync(new byte[] { 1, 2, 3 }, WebSocketMessageType.Binary, true, CancellationToken.None);
        Assert.Equal(4500, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task FramesOver4KiBCloseWith1009()
    {
        await using var app = new BalanceApplication();
        await using var socket = await app.OpenSocketAsync();
        await socket.SendTextAsync("{\"type\":\"auth\",\"access_token\":\"" + new string('a', 5000) + "\"}");
        Assert.Equal(1009, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task AClientsCloseIsAnsweredAndCountedWithTheClientsOwnCode()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        var closes = new System.Collections.Concurrent.ConcurrentQueue<int>();
        hub.Stats.Closed += closes.Enqueue;
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        using (var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout))
            await socket.Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.Socket.CloseStatus); // echoed, RFC 6455 §5.5.1
        var deadline = DateTime.UtcNow + Patience.Long;
        while (closes.IsEmpty && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal([1000], closes.ToArray());
    }

    [Fact]
    public async Task LogoutClosesThatLoginsSocketsWith4503()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        using var http = app.Http(alice.AccessToken);
        var response = await http.PostAsync("/api/auth/logout", JsonContent(new { refresh_token = alice.RefreshToken }));
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        Assert.Equal(4503, await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task ForeignOriginIsRefusedBeforeTheUpgrade()
    {
        await using var app = new BalanceApplication();
        var ex = await Assert.ThrowsAsync<WebSocketException>(() => app.OpenSocketAsync(origin: "https://evil.example"));
        Assert.Contains("403", ex.Message);
    }

    private static StringContent JsonContent(object body) => new(JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json");
}
