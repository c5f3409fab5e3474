using System.Diagnostics;
using Microsoft.Data.Sqlite;

namespace Balance.Bench;

// The ledger ceiling: the ledger's statements for one bet/win (idempotency lookup, role check, wallet read,
// wallet upsert, ledger insert) as prepared Microsoft.Data.Sqlite commands on the product's schema and
// pragmas (WAL, synchronous=FULL), committed one transaction per row and in batches. No HTTP, no JSON.
public static class SqliteCeiling
{
    public static double Run(string directory, int batch, TimeSpan duration)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $"ceiling-{batch}.db");
        foreach (var f in new[] { path, path + "-wal", path + "-shm" }) File.Delete(f);
        using var c = new SqliteConnection($"Data Source={path};Pooling=False");
        c.Open();
        using (var schema = typeof(SqliteCeiling).Assembly.GetManifestResourceStream("balance.db.sql")!)
            Exec(c, new StreamReader(schema).ReadToEnd());
        Exec(c, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;");

        const int players = 1000;
        var ids = Enumerable.Range(0, players).Select(_ => Guid.NewGuid().ToString()).ToArray();
        string op = Guid.NewGuid().ToString();
        using (var tx = c.BeginTransaction())
        {
            Exec(c, $"INSERT INTO users VALUES ('{op}', 'op', '-', 'operator', '2026-01-01T00:00:00.000Z')", tx);
            for (int i = 0; i < players; i++) Exec(c, $"INSERT INTO users VALUES ('{ids[i]}', 'p{i}', '-', 'player', '2026-01-01T00:00:00.000Z')", tx);
            tx.Commit();
        }

        var idem = Prepare(c, "SELECT seq FROM ledger WHERE idempotency_key = $key", "$key");
        var role = Prepare(c, "SELECT role FROM users WHERE id = $user", "$user");
        var wallet = Prepare(c, "SELECT balance, version FROM wallets WHERE user_id = $user AND currency = 'USD'", "$user");
        var upsert = Prepare(c, """
            INSERT INTO wallets (user_id, currency, balance, version, updated_at) VALUES ($user, 'USD', $after, $version, $now)
            ON CONFLICT (user_id, currency) DO UPDATE SET balance = excluded.balance, version = excluded.version, updated_at = excluded.updated_at
            """, "$user", "$after", "$version", "$now");
        var insert = Prepare(c, """
            INSERT INTO ledger (transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, request_hash, reference, reverses, posted_by, created_at)
            VALUES ($id, $user, 'win', 100, 'USD', $after, $version, $key, $hash, NULL, NULL, $op, $now)
            """, "$id", "$user", "$after", "$version", "$key", "$hash", "$op", "$now");

        long done = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < duration)
        {
            using var tx = c.BeginTransaction(); // BEGIN IMMEDIATE semantics are what the ledger uses; one writer here anyway
            foreach (var cmd in new[] { idem, role, wallet, upsert, insert }) cmd.Transaction = tx;
            for (int i = 0; i < batch; i++, done++)
            {
                string user = ids[done % players];
                string key = $"k{done}";
                idem.Parameters[0].Value = key;
                idem.ExecuteScalar();
                role.Parameters[0].Value = user;
                role.ExecuteScalar();
                wallet.Parameters[0].Value = user;
                long balance = 0, version = 0;
                using (var r = wallet.ExecuteReader()) if (r.Read()) { balance = r.GetInt64(0); version = r.GetInt64(1); }
                string now = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
                upsert.Parameters[0].Value = user; upsert.Parameters[1].Value = balance + 100; upsert.Parameters[2].Value = version + 1; upsert.Parameters[3].Value = now;
                upsert.ExecuteNonQuery();
                insert.Parameters[0].Value = Guid.CreateVersion7().ToString(); insert.Parameters[1].Value = user; insert.Parameters[2].Value = balance + 100;
                insert.Parameters[3].Value = version + 1; insert.Parameters[4].Value = key; insert.Parameters[5].Value = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
                insert.Parameters[6].Value = op; insert.Parameters[7].Value = now;
                insert.ExecuteNonQuery();
            }
            tx.Commit();
        }
        double rate = done / sw.Elapsed.TotalSeconds;
        c.Close();
        SqliteConnection.ClearAllPools();
        foreach (var f in new[] { path, path + "-wal", path + "-shm" }) File.Delete(f);
        return rate;
    }

    private static void Exec(SqliteConnection c, string sql, SqliteTransaction? tx = null)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        cmd.ExecuteNonQuery();
    }

    private static SqliteCommand Prepare(SqliteConnection c, string sql, params string[] names)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        foreach (var n in names) cmd.Parameters.Add(new SqliteParameter(n, DBNull.Value));
        return cmd;
    }
}
