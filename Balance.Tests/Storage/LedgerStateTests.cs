using Balance.Storage.Sqlite;

namespace Balance.Tests;

// The writer's in-memory state, without a database.
[Trait("Category", "Unit")]
public sealed class LedgerStateTests
{
    private static readonly DateTime T0 = new(2026, 12, 3, 12, 0, 0, DateTimeKind.Utc);

    [Fact]
    public void KeysOlderThanTheWindowAreSweptAndNewerOnesKept()
    {
        var state = new LedgerState();
        var window = TimeSpan.FromSeconds(16); // marks every second
        for (long seq = 1; seq <= 10; seq++) state.AddKey(seq * 7, seq);
        state.LastSeq = 10;
        state.Mark(T0, window);
        for (long seq = 11; seq <= 20; seq++) state.AddKey(seq * 7, seq);
        state.LastSeq = 20;
        state.Mark(T0.AddSeconds(1), window);
        Assert.Equal(20, state.KeyCount);
        state.Mark(T0.AddSeconds(15.5), window); // nothing is older than the window yet
        Assert.Equal(20, state.KeyCount);
        state.Mark(T0.AddSeconds(16.5), window); // rows 1-10 were created before T0, now more than 16 s ago
        Assert.Equal(10, state.KeyCount);
        var found = new List<long>();
        state.Candidates(11 * 7, found);
        Assert.Equal([11L], found);
        state.Mark(T0.AddSeconds(17.5), window); // rows 11-20 were created before T0 + 1 s
        Assert.Equal(0, state.KeyCount);
    }

    [Fact]
    public void AHashSharedByRowsNamesEachOfThem()
    {
        var state = new LedgerState();
        state.AddKey(42, 1);
        state.AddKey(42, 5); // the same key of another poster, or a true collision
        state.AddKey(43, 6);
        var found = new List<long>();
        state.Candidates(42, found);
        Assert.Equal([1L, 5L], found);
        found.Clear();
        state.Candidates(44, found);
        Assert.Empty(found);
    }

    [Fact]
    public void TheKeyHashIsKeyedByTheDatabaseSeed()
    {
        byte[] a = Enumerable.Repeat((byte)1, 32).ToArray(), b = Enumerable.Repeat((byte)2, 32).ToArray();
        Assert.Equal(LedgerState.KeyHash(a, "key-1"), LedgerState.KeyHash(a, "key-1"));
        Assert.NotEqual(LedgerState.KeyHash(a, "key-1"), LedgerState.KeyHash(a, "key-2"));
        Assert.NotEqual(LedgerState.KeyHash(a, "key-1"), LedgerState.KeyHash(b, "key-1"));
        Assert.Equal(LedgerState.KeyHash(a, new string('é', 300)), LedgerState.KeyHash(a, new string('é', 300))); // past the stack buffer
    }

    [Fact]
    public void TheWritersReusedHmacGivesEveryKeyTheHashStoredSinceSchemaThree()
    {
        // Stored hashes were made with the one-shot HMAC (schema 3's upgrade, older writers): the writer's reused
        // context must give the same 64 bits, key after key, or a stored key would no longer be found.
        byte[] seed = Enumerable.Range(0, 32).Select(i => (byte)(i * 7)).ToArray();
        using var hmac = System.Security.Cryptography.IncrementalHash.CreateHMAC(System.Security.Cryptography.HashAlgorithmName.SHA256, seed);
        foreach (string key in new[] { "k", "order-42", new string('x', 40), new string('é', 300), "ключ-🔑", "" })
        {
            var oneShot = System.Security.Cryptography.HMACSHA256.HashData(seed, System.Text.Encoding.UTF8.GetBytes(key));
            Assert.Equal(BitConverter.ToInt64(oneShot), LedgerState.KeyHash(hmac, key));
            Assert.Equal(BitConverter.ToInt64(oneShot), LedgerState.KeyHash(seed, key));
        }
    }

    [Fact]
    public void AWalletReplacesItsCurrencyKeepsTheOthersSortedAndMovesTheHead()
    {
        var state = new LedgerState();
        var user = Guid.NewGuid();
        state.Apply(new Balance.Postings.BalanceChange(user, "USD", 100, 1, "t1", "deposit", "x"), 3);
        state.Apply(new Balance.Postings.BalanceChange(user, "EUR", 50, 1, "t2", "deposit", "x"), 4);
        state.Apply(new Balance.Postings.BalanceChange(user, "USD", 80, 2, "t3", "bet", "x"), 9);
        Assert.Equal(["EUR", "USD"], state.Users[user].Wallets.Select(w => w.Currency));
        Assert.Equal((80L, 2L), (state.Wallet(user, "USD")!.Balance, state.Wallet(user, "USD")!.Version));
        Assert.Equal(9, state.HeadOf(user));
        Assert.Null(state.Wallet(user, "BTC"));
        Assert.Equal(0, state.HeadOf(Guid.NewGuid()));
    }
}
