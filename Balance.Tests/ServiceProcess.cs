using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;

namespace Balance.Tests;

// The real service as its own process, so it can be SIGKILLed.
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    public Uri BaseAddress { get; }
    public Uri SocketUri => new UriBuilder(BaseAddress) { Scheme = "ws", Path = "/ws/balance/player" }.Uri;

    private ServiceProcess(Process process, Uri baseAddress) { _process = process; BaseAddress = baseAddress; }

    public int Port => BaseAddress.Port;

    /// The process's output so far (its warnings and errors), for a failing test to show.
    public string Output => string.Join("\n", _output);

    public bool HasExited => _process.HasExited;

    // port 0 picks a free one; a restart passes the port of the process before it, where its clients expect it.
    // The database is a SQLite file, or an Npgsql connection string (as LedgerAudit.Read and BalanceApplication.DatabasePath
    // take it), which runs the service with Balance:Store=Postgres.
    public static async Task<ServiceProcess> StartAsync(string databasePath, int port = 0, Dictionary<string, string>? settings = null)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "Balance.dll");
        Assert.True(File.Exists(dll), $"no {dll}");
        if (port == 0)
            using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; probe.Stop(); }
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = AppContext.BaseDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add($"http://127.0.0.1:{port}");
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        if (databasePath.Contains("Host=", StringComparison.Ordinal))
        {
            info.Environment["Balance__Store"] = "Postgres";
            info.Environment["ConnectionStrings__Balance"] = databasePath;
        }
        else info.Environment["ConnectionStrings__Balance"] = $"Data Source={databasePath}";
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (key, value) in settings ?? []) info.Environment[key.Replace(":", "__")] = value;
        var process = Process.Start(info)!;
        var service = new ServiceProcess(process, new Uri($"http://127.0.0.1:{port}"));
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) service._output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) service._output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = service.BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            if (process.HasExited) throw new Xunit.Sdk.XunitException($"service exited {process.ExitCode}:\n{string.Join("\n", service._output)}");
            try
            {
                if ((await http.GetAsync("/healthz")).IsSuccessStatusCode) break;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException) { }
            if (DateTime.UtcNow > deadline) { service.Kill(); throw new Xunit.Sdk.XunitException($"service did not start:\n{string.Join("\n", service._output)}"); }
            await Task.Delay(100);
        }
        // Ready once the Development accounts exist (a few tries: each failure counts against the login throttle).
        for (int attempt = 0; ; attempt++)
        {
            var login = await http.PostAsJsonAsync("/api/auth/login", new { username = "operator", password = "demo1234" });
            if (login.IsSuccessStatusCode) return service;
            if (attempt == 3) { service.Kill(); throw new Xunit.Sdk.XunitException($"no operator account:\n{string.Join("\n", service._output)}"); }
            await Task.Delay(1000);
        }
    }

    public HttpClient Http(string? token = null) => Api.Client(BaseAddress, token);

    public Task<Login> LoginAsync(string username, string password = "demo1234") => Api.LoginAsync(BaseAddress, username, password);

    /// A gauge of the service's /metrics (loopback may scrape), once it has a value.
    public async Task<double> GaugeAsync(string name)
    {
        using var http = Http();
        var deadline = DateTime.UtcNow + Patience.Long;
        while (true)
        {
            var match = System.Text.RegularExpressions.Regex.Match(await http.GetStringAsync("/metrics"), $@"(?m)^{name}(\{{[^}}]*\}})? (\S+)");
            if (match.Success) return double.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(DateTime.UtcNow < deadline, $"no {name} in /metrics");
            await Task.Delay(100);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    /// SIGTERM, as systemd or Kubernetes stop it, and waits for the process to end on its own.
    public async Task StopAsync()
    {
        Assert.Equal(0, kill(_process.Id, 15));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await _process.WaitForExitAsync(cts.Token);
        Assert.True(_process.ExitCode == 0, $"exit code {_process.ExitCode} after SIGTERM:\n{string.Join("\n", _output)}");
    }

    /// SIGSTOP: the process stops where it is, between any two instructions, and answers nothing more; a Kill after it
    /// is a crash at that point.
    public void Freeze() => Assert.Equal(0, kill(_process.Id, SIGSTOP));

    private const int SIGSTOP = 19; // Linux

    /// SIGKILL: no shutdown hooks, no flush, no drain.
    public void Kill()
    {
        if (_process.HasExited) return;
        kill(_process.Id, 9); // at once: Process.Kill(entireProcessTree) walks /proc first, and requests finish meanwhile
        _process.WaitForExit(30_000);
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
