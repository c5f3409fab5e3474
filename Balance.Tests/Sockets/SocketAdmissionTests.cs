namespace Balance.Tests;

// The per-player socket cap (Balance:Socket:MaxSocketsPerPlayer) as SocketAdmission keeps it, without a socket: a
// player holds at most that many places, a closed socket gives its place back, and racing takers never exceed the cap.
[Trait("Category", "Unit")]
public sealed class SocketAdmissionTests
{
    private static SocketAdmission Admission(int max) => new(Microsoft.Extensions.Options.Options.Create(new SocketOptions { MaxSocketsPerPlayer = max }), new SocketStats());

    [Fact]
    public void APlayerHoldsAtMostTheCapAndAClosedSocketGivesItsPlaceBack()
    {
        using var admission = Admission(2);
        Guid alice = Guid.NewGuid(), bob = Guid.NewGuid();
        Assert.True(admission.TryTakePlace(alice));
        Assert.True(admission.TryTakePlace(alice));
        Assert.False(admission.TryTakePlace(alice));
        Assert.True(admission.TryTakePlace(bob)); // another player's places are their own
        admission.ReleasePlace(alice);
        Assert.True(admission.TryTakePlace(alice));
        Assert.False(admission.TryTakePlace(alice));
        admission.ReleasePlace(alice);
        admission.ReleasePlace(alice);
        admission.ReleasePlace(alice); // one release too many takes nothing below zero
        Assert.True(admission.TryTakePlace(alice));
        Assert.True(admission.TryTakePlace(alice));
        Assert.False(admission.TryTakePlace(alice));
    }

    [Fact]
    public void RacingTakersGetExactlyTheCap()
    {
        using var admission = Admission(10);
        var player = Guid.NewGuid();
        for (int round = 0; round < 50; round++)
        {
            int granted = 0;
            Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ => { if (admission.TryTakePlace(player)) Interlocked.Increment(ref granted); });
            Assert.Equal(10, granted);
            Parallel.For(0, 10, _ => admission.ReleasePlace(player));
        }
    }
}
