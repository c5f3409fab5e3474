using System.Net;
using System.Net.WebSockets;

namespace Balance.Tests;

// CORS on the REST routes has its own list (Balance:Cors:AllowedOrigins); unset, it is the socket's
// (Balance:Socket:AllowedOrigins), as it was when one list served both. Outside Development, so loopback pages get no
// exception and only the lists decide.
public sealed class CorsTests
{
    private const string SigningKey = "cors-tests-signing-key-0123456789-abcdefgh";

    // A browser's preflight for a login from that origin: the origin echoed back when it may call.
    private static async Task<bool> RestAllowsAsync(BalanceApplication app, string origin)
    {
        using var http = app.Http();
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/api/auth/login");
        preflight.Headers.Add("Origin", origin);
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        preflight.Headers.Add("Access-Control-Request-Headers", "content-type");
        using var answer = await http.SendAsync(preflight);
        return answer.Headers.TryGetValues("Access-Control-Allow-Origin", out var allowed) && allowed.Single() == origin;
    }

    private static async Task<bool> SocketAllowsAsync(BalanceApplication app, string origin)
    {
        using var ws = new ClientWebSocket();
        ws.Options.CollectHttpResponseDetails = true;
        ws.Options.SetRequestHeader("Origin", origin);
        using var cts = new CancellationTokenSource(Patience.Long);
        var refused = await Record.ExceptionAsync(() => ws.ConnectAsync(app.SocketUri, cts.Token));
        if (refused is null) return true;
        Assert.Equal(HttpStatusCode.Forbidden, ws.HttpStatusCode);
        return false;
    }

    [Fact]
    public async Task WithoutItsOwnListCorsAllowsTheSocketsOrigins()
    {
        await using var app = new BalanceApplication(settings: new()
        {
            ["environment"] = "Production",
            ["Auth:SigningKey"] = SigningKey,
            ["Balance:Socket:AllowedOrigins:0"] = "https://casino.example",
        });
        Assert.True(await RestAllowsAsync(app, "https://casino.example"));
        Assert.False(await RestAllowsAsync(app, "https://evil.example"));
        Assert.False(await RestAllowsAsync(app, "http://localhost:3000"));
    }

    [Fact]
    public async Task ItsOwnListDecidesCorsAndLeavesTheSocketsOriginsAlone()
    {
        await using var app = new BalanceApplication(settings: new()
        {
            ["environment"] = "Production",
            ["Auth:SigningKey"] = SigningKey,
            ["Balance:Socket:AllowedOrigins:0"] = "https://casino.example",
            ["Balance:Cors:AllowedOrigins:0"] = "https://backoffice.example",
        });
        Assert.True(await RestAllowsAsync(app, "https://backoffice.example"));
        Assert.False(await RestAllowsAsync(app, "https://casino.example"));
        Assert.True(await SocketAllowsAsync(app, "https://casino.example"));
        Assert.False(await SocketAllowsAsync(app, "https://backoffice.example"));
    }
}
