using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

// Behind a proxy or load balancer: forwarded headers from known proxies only, and TLS (https, wss) end to end.
public sealed class ProxyTests
{
    private static readonly Dictionary<string, string?> BehindLocalProxy = new() { ["ForwardedHeaders:KnownProxies:0"] = "127.0.0.1" };

    private static async Task<HttpStatusCode> LoginFromAsync(BalanceApplication app, string? forwardedFor, string username = "alice", string password = "demo1234")
    {
        using var http = app.Http();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/auth/login") { Content = JsonContent.Create(new { username, password }) };
        if (forwardedFor is not null) request.Headers.Add("X-Forwarded-For", forwardedFor);
        return (await http.SendAsync(request)).StatusCode;
    }

    [Fact]
    public async Task AClientCannotPickItsOwnAddressWithForwardedHeadersFromAnUnknownPeer()
    {
        // Loopback is not trusted unless configured: the framework's own default would trust it.
        await using var app = new BalanceApplication(new() { ["Auth:LoginAttemptsPerMinutePerIp"] = "3" });
        for (int i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.OK, await LoginFromAsync(app, $"198.51.100.{i}"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await LoginFromAsync(app, "198.51.100.99"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await LoginFromAsync(app, "198.51.100.100, 198.51.100.101"));
        // /metrics stays a loopback privilege of the real peer, whatever the header claims.
        using var http = app.Http();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Add("X-Forwarded-For", "203.0.113.7");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(request)).StatusCode);
    }

    [Fact]
    public async Task WithAProxyConfiguredLoopbackIsNotTrustedUnlessListed()
    {
        // The framework trusts loopback by default; with another proxy listed, a local client is just a client.
        await using var app = new BalanceApplication(new() { ["ForwardedHeaders:KnownProxies:0"] = "192.0.2.10", ["Auth:LoginAttemptsPerMinutePerIp"] = "3" });
        for (int i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.OK, await LoginFromAsync(app, $"198.51.100.{i}"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await LoginFromAsync(app, "198.51.100.99"));
        using var http = app.Http();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Add("X-Forwarded-For", "203.0.113.7");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(request)).StatusCode); // still the loopback peer it is
    }

    [Fact]
    public async Task BehindAKnownProxyLimitsAndTheMetricsRuleUseTheForwardedClient()
    {
        var logs = new CapturingLoggerProvider();
        await using var app = new BalanceApplication(new(BehindLocalProxy) { ["Auth:LoginAttemptsPerMinutePerIp"] = "3" })
        { ConfigureTestServices = s => s.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs) };
        Assert.Equal(HttpStatusCode.Unauthorized, await LoginFromAsync(app, "203.0.113.1", password: "wrong-password"));
        Assert.Contains(logs.Lines, line => line.Contains("Failed login from 203.0.113.1")); // audit lines name the client, not the proxy
        for (int i = 0; i < 2; i++) Assert.Equal(HttpStatusCode.OK, await LoginFromAsync(app, "203.0.113.1"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await LoginFromAsync(app, "203.0.113.1"));
        // Another client behind the same proxy has its own allowance.
        Assert.Equal(HttpStatusCode.OK, await LoginFromAsync(app, "203.0.113.2"));
        // A chain: the client is the last address that is not a known proxy.
        Assert.Equal(HttpStatusCode.TooManyRequests, await LoginFromAsync(app, "203.0.113.1, 127.0.0.1"));

        using var http = app.Http();
        using (var remote = new HttpRequestMessage(HttpMethod.Get, "/metrics"))
        {
            remote.Headers.Add("X-Forwarded-For", "203.0.113.7");
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(remote)).StatusCode); // a local proxy does not open /metrics to the world
        }
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/metrics")).StatusCode); // the box itself still may

        // Hostile values from the proxy change nothing and break nothing.
        foreach (string junk in new[] { "not-an-address", "999.1.1.1", new string('1', 8000), "203.0.113.9, , ,", "[::1]:x" })
            Assert.NotEqual(HttpStatusCode.InternalServerError, await LoginFromAsync(app, junk, "bob"));
    }

    [Fact]
    public async Task TheUnauthenticatedSocketCapAndTheOriginRuleUseTheForwardedClientAndHost()
    {
        await using var app = new BalanceApplication(new(BehindLocalProxy) { ["Balance:Socket:MaxUnauthenticatedPerIp"] = "2" });
        var sockets = new List<ClientWebSocket>();
        try
        {
            async Task<ClientWebSocket> OpenAsync(string client, string? origin = null, string? host = null)
            {
                var ws = new ClientWebSocket();
                ws.Options.CollectHttpResponseDetails = true;
                ws.Options.SetRequestHeader("X-Forwarded-For", client);
                if (origin is not null) ws.Options.SetRequestHeader("Origin", origin);
                if (host is not null) { ws.Options.SetRequestHeader("X-Forwarded-Host", host); ws.Options.SetRequestHeader("X-Forwarded-Proto", "https"); }
                using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
                try { await ws.ConnectAsync(app.SocketUri, cts.Token); } catch (WebSocketException) { }
                sockets.Add(ws);
                return ws;
            }
            Assert.Equal(WebSocketState.Open, (await OpenAsync("203.0.113.1")).State);
            Assert.Equal(WebSocketState.Open, (await OpenAsync("203.0.113.1")).State);
            Assert.Equal(HttpStatusCode.TooManyRequests, (await OpenAsync("203.0.113.1")).HttpStatusCode);
            Assert.Equal(WebSocketState.Open, (await OpenAsync("203.0.113.2")).State);

            // The proxy serves the site as casino.example and rewrites Host: the page's own origin is still same-origin.
            Assert.Equal(WebSocketState.Open, (await OpenAsync("203.0.113.3", "https://casino.example", "casino.example")).State);
            Assert.Equal(HttpStatusCode.Forbidden, (await OpenAsync("203.0.113.4", "https://evil.example", "casino.example")).HttpStatusCode);
        }
        finally
        {
            foreach (var ws in sockets) ws.Abort();
        }
    }

    [Fact]
    public async Task AnIpv6Slash64CountsAsOneAddressForTheSocketLimits()
    {
        await using var app = new BalanceApplication(new(BehindLocalProxy) { ["Balance:Socket:MaxUnauthenticatedPerIp"] = "2" });
        var sockets = new List<ClientWebSocket>();
        try
        {
            async Task<ClientWebSocket> OpenAsync(string client)
            {
                var ws = new ClientWebSocket();
                ws.Options.CollectHttpResponseDetails = true;
                ws.Options.SetRequestHeader("X-Forwarded-For", client);
                using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
                try { await ws.ConnectAsync(app.SocketUri, cts.Token); } catch (WebSocketException) { }
                sockets.Add(ws);
                return ws;
            }
            // Three addresses of one /64 share one allowance; the next /64 has its own.
            Assert.Equal(WebSocketState.Open, (await OpenAsync("2001:db8:1:2::1")).State);
            Assert.Equal(WebSocketState.Open, (await OpenAsync("2001:db8:1:2:aaaa::2")).State);
            Assert.Equal(HttpStatusCode.TooManyRequests, (await OpenAsync("2001:db8:1:2:ffff:ffff:ffff:ffff")).HttpStatusCode);
            Assert.Equal(WebSocketState.Open, (await OpenAsync("2001:db8:1:3::1")).State);
        }
        finally
        {
            foreach (var ws in sockets) ws.Abort();
        }
    }

    [Fact]
    public async Task AMalformedProxyListStopsTheStartWithAClearError()
    {
        await using var app = new BalanceApplication(new() { ["ForwardedHeaders:KnownNetworks:0"] = "10.0.0.0/33" });
        var error = Assert.ThrowsAny<Exception>(() => app.Services.GetRequiredService<BalanceSocket>());
        Assert.Contains("ForwardedHeaders", error.ToString());
    }

    // ---- TLS ----

    private static X509Certificate2 MakeCertificate()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=balance.test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("balance.test");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false)); // server auth
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx, "test"), "test");
    }

    private sealed class TlsService : IAsyncDisposable
    {
        private readonly string _pfx = Path.Combine(Path.GetTempPath(), $"balance-test-{Guid.NewGuid():N}.pfx");
        public X509Certificate2 Certificate { get; } = MakeCertificate();
        public BalanceApplication App { get; }

        public TlsService(Dictionary<string, string?>? extra = null)
        {
            File.WriteAllBytes(_pfx, Certificate.Export(X509ContentType.Pfx, "test"));
            var settings = new Dictionary<string, string?>(extra ?? new())
            {
                ["Kestrel:Endpoints:Https:Url"] = "https://127.0.0.1:0",
                ["Kestrel:Endpoints:Https:Certificate:Path"] = _pfx,
                ["Kestrel:Endpoints:Https:Certificate:Password"] = "test",
            };
            App = new BalanceApplication(settings);
        }

        // Trust exactly this certificate, nothing else.
        public bool Trusted(X509Certificate? presented) => presented is not null && presented.GetCertHashString() == Certificate.GetCertHashString();

        public HttpClient Http(string? token = null)
        {
            var client = new HttpClient(new SocketsHttpHandler { SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, c, _, _) => Trusted(c) } })
            { BaseAddress = App.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
            if (token is not null) client.DefaultRequestHeaders.Authorization = new("Bearer", token);
            return client;
        }

        public async ValueTask DisposeAsync()
        {
            await App.DisposeAsync();
            File.Delete(_pfx);
            Certificate.Dispose();
        }
    }

    [Fact]
    public async Task TheGuidesProtocolWorksOverWssWithTheServicesCertificate()
    {
        await using var tls = new TlsService();
        Assert.Equal("https", tls.App.BaseAddress.Scheme);
        using var anonymous = tls.Http();
        async Task<JsonElement> LoginAsync(string user) =>
            await (await anonymous.PostAsJsonAsync("/api/auth/login", new { username = user, password = "demo1234" })).Content.ReadFromJsonAsync<JsonElement>();
        var alice = await LoginAsync("alice");
        var op = await LoginAsync("operator");

        using var ws = new ClientWebSocket();
        ws.Options.RemoteCertificateValidationCallback = (_, c, _, _) => tls.Trusted(c);
        using (var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout))
            await ws.ConnectAsync(new UriBuilder(tls.App.BaseAddress) { Scheme = "wss", Path = "/ws/balance/player" }.Uri, cts.Token);
        var socket = new TestSocket(ws);
        await socket.SendAuthAsync(alice.GetProperty("access_token").GetString()!);
        Assert.Equal("100.00", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());

        using var http = tls.Http(op.GetProperty("access_token").GetString());
        using var post = new HttpRequestMessage(HttpMethod.Post, "/api/transactions")
        {
            Content = JsonContent.Create(new { user_id = alice.GetProperty("user_id").GetString(), type = "bet", amount = "2.50", currency = "USD" }),
        };
        post.Headers.Add("Idempotency-Key", Guid.NewGuid().ToString());
        Assert.Equal(HttpStatusCode.Created, (await http.SendAsync(post)).StatusCode);
        Assert.Equal("97.50", (await socket.ReceiveMessageAsync()).GetProperty("balance").GetString());

        // A client that does not trust the certificate gets no socket at all.
        using var untrusting = new ClientWebSocket();
        using var refuse = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
        await Assert.ThrowsAsync<WebSocketException>(() => untrusting.ConnectAsync(new UriBuilder(tls.App.BaseAddress) { Scheme = "wss", Path = "/ws/balance/player" }.Uri, refuse.Token));
        await socket.DisposeAsync();
    }

    [Fact]
    public async Task HstsIsSentOverHttpsOutsideDevelopmentOnly()
    {
        var production = new Dictionary<string, string?>
        {
            ["environment"] = "Production",
            ["Auth:SigningKey"] = "proxy-tests-signing-key-0123456789-abcdef",
        };
        await using (var tls = new TlsService(production))
        {
            using var http = tls.Http();
            using var request = new HttpRequestMessage(HttpMethod.Get, "/healthz");
            request.Headers.Host = "balance.test"; // HSTS is never sent for localhost names
            var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.TryGetValues("Strict-Transport-Security", out var hsts), "no HSTS header over HTTPS in Production");
            Assert.Contains("max-age=", hsts!.Single());
        }
        await using (var tls = new TlsService())
        {
            using var http = tls.Http();
            using var request = new HttpRequestMessage(HttpMethod.Get, "/healthz");
            request.Headers.Host = "balance.test";
            Assert.False((await http.SendAsync(request)).Headers.Contains("Strict-Transport-Security"), "HSTS in Development would pin a developer's browser");
        }
    }
}
