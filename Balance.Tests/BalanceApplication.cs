using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

namespace Balance.Tests;

// The engines a test can run the service on: a SQLite file, or a database of the test process's own PostgreSQL.
public enum Store { Sqlite, Postgres }

// The real service on real Kestrel (a free loopback port) with its own database: a temp SQLite file, or a fresh
// database on the test process's real PostgreSQL (Postgres/PostgresServer.cs).
public sealed class BalanceApplication : WebApplicationFactory<Program>
{
    public static readonly TimeSpan ReceiveTimeout = TimeSpan.FromSeconds(10); // generous: CI may share two cores
    public Store Store { get; }
    /// The SQLite file, or with PostgreSQL the Npgsql connection string of the test's database.
    public string DatabasePath { get; }
    private readonly Dictionary<string, string?> _settings;
    private readonly TempDatabase? _ownDatabase; // when the test did not bring a database file of its own
    private readonly int _port;

    // port 0 picks a free one; a fixed port lets a test restart the service where a client expects it.
    public BalanceApplication(Dictionary<string, string?>? settings = null, string? databasePath = null, int port = 0, Store store = Store.Sqlite)
    {
        Store = store;
        DatabasePath = databasePath ?? (_ownDatabase = new TempDatabase(store)).Location;
        _settings = settings ?? new();
        _port = port;
        // The address goes in through configuration, not UseKestrel(port): the factory would rewrite the
        // server's addresses after Build(), racing Program's own start when start-up is quick (a restart).
        UseKestrel();
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Development");
        builder.UseSetting("urls", $"http://127.0.0.1:{_port}");
        if (Store == Store.Postgres)
        {
            builder.UseSetting("Balance:Store", "Postgres");
            builder.UseSetting("ConnectionStrings:Balance", DatabasePath);
        }
        else builder.UseSetting("ConnectionStrings:Balance", $"Data Source={DatabasePath}");
        builder.UseSetting("Logging:LogLevel:Default", "Warning");
        foreach (var (key, value) in _settings) builder.UseSetting(key, value);
        // After Program's own registrations, so a test's TimeProvider (a fake clock) replaces the system one.
        if (ConfigureTestServices is { } configure) builder.ConfigureTestServices(configure);
    }

    /// Extra service registrations for one test (e.g. a capturing ILoggerProvider).
    public Action<IServiceCollection>? ConfigureTestServices { get; init; }

    public Uri BaseAddress
    {
        get
        {
            StartServer();
            var address = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new Uri(address.Replace("[::]", "127.0.0.1").Replace("localhost", "127.0.0.1"));
        }
    }

    public Uri SocketUri => new UriBuilder(BaseAddress) { Scheme = "ws", Path = "/ws/balance/player" }.Uri;

    public HttpClient Http(string? token = null) => Api.Client(BaseAddress, token);

    public Task<Login> LoginAsync(string username, string password = "demo1234") => Api.LoginAsync(BaseAddress, username, password);

    public async Task<string> CreatePlayerAsync(string username)
    {
        var op = await LoginAsync("operator");
        using var http = Http(op.AccessToken);
        var response = await http.PostAsJsonAsync("/api/users", new { username, password = "password123", role = "player" });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("user_id").GetString()!;
    }

    public async Task<HttpResponseMessage> PostTransactionAsync(string operatorToken, object body, string? idempotencyKey = null)
    {
        using var http = Http(operatorToken);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/transactions") { Content = JsonContent.Create(body) };
        request.Headers.Add("Idempotency-Key", idempotencyKey ?? Guid.NewGuid().ToString());
        return await http.SendAsync(request);
    }

    public async Task<JsonElement> PostOkAsync(string operatorToken, object body, string? idempotencyKey = null)
    {
        var response = await PostTransactionAsync(operatorToken, body, idempotencyKey);
        Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    public async Task<TestSocket> OpenSocketAsync(string? subProtocol = null, string? bearer = null, string? origin = null)
    {
        var ws = new ClientWebSocket();
        if (subProtocol is not null) ws.Options.AddSubProtocol(subProtocol);
        if (bearer is not null) ws.Options.SetRequestHeader("Authorization", $"Bearer {bearer}");
        if (origin is not null) ws.Options.SetRequestHeader("Origin", origin);
        var uri = SocketUri; // starts the server first: start-up time is not the socket's to wait for
        using var cts = new CancellationTokenSource(ReceiveTimeout);
        await ws.ConnectAsync(uri, cts.Token);
        return new TestSocket(ws);
    }

    /// Opens a socket and authenticates it the guide's way.
    public async Task<TestSocket> OpenAuthenticatedSocketAsync(string accessToken, string? subProtocol = null)
    {
        var socket = await OpenSocketAsync(subProtocol);
        await socket.SendAuthAsync(accessToken);
        return socket;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _ownDatabase?.Dispose();
    }
}

public sealed record Login(string AccessToken, string RefreshToken, string UserId, string Role);

// HTTP helpers shared by the in-process service and the one the durability tests start as a separate process.
public static class Api
{
    public static HttpClient Client(Uri baseAddress, string? token = null)
    {
        var client = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
        if (token is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    public static async Task<Login> LoginAsync(Uri baseAddress, string username, string password = "demo1234")
    {
        using var http = Client(baseAddress);
        var response = await http.PostAsJsonAsync("/api/auth/login", new { username, password });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await response.Content.ReadFromJsonAsync<JsonElement>();
        return new Login(json.GetProperty("access_token").GetString()!, json.GetProperty("refresh_token").GetString()!,
            json.GetProperty("user_id").GetString()!, json.GetProperty("role").GetString()!);
    }
}

public sealed class TestSocket(ClientWebSocket ws) : IAsyncDisposable
{
    public ClientWebSocket Socket => ws;

    public Task SendAuthAsync(string token) => SendTextAsync(JsonSerializer.Serialize(new { type = "auth", access_token = token, data = new { } }));

    public async Task SendTextAsync(string text)
    {
        using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
        await ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cts.Token);
    }

    /// The next message, or null when the server closed the socket. Fails the test after the timeout.
    public async Task<JsonElement?> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? BalanceApplication.ReceiveTimeout);
        var buffer = new byte[16 * 1024];
        int count = 0;
        WebSocketReceiveResult result;
        do
        {
            result = await ws.ReceiveAsync(new ArraySegment<byte>(buffer, count, buffer.Length - count), cts.Token);
            count += result.Count;
        } while (!result.EndOfMessage);
        if (result.MessageType == WebSocketMessageType.Close) return null;
        return JsonDocument.Parse(buffer.AsMemory(0, count)).RootElement.Clone();
    }

    public async Task<JsonElement> ReceiveMessageAsync(TimeSpan? timeout = null) =>
        await ReceiveAsync(timeout) ?? throw new Xunit.Sdk.XunitException($"socket closed with {ws.CloseStatus} {ws.CloseStatusDescription}");

    /// The close code of the very next frame, which must be the close. For a client of the guide's protocol
    /// (or a v2 client that has read what it expected): a snapshot leaked to a refused token, or an `error`,
    /// `auth_ok` or `ping` frame sent to a client that never asked for balance.v2, fails here.
    public async Task<int> ReceiveCloseAsync(TimeSpan? timeout = null)
    {
        if (await ReceiveAsync(timeout) is { } message)
            throw new Xunit.Sdk.XunitException($"expected the close, got the frame {message}");
        return (int)ws.CloseStatus!.Value;
    }

    /// Asserts that nothing arrives within the window.
    public async Task AssertSilentAsync(TimeSpan window)
    {
        using var cts = new CancellationTokenSource(window);
        try
        {
            var result = await ws.ReceiveAsync(new byte[4096], cts.Token);
            throw new Xunit.Sdk.XunitException($"expected silence, got a {result.MessageType} frame");
        }
        catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        if (ws.State == WebSocketState.Open)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try { await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token); } catch (Exception) { }
        }
        ws.Dispose();
    }
}

// One test's database: a fresh directory for a SQLite file, removed (after SQLite lets go of it) at the end of the
// test; or a fresh database on the test process's PostgreSQL, which goes with that server at the end of the run.
public sealed class TempDatabase(Store store = Store.Sqlite) : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "balance-tests", Guid.NewGuid().ToString("N"));
    private readonly string? _postgres = store == Store.Postgres ? PostgresServer.SharedAsync().GetAwaiter().GetResult().CreateDatabaseAsync().GetAwaiter().GetResult() : null;
    public string FilePath => Path.Combine(_directory, "balance.db");
    /// What BalanceApplication takes as its database: the file, or the connection string.
    public string Location => _postgres ?? FilePath;

    public void Dispose()
    {
        if (_postgres is not null) return;
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
    }
}
