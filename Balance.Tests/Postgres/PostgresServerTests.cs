using Npgsql;
using Xunit.Abstractions;

namespace Balance.Tests;

// The fixture itself, on a real PostgreSQL: what the engine's tests will stand on.
public sealed class PostgresServerTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60); // generous: CI may share two cores

    [Fact]
    public async Task Databases_created_in_parallel_are_separate_and_owned_by_their_roles()
    {
        var server = await PostgresServer.SharedAsync().WaitAsync(Timeout);
        await ShowingLogOnFailure(server, async () =>
        {
            var databases = await Task.WhenAll(server.CreateDatabaseAsync(), server.CreateDatabaseAsync()).WaitAsync(Timeout);
            Assert.NotEqual(databases[0], databases[1]);
            await Task.WhenAll(databases.Select(async (connectionString, i) =>
            {
                var settings = new NpgsqlConnectionStringBuilder(connectionString);
                Assert.Equal("127.0.0.1", settings.Host);
                Assert.Equal(server.Port, settings.Port);
                await using var data = NpgsqlDataSource.Create(connectionString);
                // The same table in both: each database sees only its own row.
                await ExecuteAsync(data, "CREATE TABLE note (text text NOT NULL)");
                await ExecuteAsync(data, $"INSERT INTO note VALUES ('database {i}')");
                Assert.Equal($"database {i}", await ScalarAsync<string>(data, "SELECT string_agg(text, ',') FROM note"));
                Assert.True(await ScalarAsync<bool>(data,
                    "SELECT datdba::regrole::text = current_user FROM pg_database WHERE datname = current_database()"));
            })).WaitAsync(Timeout);
        });
    }

    [Fact]
    public async Task Restart_keeps_committed_data_and_takes_new_connections_on_the_same_port()
    {
        await using var server = await PostgresServer.StartNewAsync().WaitAsync(Timeout);
        await ShowingLogOnFailure(server, async () =>
        {
            await using var data = NpgsqlDataSource.Create(await server.CreateDatabaseAsync().WaitAsync(Timeout));
            await ExecuteAsync(data, "CREATE TABLE note (text text NOT NULL)");
            await ExecuteAsync(data, "INSERT INTO note VALUES ('committed')");
            var started = await ScalarAsync<DateTime>(data, "SELECT pg_postmaster_start_time()");

            await server.RestartAsync().WaitAsync(Timeout);

            data.Clear(); // its pooled connection was cut by the restart
            Assert.True(await ScalarAsync<DateTime>(data, "SELECT pg_postmaster_start_time()") > started);
            Assert.Equal("committed", await ScalarAsync<string>(data, "SELECT string_agg(text, ',') FROM note"));
            await ExecuteAsync(data, "INSERT INTO note VALUES ('after')");
            Assert.Equal(2L, await ScalarAsync<long>(data, "SELECT count(*) FROM note"));
        });
    }

    [Fact]
    public async Task TerminateBackends_ends_only_the_connections_with_that_application_name()
    {
        var server = await PostgresServer.SharedAsync().WaitAsync(Timeout);
        await ShowingLogOnFailure(server, async () =>
        {
            var connectionString = await server.CreateDatabaseAsync().WaitAsync(Timeout);
            var database = new NpgsqlConnectionStringBuilder(connectionString).Database!;
            await using var victim = await OpenAsync(connectionString, "victim");
            await using var bystander = await OpenAsync(connectionString, "bystander");

            Assert.Equal(1, await server.TerminateBackendsAsync(database, "victim").WaitAsync(Timeout));

            await Assert.ThrowsAnyAsync<NpgsqlException>(() => new NpgsqlCommand("SELECT 1", victim).ExecuteScalarAsync().WaitAsync(Timeout));
            Assert.Equal(1, await new NpgsqlCommand("SELECT 1", bystander).ExecuteScalarAsync().WaitAsync(Timeout));
            Assert.Equal(0, await server.TerminateBackendsAsync(database, "victim").WaitAsync(Timeout));
        });
    }

    [Fact]
    public async Task Stopped_server_refuses_connections_and_after_start_has_its_data()
    {
        await using var server = await PostgresServer.StartNewAsync().WaitAsync(Timeout);
        await ShowingLogOnFailure(server, async () =>
        {
            var connectionString = await server.CreateDatabaseAsync().WaitAsync(Timeout);
            await using var data = NpgsqlDataSource.Create(connectionString);
            await ExecuteAsync(data, "CREATE TABLE note (text text NOT NULL)");
            await ExecuteAsync(data, "INSERT INTO note VALUES ('committed')");

            await server.StopAsync().WaitAsync(Timeout);
            data.Clear();
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => OpenAsync(connectionString, "refused").WaitAsync(Timeout));

            await server.StartAsync().WaitAsync(Timeout);
            Assert.Equal("committed", await ScalarAsync<string>(data, "SELECT string_agg(text, ',') FROM note"));
            Assert.Contains("database system is ready to accept connections", server.LogTail());
        });
    }

    [Fact]
    public async Task Failed_start_reports_the_end_of_the_log()
    {
        await using var server = await PostgresServer.StartNewAsync().WaitAsync(Timeout);
        await server.StopAsync().WaitAsync(Timeout);
        await File.AppendAllTextAsync(Path.Combine(server.Directory, "data", "postgresql.conf"), "shared_buffers = 'plenty'\n");

        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => server.StartAsync().WaitAsync(Timeout));

        Assert.Contains("pg_ctl start failed", failure.Message);
        Assert.Contains(server.LogPath, failure.Message);
        Assert.Contains("invalid value for parameter \"shared_buffers\"", failure.Message);
    }

    [Fact]
    public async Task Deadlocks_counts_a_deadlock_in_that_database()
    {
        var server = await PostgresServer.SharedAsync().WaitAsync(Timeout);
        await ShowingLogOnFailure(server, async () =>
        {
            var connectionString = await server.CreateDatabaseAsync().WaitAsync(Timeout);
            var database = new NpgsqlConnectionStringBuilder(connectionString).Database!;
            Assert.Equal(0, await server.DeadlocksAsync(database).WaitAsync(Timeout));
            await using (var setup = NpgsqlDataSource.Create(connectionString))
                await ExecuteAsync(setup, "CREATE TABLE account (id int PRIMARY KEY, n int NOT NULL); INSERT INTO account VALUES (1, 0), (2, 0)");

            // Each locks one row, then wants the other's: PostgreSQL aborts one of them after deadlock_timeout (1 s).
            var first = await OpenAsync(connectionString, "first");
            var second = await OpenAsync(connectionString, "second");
            await using (first)
            await using (second)
            {
                await using var a = await first.BeginTransactionAsync();
                await using var b = await second.BeginTransactionAsync();
                await new NpgsqlCommand("UPDATE account SET n = 1 WHERE id = 1", first, a).ExecuteNonQueryAsync();
                await new NpgsqlCommand("UPDATE account SET n = 1 WHERE id = 2", second, b).ExecuteNonQueryAsync();
                var crossed = await Task.WhenAll(
                    SqlStateAsync(new NpgsqlCommand("UPDATE account SET n = 2 WHERE id = 2", first, a)),
                    SqlStateAsync(new NpgsqlCommand("UPDATE account SET n = 2 WHERE id = 1", second, b))).WaitAsync(Timeout);
                Assert.Equal(1, crossed.Count(state => state == PostgresErrorCodes.DeadlockDetected));
                Assert.Equal(1, crossed.Count(state => state is null));
            }

            // Closed (no pooling), the backends report their counts on the way out.
            var deadline = DateTime.UtcNow + Timeout;
            while (await server.DeadlocksAsync(database) == 0 && DateTime.UtcNow < deadline) await Task.Delay(100);
            Assert.Equal(1, await server.DeadlocksAsync(database));
        });
    }

    private async Task ShowingLogOnFailure(PostgresServer server, Func<Task> test)
    {
        try
        {
            await test();
        }
        catch
        {
            output.WriteLine($"--- end of {server.LogPath} ---\n{server.LogTail()}");
            throw;
        }
    }

    private static async Task<NpgsqlConnection> OpenAsync(string connectionString, string applicationName)
    {
        var connection = new NpgsqlConnection(
            new NpgsqlConnectionStringBuilder(connectionString) { ApplicationName = applicationName, Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task<string?> SqlStateAsync(NpgsqlCommand command)
    {
        try
        {
            await command.ExecuteNonQueryAsync();
            return null;
        }
        catch (PostgresException e)
        {
            return e.SqlState;
        }
    }

    private static async Task ExecuteAsync(NpgsqlDataSource data, string sql)
    {
        await using var command = data.CreateCommand(sql);
        await command.ExecuteNonQueryAsync().WaitAsync(Timeout);
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource data, string sql)
    {
        await using var command = data.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync().WaitAsync(Timeout))!;
    }
}
