using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Balance.Tests;

// Readiness on real SQLite files: /readyz says Healthy only when the database would take a write, so a balancer never
// sends postings that would all get 503: not while another connection holds the write lock, nor while the file system
// holding it is read-only (here: a read-only bind mount over its directory, how the mount table shows a file system
// remounted read-only after errors; needs root, as the tmpfs test does), nor while the disk is full
// (DurabilityTests.AFullDiskAnswers503UnavailableWritesNothingAndRecoversWhenSpaceReturns, on a real tmpfs).
// And the database, its WAL and shared-memory files and the Development key are readable by their owner alone.
public sealed class ReadinessTests
{
    [Fact]
    public async Task NotReadyWhileAnotherConnectionHoldsTheWriteLockAndReadyOnceItIsFreed()
    {
        await using var app = new BalanceApplication();
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        using var http = app.Http();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);

        await using (var locker = new SqliteConnection($"Data Source={app.DatabasePath};Pooling=False"))
        {
            await locker.OpenAsync();
            using (var begin = locker.CreateCommand()) { begin.CommandText = "BEGIN IMMEDIATE"; await begin.ExecuteNonQueryAsync(); }
            // Without a posting: the writer's last commit is evidence for 5 s, then the check takes the lock itself.
            await AssertBecomesAsync(http, HttpStatusCode.ServiceUnavailable, "Unhealthy");
            var refused = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode); // what readiness now agrees with
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode); // alive, only not ready
            using (var rollback = locker.CreateCommand()) { rollback.CommandText = "ROLLBACK"; await rollback.ExecuteNonQueryAsync(); }
        }
        await AssertBecomesAsync(http, HttpStatusCode.OK, "Healthy");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
    }

    [Fact]
    public async Task NotReadyWhileTheDatabaseIsReadOnlyAndReadyOnceItIsWritableAgain()
    {
        using var temp = new TempDatabase();
        string directory = Path.GetDirectoryName(temp.FilePath)!;
        await using var app = new BalanceApplication(databasePath: temp.FilePath);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
        using var http = app.Http();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);

        DurabilityTests.Run("mount", $"--bind {directory} {directory}");
        try
        {
            DurabilityTests.Run("mount", $"-o remount,ro,bind {directory}");
            Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(directory, "probe"), "x")); // read-only indeed (even for root)
            await AssertBecomesAsync(http, HttpStatusCode.ServiceUnavailable, "Unhealthy");
        }
        finally
        {
            // Lazily: connections the service opened meanwhile hold the read-only view until they close, and are let go of.
            DurabilityTests.Run("umount", $"-l {directory}");
            SqliteConnection.ClearAllPools();
        }
        await AssertBecomesAsync(http, HttpStatusCode.OK, "Healthy");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // Unix file modes
    public async Task TheDatabaseItsWalAndShmAndTheDevelopmentKeyAreReadableByTheirOwnerAlone()
    {
        using var temp = new TempDatabase();
        await using var app = new BalanceApplication(databasePath: temp.FilePath);
        var op = await app.LoginAsync("operator"); // Development: the signing key file is made at start
        var alice = await app.LoginAsync("alice");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "1.00", currency = "USD" });
        using (var mine = app.Http(alice.AccessToken))
            Assert.Equal("101.00", (await mine.GetFromJsonAsync<JsonElement>("/api/balance")).GetProperty("balance").GetString());
        foreach (string path in new[] { temp.FilePath, temp.FilePath + "-wal", temp.FilePath + "-shm", temp.FilePath + ".key" })
        {
            Assert.True(File.Exists(path), $"{path} missing");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
    }

    // Readiness follows the database within seconds (the writer's evidence lasts 5 s; the lock wait is 1 s).
    private static async Task AssertBecomesAsync(HttpClient http, HttpStatusCode status, string body)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var response = await http.GetAsync("/readyz");
            string text = await response.Content.ReadAsStringAsync();
            if (response.StatusCode == status && text == body) return;
            Assert.True(DateTime.UtcNow < deadline, $"/readyz still answers {(int)response.StatusCode} {text}, not {(int)status} {body}");
            await Task.Delay(250);
        }
    }
}
