using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Balance.Postings;
using Balance.Storage;
using Balance.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Balance.Bench;

// The ledger probe: the service's own writer (Ledger, its rules and group commit) on today's SQLite store, driven
// in-process with no HTTP, side by side with the store it replaced (ReferenceLedgerStore on schema 1), each run in
// a process of its own on a copy of the same pre-filled database.
//   Balance.Bench ledger-probe [--rows 1000000] [--players 10000] [--batch 64] [--postings 300000] [--reps 3]
//                              [--variants reference,log] [--work DIR] [--startup-only]
// Workload: a posting each for a random one of --players players; 3 % replays of an earlier posting (same key,
// same body), 2 % rollbacks of an earlier bet, the rest bets, wins and deposits; random 20-40 character keys;
// synchronous=FULL, WAL, the service's checkpointer; --batch postings per commit (4 × batch in flight).
// Each run prints postings/s, bytes the process wrote to disk per posting (/proc/self/io write_bytes, WAL and
// checkpoints, with a final full checkpoint), CPU µs per posting, and checks the ledger afterwards (versions
// gapless, each wallet's newest balance_after equal to the sum of its postings, history chains).
public static class LedgerProbe
{
    private sealed record Result(string Variant, int Rep, long Postings, double Seconds, double PerSecond, double BytesPerPosting,
        double CpuMicrosPerPosting, double WriterCpuMicrosPerPosting, long Committed, long Replayed, long Refused, double UpgradeSeconds, double StartupSeconds,
        double StartupManagedMb, double StartupRssMb, long Rows, string Check);

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Args(args);
        int rows = int.Parse(o.GetValueOrDefault("rows", "1000000"), CultureInfo.InvariantCulture);
        int players = int.Parse(o.GetValueOrDefault("players", "10000"), CultureInfo.InvariantCulture);
        int batch = int.Parse(o.GetValueOrDefault("batch", "64"), CultureInfo.InvariantCulture);
        // 300,000: a log run of 64,000 lasted ~2 s, where one checkpoint or a step of tiered JIT moved it by a quarter.
        int postings = int.Parse(o.GetValueOrDefault("postings", "300000"), CultureInfo.InvariantCulture);
        int reps = int.Parse(o.GetValueOrDefault("reps", "3"), CultureInfo.InvariantCulture);
        string work = Path.GetFullPath(o.GetValueOrDefault("work", "bench/results/ledger-probe"));
        var variants = o.GetValueOrDefault("variants", "reference,log").Split(',');
        bool startupOnly = o.ContainsKey("startup-only");
        Directory.CreateDirectory(work);
        string template = Path.Combine(work, $"template-{rows}-{players}.db");
        if (!File.Exists(template)) Prefill(template, rows, players);
        // The log's runs start from the same file upgraded in place once (SqliteDatabase.InitializeAsync), timed here.
        string upgraded = Path.Combine(work, $"template-{rows}-{players}-log.db");
        if (variants.Contains("log") && !File.Exists(upgraded)) await Upgrade(template, upgraded);
        Console.WriteLine($"ledger probe: {rows:N0} rows pre-filled, {players:N0} players, batch {batch}, {postings:N0} postings a run, {reps} reps, " +
            $"{Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Split(' ')[0]} at start");
        var results = new List<Result>();
        for (int rep = 1; rep <= reps; rep++)
            foreach (string variant in variants)
            {
                string db = Path.Combine(work, $"run-{variant}.db");
                foreach (var f in new[] { db, db + "-wal", db + "-shm" }) File.Delete(f);
                File.Copy(variant == "log" ? upgraded : template, db);
                // On disk before the run: else the kernel writes the ~0.8 GB copy back during the run, and the run's
                // fsyncs wait behind the benchmark's own copy.
                using (var copy = new FileStream(db, FileMode.Open, FileAccess.ReadWrite)) copy.Flush(flushToDisk: true);
                var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true };
                foreach (string a in new[] { "ledger-probe-run", variant, db, players.ToString(CultureInfo.InvariantCulture), batch.ToString(CultureInfo.InvariantCulture),
                             postings.ToString(CultureInfo.InvariantCulture), rep.ToString(CultureInfo.InvariantCulture), startupOnly ? "startup-only" : "full" })
                    psi.ArgumentList.Add(a);
                using var child = Process.Start(psi)!;
                string output = await child.StandardOutput.ReadToEndAsync();
                await child.WaitForExitAsync();
                var line = output.Split('\n').LastOrDefault(l => l.StartsWith('{'));
                if (child.ExitCode != 0 || line is null) { Console.WriteLine($"run {variant} #{rep} failed (exit {child.ExitCode}):\n{output}"); return 1; }
                var r = JsonSerializer.Deserialize<Result>(line)!;
                results.Add(r);
                Console.WriteLine($"  {r.Variant,-9} #{r.Rep}: {r.PerSecond,9:N0} postings/s  {r.BytesPerPosting / 1024,6:F2} KiB written/posting  {r.CpuMicrosPerPosting,5:F0} CPU µs/posting ({r.WriterCpuMicrosPerPosting:F0} the writer thread's)  " +
                    $"committed {r.Committed:N0} replayed {r.Replayed:N0} refused {r.Refused:N0}  upgrade {r.UpgradeSeconds:F1} s  start-up {r.StartupSeconds:F2} s " +
                    $"(+{r.StartupManagedMb:F0} MB managed, +{r.StartupRssMb:F0} MB RSS)  rows {r.Rows:N0}  check {r.Check}");
                foreach (var f in new[] { db, db + "-wal", db + "-shm" }) File.Delete(f);
            }
        if (startupOnly) return 0;
        Console.WriteLine($"\n{"variant",-10}{"postings/s median (min-max)",32}{"KiB/posting median (min-max)",32}{"CPU µs/posting",16}{"writer thread's",17}{"× reference",14}");
        double refMedian = Median(results.Where(r => r.Variant == "reference").Select(r => r.PerSecond));
        foreach (var g in results.GroupBy(r => r.Variant))
        {
            var rate = g.Select(r => r.PerSecond).ToList();
            var kib = g.Select(r => r.BytesPerPosting / 1024).ToList();
            double ratio = double.IsNaN(refMedian) ? double.NaN : Median(rate) / refMedian;
            Console.WriteLine($"{g.Key,-10}{$"{Median(rate):N0} ({rate.Min():N0}-{rate.Max():N0})",32}{$"{Median(kib):F2} ({kib.Min():F2}-{kib.Max():F2})",32}" +
                $"{Median(g.Select(r => r.CpuMicrosPerPosting)),16:F0}{Median(g.Select(r => r.WriterCpuMicrosPerPosting)),17:F0}{ratio,14:F2}");
        }
        Console.WriteLine($"load {File.ReadAllText("/proc/loadavg").Split(' ')[0]} at end");
        return results.All(r => r.Check == "ok") ? 0 : 1;
    }

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToList();
        return v.Count == 0 ? double.NaN : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    private static Dictionary<string, string> Args(string[] args)
    {
        var o = new Dictionary<string, string>();
        for (int i = 1; i < args.Length; i++)
            if (args[i].StartsWith("--"))
                o[args[i][2..]] = i + 1 < args.Length && !args[i + 1].StartsWith("--") ? args[++i] : "true";
        return o;
    }

    // ---- the pre-filled database: schema 1 (the reference's), users, and `rows` ledger rows round-robin over players ----

    private static void Prefill(string path, int rows, int players)
    {
        var sw = Stopwatch.StartNew();
        string tmp = path + ".tmp";
        foreach (var f in new[] { tmp, tmp + "-wal", tmp + "-shm" }) File.Delete(f);
        using (var c = new SqliteConnection($"Data Source={tmp};Pooling=False"))
        {
            c.Open();
            using (var schema = typeof(LedgerProbe).Assembly.GetManifestResourceStream("balance.db.sql")!)
                Exec(c, new StreamReader(schema).ReadToEnd());
            Exec(c, "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;");
            using var tx = c.BeginTransaction();
            Exec(c, $"INSERT INTO users VALUES ('{Operator}', 'operator', '-', 'operator', '2026-01-01T00:00:00.000Z')", tx);
            for (int i = 0; i < players; i++) Exec(c, $"INSERT INTO users VALUES ('{Player(i)}', 'p{i}', '-', 'player', '2026-01-01T00:00:00.000Z')", tx);
            using var insert = c.CreateCommand();
            insert.Transaction = tx;
            insert.CommandText = """
                INSERT INTO ledger (transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at)
                VALUES ($id, $user, 'deposit', 100000, 'USD', $balance, $version, $key, $hash, NULL, NULL, $op, $now)
                """;
            var p = new[] { "$id", "$user", "$balance", "$version", "$key", "$hash", "$op", "$now" }.Select(n => insert.Parameters.Add(new SqliteParameter(n, DBNull.Value))).ToArray();
            var random = new Random(1);
            string now = Timestamps.Format(DateTime.UtcNow);
            for (int i = 0; i < rows; i++)
            {
                int player = i % players;
                long version = i / players + 1;
                p[0].Value = Guid.CreateVersion7().ToString(); p[1].Value = Player(player); p[2].Value = version * 100000; p[3].Value = version;
                p[4].Value = Key(random); p[5].Value = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"; p[6].Value = Operator; p[7].Value = now;
                insert.ExecuteNonQuery();
            }
            Exec(c, """
                INSERT INTO wallets (user_id, currency, balance, version, updated_at, last_transaction_id)
                SELECT user_id, currency, balance_after, version, created_at, transaction_id FROM (SELECT *, MAX(seq) FROM ledger GROUP BY user_id, currency)
                """, tx);
            tx.Commit();
            Exec(c, "PRAGMA wal_checkpoint(TRUNCATE)");
        }
        SqliteConnection.ClearAllPools();
        File.Move(tmp, path);
        foreach (var f in new[] { tmp + "-wal", tmp + "-shm" }) File.Delete(f);
        Console.WriteLine($"pre-filled {path}: {rows:N0} rows in {sw.Elapsed.TotalSeconds:F0} s, {new FileInfo(path).Length / 1048576} MiB");
    }

    private static async Task Upgrade(string template, string upgraded)
    {
        string tmp = upgraded + ".tmp";
        foreach (var f in new[] { tmp, tmp + "-wal", tmp + "-shm" }) File.Delete(f);
        File.Copy(template, tmp);
        var db = new SqliteDatabase(Microsoft.Extensions.Options.Options.Create(new ConnectionStrings { Balance = $"Data Source={tmp}" }),
            Microsoft.Extensions.Options.Options.Create(new SqliteOptions()));
        var sw = Stopwatch.StartNew();
        await db.InitializeAsync();
        Console.WriteLine($"upgraded a copy in place to schema {SqliteDatabase.SchemaVersion} in {sw.Elapsed.TotalSeconds:F1} s (load {File.ReadAllText("/proc/loadavg").Split(' ')[0]})");
        await using (var c = await db.OpenAsync()) { using var cmd = c.CreateCommand(); cmd.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)"; cmd.ExecuteNonQuery(); }
        SqliteConnection.ClearAllPools();
        File.Move(tmp, upgraded);
        foreach (var f in new[] { tmp + "-wal", tmp + "-shm" }) File.Delete(f);
    }

    private const string Operator = "00000000-0000-7000-8000-000000000001";
    private static string Player(int i) => $"00000000-0000-7000-9000-{i + 1:D12}";

    private static string Key(Random random)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
        return string.Create(random.Next(20, 41), random, (span, r) => { for (int i = 0; i < span.Length; i++) span[i] = alphabet[r.Next(alphabet.Length)]; });
    }

    private static void Exec(SqliteConnection c, string sql, SqliteTransaction? tx = null)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        cmd.ExecuteNonQuery();
    }

    // ---- one run, in its own process ----

    public static async Task<int> RunOneAsync(string[] args)
    {
        string variant = args[1], path = args[2];
        int players = int.Parse(args[3], CultureInfo.InvariantCulture), batch = int.Parse(args[4], CultureInfo.InvariantCulture);
        int count = int.Parse(args[5], CultureInfo.InvariantCulture), rep = int.Parse(args[6], CultureInfo.InvariantCulture);
        bool startupOnly = args[7] == "startup-only";
        var sqliteOptions = Microsoft.Extensions.Options.Options.Create(new SqliteOptions());
        var db = new SqliteDatabase(Microsoft.Extensions.Options.Options.Create(new ConnectionStrings { Balance = $"Data Source={path}" }), sqliteOptions);
        double upgrade = 0, startup = 0, managedMb = 0, rssMb = 0;
        ILedgerStore store;
        if (variant == "reference")
        {
            await using (var c = await db.OpenAsync()) { using var cmd = c.CreateCommand(); cmd.CommandText = "PRAGMA journal_mode = WAL"; cmd.ExecuteNonQuery(); }
            store = new ReferenceLedgerStore(db);
        }
        else
        {
            var sw = Stopwatch.StartNew();
            await db.InitializeAsync(); // the upgrade from schema 1, in place
            upgrade = sw.Elapsed.TotalSeconds;
            SqliteConnection.ClearAllPools();
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long managed0 = GC.GetTotalMemory(true), rss0 = Environment.WorkingSet;
            var log = new SqliteLedgerStore(db, sqliteOptions, TimeProvider.System);
            sw.Restart();
            await log.WalletsAsync(Guid.Empty); // builds the writer's state from the ledger: the service's start
            startup = sw.Elapsed.TotalSeconds;
            managedMb = (GC.GetTotalMemory(true) - managed0) / 1048576.0;
            rssMb = (Environment.WorkingSet - rss0) / 1048576.0;
            store = log;
        }
        if (startupOnly)
        {
            Console.WriteLine(JsonSerializer.Serialize(new Result(variant, rep, 0, 0, 0, 0, 0, 0, 0, 0, 0, upgrade, startup, managedMb, rssMb, 0, "ok")));
            return 0;
        }
        // LEDGER_PROBE_NO_CHECKPOINTS=1 (a diagnosis, not the workload): no background checkpoints, so the WAL keeps
        // every frame of the run (up to the writer's own backstop at 16,000 pages) and its size is printed.
        bool noCheckpoints = Environment.GetEnvironmentVariable("LEDGER_PROBE_NO_CHECKPOINTS") == "1";
        var checkpointer = new Checkpointer(db, NullLogger<Checkpointer>.Instance);
        if (!noCheckpoints) await checkpointer.StartAsync(CancellationToken.None);
        var ledger = new Ledger(store, TimeProvider.System, Microsoft.Extensions.Options.Options.Create(new LedgerOptions { MaxBatch = batch }), NullLoggerFactory.Instance);
        await ledger.StartAsync(CancellationToken.None);
        _ = Task.Run(async () => { await foreach (var _ in ledger.Changes.ReadAllAsync()) { } }); // the socket hub's place

        var op = Guid.Parse(Operator);
        var ids = Enumerable.Range(0, players).Select(i => Guid.Parse(Player(i))).ToArray();
        var earlier = new Posting?[4096];
        var bets = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long committed = 0, replayed = 0, refused = 0, next = -1;
        // Warm-up, not counted: 10,000 postings, so the hot paths run as tiered JIT's final code (a method is
        // recompiled after 30 calls and a 100 ms delay, in the background) and the runs measure the steady state.
        await Drive(Math.Max(batch * 8, 10_000));
        long written0 = WriteBytes();
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        double writer0 = WriterCpuMicros();
        committed = replayed = refused = 0;
        var clock = Stopwatch.StartNew();
        await Drive(count);
        double seconds = clock.Elapsed.TotalSeconds;
        double writerCpu = WriterCpuMicros() - writer0; // before the thread ends with the ledger
        await ledger.CompleteAsync(CancellationToken.None);
        if (noCheckpoints) Console.Error.WriteLine($"WAL {new FileInfo(path + "-wal").Length / (double)count:F0} bytes per posting ({new FileInfo(path + "-wal").Length / 4120} frames) before the final checkpoint");
        else await checkpointer.StopAsync(CancellationToken.None);
        await using (var c = await db.OpenAsync()) { using var cmd = c.CreateCommand(); cmd.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)"; cmd.ExecuteNonQuery(); }
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMicroseconds;
        long written = WriteBytes() - written0;
        SqliteConnection.ClearAllPools();
        var (rowsAfter, check) = Check(path, variant);
        if (store is SqliteLedgerStore { Loads: > 1 } reloaded) check += $" (state built {reloaded.Loads} times)";
        Console.WriteLine(JsonSerializer.Serialize(new Result(variant, rep, count, seconds, count / seconds, (double)written / count, cpu / count, writerCpu / count,
            committed, replayed, refused, upgrade, startup, managedMb, rssMb, rowsAfter, check)));
        return 0;

        async Task Drive(int n)
        {
            long end = Interlocked.Read(ref next) + n;
            await Task.WhenAll(Enumerable.Range(0, batch * 4).Select(_ => Task.Run(async () =>
            {
                var random = new Random();
                long i;
                while ((i = Interlocked.Increment(ref next)) <= end)
                {
                    Posting posting;
                    int roll = random.Next(100);
                    if (roll < 3 && earlier[random.Next(earlier.Length)] is { } again) posting = again;                        // a replay
                    else if (roll < 5 && bets.TryDequeue(out string? bet)) posting = new Posting(null, TxTypes.Rollback, 0, null, null, bet, op, Key(random));
                    else
                    {
                        string type = roll < 50 ? TxTypes.Bet : roll < 95 ? TxTypes.Win : TxTypes.Deposit;
                        posting = new Posting(ids[random.Next(ids.Length)], type, random.Next(1, 500), "USD", null, null, op, Key(random));
                    }
                    var outcome = await ledger.PostAsync(posting);
                    switch (outcome)
                    {
                        case PostOutcome.Committed { Replayed: true }: Interlocked.Increment(ref replayed); break;
                        case PostOutcome.Committed { Result: var r }:
                            Interlocked.Increment(ref committed);
                            earlier[i % earlier.Length] = posting;
                            if (r.Type == TxTypes.Bet && bets.Count < 10_000) bets.Enqueue(r.TransactionId);
                            break;
                        default: Interlocked.Increment(ref refused); break;
                    }
                }
            })));
        }
    }

    // CPU time of the Ledger's writer thread alone (user + system, /proc/self/task/*/stat, in clock ticks of 10 ms): the
    // serial step, apart from the 256 driving tasks and the thread pool that share the process.
    private static double WriterCpuMicros()
    {
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
            if (File.ReadAllText(Path.Combine(task, "comm")).Trim() == "ledger writer")
            {
                string stat = File.ReadAllText(Path.Combine(task, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' '); // after "pid (comm) ": field 3 is fields[0]
                return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) * 10_000.0;
            }
        throw new InvalidOperationException("No thread named 'ledger writer' in this process.");
    }

    // Bytes this process sent (or will send) to the disk: write_bytes, less cancelled_write_bytes (dirty pages of a file
    // truncated before they were written back, as the WAL is by the final checkpoint).
    private static long WriteBytes()
    {
        var io = File.ReadAllLines("/proc/self/io").Select(l => l.Split(':')).ToDictionary(p => p[0], p => long.Parse(p[1].Trim(), CultureInfo.InvariantCulture));
        return io["write_bytes"] - io["cancelled_write_bytes"];
    }

    // Versions gapless and counted from 1, each wallet's newest balance the sum of its postings, every bet rolled back
    // at most once, and (the log) every history chain pointing at the player's previous row.
    private static (long Rows, string Check) Check(string path, string variant)
    {
        using var c = new SqliteConnection($"Data Source={path};Pooling=False");
        c.Open();
        long Scalar(string sql) { using var cmd = c.CreateCommand(); cmd.CommandText = sql; return Convert.ToInt64(cmd.ExecuteScalar()); }
        var problems = new List<string>();
        long gaps = Scalar("SELECT COUNT(*) FROM (SELECT COUNT(*) n, MIN(version) lo, MAX(version) hi, COUNT(DISTINCT version) d FROM ledger GROUP BY user_id, currency) WHERE lo != 1 OR hi != n OR d != n");
        if (gaps > 0) problems.Add($"{gaps} wallets with version gaps");
        long sums = Scalar("""
            SELECT COUNT(*) FROM (SELECT user_id, currency, SUM(CASE WHEN type IN ('deposit', 'win', 'rollback') THEN amount ELSE -amount END) s, MAX(seq) m
                                  FROM ledger GROUP BY user_id, currency) g JOIN ledger l ON l.seq = g.m WHERE l.balance_after != g.s
            """);
        if (sums > 0) problems.Add($"{sums} wallets whose balance is not the sum of their postings");
        long twice = Scalar("SELECT COUNT(*) FROM (SELECT reverses FROM ledger WHERE reverses IS NOT NULL GROUP BY reverses HAVING COUNT(*) > 1)");
        if (twice > 0) problems.Add($"{twice} bets rolled back twice");
        if (variant == "log")
        {
            long chains = Scalar("SELECT COUNT(*) FROM (SELECT user_prev, LAG(seq) OVER (PARTITION BY user_id ORDER BY seq) AS lag FROM ledger) WHERE user_prev IS NOT lag");
            if (chains > 0) problems.Add($"{chains} rows off their history chain");
            long keys = Scalar("SELECT (SELECT COUNT(*) FROM ledger) - (SELECT COALESCE(SUM(length(hashes) / 8), 0) FROM ledger_key_runs)");
            if (keys != 0) problems.Add($"{keys} rows without a key hash");
        }
        return (Scalar("SELECT COUNT(*) FROM ledger"), problems.Count == 0 ? "ok" : string.Join("; ", problems));
    }
}
