using Balance.Storage;
using Microsoft.Extensions.Time.Testing;

namespace Balance.Tests;

// How an ended login leaves Sessions, without a server (Auth/Sessions.cs): ended here, it goes out once on EndedHere
// — what the socket hub reads to close its sockets — and rings the other nodes' feeds; learned from another node's
// feed, it is only marked (the feed hands it to the hub itself); known already, nothing goes out again.
[Trait("Category", "Unit")]
public sealed class EndedLoginsTests
{
    private sealed class CountingDoorbell : IDoorbell
    {
        public int Rings;
        public void Ring() => Rings++;
    }

    private readonly CountingDoorbell _doorbell = new();
    private readonly Sessions _sessions;

    // MarkRevoked and EndedHere never touch the database (only LoadAsync does).
    public EndedLoginsTests() => _sessions = new Sessions(null!, Microsoft.Extensions.Options.Options.Create(new AuthOptions()), new FakeTimeProvider(DateTimeOffset.UtcNow), [_doorbell]);

    private List<string> Drain()
    {
        var ended = new List<string>();
        while (_sessions.EndedHere.TryRead(out var id)) ended.Add(id);
        return ended;
    }

    [Fact]
    public void ALoginEndedHereGoesOutOnceAndRingsTheOtherNodes()
    {
        Assert.True(_sessions.MarkRevoked("s1"));
        Assert.True(_sessions.IsRevoked("s1"));
        Assert.False(_sessions.MarkRevoked("s1")); // a second logout of the same login
        Assert.Equal(["s1"], Drain());
        Assert.Equal(1, _doorbell.Rings);
    }

    [Fact]
    public void ALoginEndedElsewhereIsMarkedButNotSentOutAgain()
    {
        Assert.True(_sessions.MarkRevoked("s2", here: false));
        Assert.True(_sessions.IsRevoked("s2"));
        Assert.False(_sessions.MarkRevoked("s2")); // ended here too, after the feed brought it: already closed
        Assert.Empty(Drain());
        Assert.Equal(0, _doorbell.Rings);
    }

    [Fact]
    public void WithoutADoorbellALoginEndedHereStillGoesOut()
    {
        var sessions = new Sessions(null!, Microsoft.Extensions.Options.Options.Create(new AuthOptions()), TimeProvider.System, []); // SQLite: no other nodes
        Assert.True(sessions.MarkRevoked("s3"));
        Assert.True(sessions.EndedHere.TryRead(out var id));
        Assert.Equal("s3", id);
    }
}
