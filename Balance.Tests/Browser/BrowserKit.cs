using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// The browser tests run one at a time, after the rest of the suite: a browser per test on 2 cores would
// starve the socket tests' timing (auth deadlines, token expiry) and make both flaky.
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BrowserCollection : ICollectionFixture<ChromiumFixture>
{
    public const string Name = "Browser";
}

// One headless Debian Chromium for all browser tests: launching costs more than a test's page does.
public sealed class ChromiumFixture : IAsyncLifetime
{
    public static readonly string ExecutablePath = Environment.GetEnvironmentVariable("BALANCE_CHROMIUM") ?? "/usr/bin/chromium";

    private IPlaywright? _playwright;
    public IBrowser Browser { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic",
                // Test pages are fulfilled by Playwright, so Chromium cannot tell they came from loopback and its
                // Local Network Access checks would refuse their sockets to 127.0.0.1; served pages are not affected.
                "--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebSockets"],
        });
    }

    public async Task DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright?.Dispose();
    }
}

public static class BrowserKit
{
    // The browser tests' service: a short server heartbeat, so the client's pong path and watchdog run within a test;
    // with a token lifetime, no clock skew either, so a token really ends when it says.
    public static Dictionary<string, string?> Settings(string? tokenLifetime = null)
    {
        var settings = new Dictionary<string, string?> { ["Balance:Socket:HeartbeatInterval"] = "00:00:01" };
        if (tokenLifetime is not null)
        {
            settings["Auth:AccessTokenLifetime"] = tokenLifetime;
            settings["Auth:ClockSkew"] = "00:00:00";
        }
        return settings;
    }

    public const float Timeout = 10_000;

    // Balance.Tests/browser: the test pages, the guide's class and the npm packages (React, Vue) they load.
    public static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "browser", "package.json");
            if (File.Exists(candidate)) return Path.GetDirectoryName(candidate)!;
            candidate = Path.Combine(dir.FullName, "Balance.Tests", "browser", "package.json");
            if (File.Exists(candidate)) return Path.GetDirectoryName(candidate)!;
        }
        throw new InvalidOperationException("Balance.Tests/browser not found above " + AppContext.BaseDirectory);
    }

    // A page on the service's origin; /__test/** is answered from Balance.Tests/browser by the browser itself,
    // so the service carries no test routes.
    public static async Task<IPage> OpenPageAsync(IBrowser browser, Uri origin, ITestOutputHelper output, string? path = null)
    {
        var context = await OpenContextAsync(browser, origin);
        return await NewPageAsync(context, output, path);
    }

    // One browser context is one browser profile: its pages are the tabs of one user, sharing locks, channels and storage.
    public static async Task<IBrowserContext> OpenContextAsync(IBrowser browser, Uri origin)
    {
        var context = await browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = origin.ToString() });
        context.SetDefaultTimeout(Timeout);
        await context.RouteAsync("**/__test/**", async route =>
        {
            string relative = Uri.UnescapeDataString(new Uri(route.Request.Url).AbsolutePath["/__test/".Length..]);
            string file = Path.GetFullPath(Path.Combine(Root, relative));
            if (!file.StartsWith(Root, StringComparison.Ordinal) || !File.Exists(file))
            {
                await route.FulfillAsync(new RouteFulfillOptions { Status = 404, Body = "not found" });
                return;
            }
            await route.FulfillAsync(new RouteFulfillOptions { Status = 200, ContentType = ContentType(file), BodyBytes = await File.ReadAllBytesAsync(file) });
        });
        return context;
    }

    public static async Task<IPage> NewPageAsync(IBrowserContext context, ITestOutputHelper output, string? path = null, string? name = null)
    {
        var page = await context.NewPageAsync();
        string prefix = name is null ? "" : $"[{name}] ";
        page.Console += (_, message) => Log(output, $"{prefix}[console.{message.Type}] {message.Text}");
        page.PageError += (_, error) => Log(output, $"{prefix}[pageerror] {error}");
        if (path is not null) await page.GotoAsync(path);
        return page;
    }

    private static void Log(ITestOutputHelper output, string line)
    {
        try { output.WriteLine(line); } catch (InvalidOperationException) { /* the test already finished */ }
    }

    private static string ContentType(string file) => Path.GetExtension(file) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" or ".mjs" => "text/javascript; charset=utf-8",
        ".json" => "application/json",
        ".css" => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    };

    public static async Task WaitForAsync(this IPage page, string expression, object? arg = null, float timeout = Timeout) =>
        await page.WaitForFunctionAsync(expression, arg, new PageWaitForFunctionOptions { Timeout = timeout, PollingInterval = 50 });

    private static readonly System.Text.Json.JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower };

    // Through JSON text, so page data maps onto ordinary C# records.
    public static async Task<T> EvaluateJsonAsync<T>(this IPage page, string expression) =>
        System.Text.Json.JsonSerializer.Deserialize<T>(await page.EvaluateAsync<string>($"() => JSON.stringify(({expression})())"), SnakeCase)!;

    // A free port below the kernel's ephemeral range (32768+): while the service is down between two
    // instances, no outgoing connection (another test, the browser) can be handed this port as its own.
    public static int FreePort()
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int port = Random.Shared.Next(20000, 32000);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException) { }
        }
        throw new InvalidOperationException("no free port in 20000-32000");
    }

    public static string SocketBase(Uri origin) => new UriBuilder(origin) { Scheme = "ws", Path = "" }.Uri.ToString().TrimEnd('/');

    // What the server counts (its hub's open sockets, the figure balance.sockets.open exports), once it settles on the
    // expected value. Read from this service itself: /metrics in a test process may show another host's figure under
    // the same meter name.
    public static async Task<double> ServerSocketsAsync(BalanceApplication app, double expected)
    {
        var hub = app.Services.GetRequiredService<BalanceSocket>();
        double open = double.NaN;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            open = Volatile.Read(ref hub.Stats.Open);
            if (open == expected) return open;
            await Task.Delay(100);
        } while (DateTime.UtcNow < deadline);
        return open;
    }
}
