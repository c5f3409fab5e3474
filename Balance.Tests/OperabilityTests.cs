using System.Net;

namespace Balance.Tests;

public sealed class OperabilityTests
{
    [Fact]
    public async Task MetricsArePublishedInPrometheusFormat()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
        await socket.ReceiveMessageAsync();

        using var http = app.Http();
        string text = "";
        // The exporter caches a scrape briefly; poll until the numbers show the work above.
        for (int i = 0; i < 50 && !(text.Contains("balance_messages_sent_total") && text.Contains("balance_sockets_authenticated") && text.Contains("balance_push_delay_milliseconds_count")); i++)
        {
            var response = await http.GetAsync("/metrics");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            text = await response.Content.ReadAsStringAsync();
            await Task.Delay(100);
        }
        Assert.Contains("balance_ledger_commits_total", text);
        Assert.Contains("balance_ledger_commit_duration_milliseconds_bucket", text);
        Assert.Contains("balance_sockets_open", text);
        Assert.Matches(@"balance_wal_pages\{[^}]*\} \d+", text); // the background checkpointer has run (every 50 ms)
        Assert.Contains("balance_sockets_authenticated", text);
        Assert.Contains("balance_messages_sent_total", text);
        // Commit → socket delay, with buckets fine enough to tell a few milliseconds apart; the snapshot sent at
        // auth is not a commit and is not counted, the deposit's push is.
        Assert.Contains("balance_push_delay_milliseconds_bucket{otel_scope_name=\"Balance\",le=\"5\"}", text);
        Assert.Matches(@"balance_push_delay_milliseconds_count\{[^}]*\} 1\b", text);
    }

    [Fact]
    public async Task ShutdownClosesSocketsWith1001()
    {
        var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync();
        var stopping = app.DisposeAsync().AsTask();
        Assert.Equal(1001, await socket.ReceiveCloseAsync(TimeSpan.FromSeconds(10)));
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
    }
}

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
