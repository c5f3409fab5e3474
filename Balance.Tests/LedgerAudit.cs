using Microsoft.Data.Sqlite;

namespace Balance.Tests;

// The database, read directly (a SQLite file read-only, or the PostgreSQL database): what is durable, whatever the API says.
public sealed record LedgerRow(long Seq, string TransactionId, string UserId, string Type, long Amount, string Currency,
    long BalanceAfter, long Version, string IdempotencyKey, string? Reverses);

public sealed record WalletRow(string UserId, string Currency, long Balance, long Version);

public sealed class LedgerAudit
{
    public required List<LedgerRow> Rows { get; init; }
    public required List<WalletRow> Wallets { get; init; }
    public required string IntegrityCheck { get; init; }

    public static LedgerAudit Read(string databasePath)
    {
        bool postgres = databasePath.Contains("Host=", StringComparison.Ordinal); // BalanceApplication.DatabasePath
        using System.Data.Common.DbConnection c = postgres
            ? new Npgsql.NpgsqlConnection(databasePath)
            : new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = databasePath, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        c.Open();
        var rows = new List<LedgerRow>();
        using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT seq, transaction_id, user_id, type, amount, currency, balance_after, version, idempotency_key, reverses FROM ledger ORDER BY seq";
            using var r = cmd.ExecuteReader();
            while (r.Read())
                rows.Add(new LedgerRow(r.GetInt64(0), r.GetString(1), r.GetValue(2).ToString()!, r.GetString(3), r.GetInt64(4), r.GetString(5),
                    r.GetInt64(6), r.GetInt64(7), r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9)));
        }
        var wallets = new List<WalletRow>();
        using (var cmd = c.CreateCommand())
        {
            // PostgreSQL's batches make the wallets they lock at version 0 first; never posted to, they are not wallets yet.
            cmd.CommandText = "SELECT user_id, currency, balance, version FROM wallets WHERE version > 0";
            using var r = cmd.ExecuteReader();
            while (r.Read()) wallets.Add(new WalletRow(r.GetValue(0).ToString()!, r.GetString(1), r.GetInt64(2), r.GetInt64(3)));
        }
        string integrity = "ok"; // PostgreSQL has no integrity_check: its pages are checksummed by the server itself
        if (!postgres)
            using (var cmd = c.CreateCommand())
            {
                cmd.CommandText = "PRAGMA integrity_check";
                integrity = (string)cmd.ExecuteScalar()!;
            }
        return new LedgerAudit { Rows = rows, Wallets = wallets, IntegrityCheck = integrity };
    }

    public WalletRow? Wallet(string userId, string currency) => Wallets.SingleOrDefault(w => w.UserId == userId && w.Currency == currency);

    /// Every wallet equals its ledger: versions 1..N in commit order, each balance_after = the one before ± amount,
    /// never below zero; rollbacks undo exactly one bet, exactly its amount.
    public void AssertConsistent()
    {
        Assert.Equal("ok", IntegrityCheck);
        var byId = Rows.ToDictionary(r => r.TransactionId);
        var reversed = new HashSet<string>();
        foreach (var group in Rows.GroupBy(r => (r.UserId, r.Currency)))
        {
            long balance = 0, version = 0;
            foreach (var row in group.OrderBy(r => r.Seq))
            {
                version++;
                Assert.True(row.Version == version, $"{group.Key}: version {row.Version} where {version} was due (seq {row.Seq})");
                Assert.True(row.Amount > 0, $"non-positive amount {row}");
                balance += row.Type is "deposit" or "win" or "rollback" ? row.Amount : -row.Amount;
                Assert.True(balance >= 0, $"{group.Key} went negative at {row}");
                Assert.True(row.BalanceAfter == balance, $"{group.Key}: balance_after {row.BalanceAfter} but the entries sum to {balance} at {row}");
                if (row.Type == "rollback")
                {
                    Assert.NotNull(row.Reverses);
                    var bet = byId[row.Reverses!];
                    Assert.Equal("bet", bet.Type);
                    Assert.True(bet.Seq < row.Seq);
                    Assert.Equal((bet.UserId, bet.Currency, bet.Amount), (row.UserId, row.Currency, row.Amount));
                    Assert.True(reversed.Add(bet.TransactionId), $"bet {bet.TransactionId} rolled back twice");
                }
                else Assert.Null(row.Reverses);
            }
            var wallet = Wallet(group.Key.UserId, group.Key.Currency);
            Assert.True(wallet is not null, $"no wallet for {group.Key}");
            Assert.Equal(new WalletRow(group.Key.UserId, group.Key.Currency, balance, version), wallet);
        }
        foreach (var wallet in Wallets)
            Assert.True(Rows.Any(r => r.UserId == wallet.UserId && r.Currency == wallet.Currency), $"wallet without ledger entries {wallet}");
    }
}
