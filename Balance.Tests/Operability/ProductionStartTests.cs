using System.Net;

namespace Balance.Tests;

public sealed class ProductionStartTests
{
    [Fact]
    public async Task OutsideDevelopmentThereAreNoDemoAccountsAndTheBootstrapOperatorWorks()
    {
        await using var app = new ProductionApplication(new()
        {
            ["Auth:SigningKey"] = "a-production-signing-key-of-at-least-32-bytes",
            ["Auth:BootstrapOperator:Username"] = "root",
            ["Auth:BootstrapOperator:Password"] = "a-long-bootstrap-password",
        });
        using var http = app.Http();
        var alice = await http.PostAsync("/api/auth/login", new StringContent("""{"username":"alice","password":"demo1234"}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Unauthorized, alice.StatusCode);
        var root = await app.LoginAsync("root", "a-long-bootstrap-password");
        Assert.Equal("operator", root.Role);
    }

    [Fact]
    public void OutsideDevelopmentTheServiceRefusesToStartWithoutASigningKey()
    {
        using var app = new ProductionApplication(new());
        var ex = Assert.ThrowsAny<Exception>(() => app.BaseAddress);
        Assert.Contains("Auth:SigningKey", ex.ToString());
    }

    [Fact]
    public void AClockSkewOverThirtySecondsIsRefusedAtStart()
    {
        using var app = new BalanceApplication(new() { ["Auth:ClockSkew"] = "00:05:00" });
        var ex = Assert.ThrowsAny<Exception>(() => app.BaseAddress);
        Assert.Contains("ClockSkew", ex.ToString());
    }

    [Theory]
    [InlineData("Auth:RefreshReuseGrace", "00:05:00", "RefreshReuseGrace")]
    [InlineData("Auth:RefreshReuseGrace", "-00:00:01", "RefreshReuseGrace")]
    [InlineData("Auth:SessionLifetime", "00:00:00", "SessionLifetime")]
    [InlineData("Balance:MaxBatch", "0", "MaxBatch")]
    [InlineData("Balance:Synchronous", "OFF", "Balance:Synchronous")]
    [InlineData("Balance:Socket:MaxSocketsPerPlayer", "0", "MaxSocketsPerPlayer")]
    [InlineData("Balance:Socket:KeepAliveInterval", "00:00:00", "KeepAliveInterval")]
    [InlineData("Balance:Socket:KeepAliveTimeout", "-00:00:05", "KeepAliveTimeout")]
    [InlineData("Balance:Socket:ConnectsPerSecondPerPlayer", "0", "ConnectsPerSecondPerPlayer")]
    [InlineData("Balance:Socket:ConnectBurstPerAddress", "-1", "ConnectBurstPerAddress")]
    [InlineData("ForwardedHeaders:KnownProxies:0", "proxy.internal", "ForwardedHeaders")]
    [InlineData("ForwardedHeaders:KnownNetworks:0", "10.0.0.1", "ForwardedHeaders")]
    public void ANonsensicalSettingIsRefusedAtStartByName(string key, string value, string named)
    {
        using var app = new BalanceApplication(new() { [key] = value });
        var ex = Assert.ThrowsAny<Exception>(() => app.BaseAddress);
        Assert.Contains(named, ex.ToString());
    }

    private sealed class ProductionApplication(Dictionary<string, string?> settings) : IDisposable, IAsyncDisposable
    {
        private readonly BalanceApplication _inner = new(new(settings) { ["environment"] = "Production" });
        public Uri BaseAddress => _inner.BaseAddress;
        public HttpClient Http() => _inner.Http();
        public Task<Login> LoginAsync(string u, string p) => _inner.LoginAsync(u, p);
        public void Dispose() => _inner.Dispose();
        public ValueTask DisposeAsync() => _inner.DisposeAsync();
    }
}
