using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Npgsql;

namespace Balance.Tests;

/// A real PostgreSQL cluster of the tests' own, in a temp directory, on a loopback port; never the system's.
/// SharedAsync() is the test process's one server, started on first use and stopped when the process exits. A test
/// that stops or restarts a server cuts every connection to it, so it takes a server of its own from StartNewAsync()
/// instead of disturbing the tests that run beside it on the shared one.
public sealed class PostgresServer : IAsyncDisposable
{
    private static readonly Lazy<Task<PostgresServer>> Shared = new(StartNewAsync);
    // Short: the socket's path, /tmp/balance-pg-<pid>-XXXXXX/.s.PGSQL.<port>, must fit the kernel's 107 bytes.
    // The pid in the name tells a later run which directories a dead run left behind.
    private const string DirectoryPrefix = "/tmp/balance-pg-";
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(2);

    // initdb and pg_ctl refuse to run as root; as root the cluster belongs to the postgres user.
    private static readonly bool AsRoot = Environment.IsPrivilegedProcess;

    private readonly string _bin;
    private readonly NpgsqlDataSource _admin;
    private readonly EventHandler _onProcessExit;
    private int _databases;

    /// The directory holding the cluster (data/), its log and its unix socket.
    public string Directory { get; }
    public int Port { get; }
    /// The superuser postgres, over TCP with a password, on the database postgres.
    public string AdminConnectionString { get; }
    public string LogPath => Path.Combine(Directory, "postgres.log");
    private string DataDirectory => Path.Combine(Directory, "data");

    private PostgresServer(string bin, string directory, int port, string password)
    {
        _bin = bin;
        Directory = directory;
        Port = port;
        AdminConnectionString = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1", Port = port, Database = "postgres", Username = "postgres", Password = password,
            ApplicationName = "balance-tests-admin",
        }.ConnectionString;
        _admin = NpgsqlDataSource.Create(AdminConnectionString);
        _onProcessExit = (_, _) => RemoveAsync().GetAwaiter().GetResult();
    }

    /// The test process's server; never stop, restart or dispose it.
    public static Task<PostgresServer> SharedAsync() => Shared.Value;

    /// A server for one test alone, removed by DisposeAsync (or when the test process ends).
    public static async Task<PostgresServer> StartNewAsync()
    {
        var bin = FindBinaries();
        await RemoveDeadRunsAsync(bin);
        var directory = (await RunAsync("mktemp", "-d", $"{DirectoryPrefix}{Environment.ProcessId}-XXXXXX")).Trim();
        await StartWatchdogAsync(bin, directory);
        var password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        var server = new PostgresServer(bin, directory, FreePort(), password);
        AppDomain.CurrentDomain.ProcessExit += server._onProcessExit;
        try
        {
            await server.CreateClusterAsync(password);
            await server.StartAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// A new empty database owned by a new role of the same name, and that role's connection string.
    public async Task<string> CreateDatabaseAsync()
    {
        var name = $"test{Interlocked.Increment(ref _databases)}";
        var password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        await using (var role = _admin.CreateCommand($"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            await role.ExecuteNonQueryAsync();
        await using (var database = _admin.CreateCommand($"CREATE DATABASE {name} OWNER {name}"))
            await database.ExecuteNonQueryAsync();
        return new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1", Port = Port, Database = name, Username = name, Password = password,
        }.ConnectionString;
    }

    /// Stops (fast: open transactions roll back, connections are cut) and starts again on the same port and data.
    public Task RestartAsync() => PgCtlAsync("restart", "-l", LogPath, "-m", "fast");

    public Task StopAsync() => PgCtlAsync("stop", "-m", "fast");

    public Task StartAsync() => PgCtlAsync("start", "-l", LogPath);

    /// Ends the connections to the database that gave this Application Name; returns how many. Each one is gone
    /// when this returns (pg_terminate_backend waits for it, up to 10 s).
    public async Task<int> TerminateBackendsAsync(string database, string applicationName)
    {
        await using var command = _admin.CreateCommand(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity " +
            "WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()");
        command.Parameters.Add(new() { Value = database });
        command.Parameters.Add(new() { Value = applicationName });
        return (int)(long)(await command.ExecuteScalarAsync())!;
    }

    /// Deadlocks detected in the database so far. A backend reports its counts when it goes idle (at most once a
    /// second, otherwise up to 10 s later) and when it disconnects, so poll for an expected one.
    public async Task<long> DeadlocksAsync(string database)
    {
        await using var command = _admin.CreateCommand("SELECT deadlocks FROM pg_stat_database WHERE datname = $1");
        command.Parameters.Add(new() { Value = database });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// The end of the server's log, for a failing test to show.
    public string LogTail(int lines = 40)
    {
        try
        {
            using var stream = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var all = new StreamReader(stream).ReadToEnd().Split('\n');
            return string.Join('\n', all.TakeLast(lines + 1)).TrimEnd();
        }
        catch (IOException e)
        {
            return $"(no log: {e.Message})";
        }
    }

    public async ValueTask DisposeAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= _onProcessExit;
        await RemoveAsync();
    }

    private async Task CreateClusterAsync(string password)
    {
        // initdb reads the superuser's password from a file; the directory is the owner's alone (mktemp -d: 0700).
        var passwordFile = Path.Combine(Directory, "password");
        await File.WriteAllTextAsync(passwordFile, password);
        // --no-sync: only an OS crash could lose what initdb wrote, and that ends the test run anyway.
        await RunAsync(Path.Combine(_bin, "initdb"), "-D", DataDirectory, "-U", "postgres", $"--pwfile={passwordFile}",
            "-E", "UTF8", "--locale=C", "--auth-local=peer", "--auth-host=scram-sha-256", "--no-sync");
        File.Delete(passwordFile);
        // fsync stays on: the tests check durability. Many hosts, each with its pools, share one server.
        await File.AppendAllTextAsync(Path.Combine(DataDirectory, "postgresql.conf"), $"""

            port = {Port}
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '{Directory}'
            fsync = on
            max_connections = 300
            shared_buffers = 128MB
            log_line_prefix = '%m [%p] %q%u@%d/%a '

            """);
    }

    private async Task PgCtlAsync(string action, params string[] options)
    {
        try
        {
            await RunAsync(Path.Combine(_bin, "pg_ctl"), [action, "-D", DataDirectory, "-w", "-t", "60", .. options]);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            throw new InvalidOperationException(
                $"pg_ctl {action} failed for the PostgreSQL in {Directory} (port {Port}): {e.Message}\n" +
                $"--- end of {LogPath} ---\n{LogTail()}", e);
        }
        finally
        {
            // Pooled admin connections did not survive a stop; the next admin command needs fresh ones.
            if (action != "start") _admin.Clear();
        }
    }

    private async Task RemoveAsync()
    {
        await _admin.DisposeAsync();
        // Immediate: nothing in the cluster is worth a shutdown checkpoint. Fails harmlessly when not running.
        try { await RunAsync(Path.Combine(_bin, "pg_ctl"), "stop", "-D", DataDirectory, "-m", "immediate", "-w"); }
        catch (InvalidOperationException) { }
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    // The watchdog covers a test process that ends without its ProcessExit handlers: killed, crashed, or cut short
    // by the test runner, which kills a test host that is slow to exit. setsid -f orphans it at once in a session of
    // its own, so neither Ctrl-C nor a kill of the test process's tree reaches it. It waits for this process to end
    // (tail --pid, which polls once a second), then stops the server and removes the directory.
    private static async Task StartWatchdogAsync(string bin, string directory)
    {
        var script = $"""
            exec </dev/null >/dev/null 2>&1
            tail --pid={Environment.ProcessId} -f /dev/null
            '{Path.Combine(bin, "pg_ctl")}' stop -D '{directory}/data' -m immediate -w
            rm -rf '{directory}'
            """;
        await RunAsync("setsid", "-f", "bash", "-c", script);
    }

    // For what even the watchdog missed (it was killed too, or the machine went down): directories of runs whose
    // process is gone. A directory of another user's run fails to go, harmlessly.
    private static async Task RemoveDeadRunsAsync(string bin)
    {
        foreach (var directory in System.IO.Directory.GetDirectories("/tmp", "balance-pg-*-*"))
        {
            var pid = Path.GetFileName(directory).Split('-')[2];
            if (!int.TryParse(pid, out _) || System.IO.Directory.Exists($"/proc/{pid}")) continue;
            try { await RunAsync(Path.Combine(bin, "pg_ctl"), "stop", "-D", Path.Combine(directory, "data"), "-m", "immediate", "-w"); }
            catch (InvalidOperationException) { }
            try { System.IO.Directory.Delete(directory, recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    private static string FindBinaries()
    {
        // Debian installs each major version side by side; the newest is the one a fresh install would use.
        var newest = System.IO.Directory.Exists("/usr/lib/postgresql")
            ? System.IO.Directory.GetDirectories("/usr/lib/postgresql")
                .Where(version => File.Exists(Path.Combine(version, "bin", "initdb")))
                .MaxBy(version => int.TryParse(Path.GetFileName(version), out var major) ? major : 0)
            : null;
        return newest is null
            ? throw new InvalidOperationException("No PostgreSQL under /usr/lib/postgresql/*/bin; ./test.sh installs Debian's postgresql package.")
            : Path.Combine(newest, "bin");
    }

    // Below Linux's ephemeral range (32768 and up): no outgoing connection takes the port while the server is
    // stopped for a while, and it is the same after every restart.
    private static int FreePort()
    {
        for (var attempt = 0; ; attempt++)
        {
            var port = Random.Shared.Next(20000, 32768);
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return port;
            }
            catch (SocketException) when (attempt < 100) { }
        }
    }

    // As the cluster's owner: the postgres user when root, else this process's user.
    private static async Task<string> RunAsync(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(AsRoot ? "runuser" : file)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            // The postgres user may not be able to enter the test's working directory, and initdb wants to.
            WorkingDirectory = "/",
        };
        foreach (var argument in AsRoot ? ["-u", "postgres", "--", file, .. arguments] : arguments)
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        var command = $"{Path.GetFileName(file)} {string.Join(' ', arguments)}";
        using var timeout = new CancellationTokenSource(CommandTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{command} did not finish in {CommandTimeout.TotalSeconds} s");
        }
        var text = await output;
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{command} exited with {process.ExitCode}: {(text + await error).Trim()}");
        return text;
    }
}
