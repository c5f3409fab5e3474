using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;

namespace Balance.Tests;

// A wait as a client is told it (Api/RetryAfter.cs, used by the auth routes' 429/503, the pipeline's 503 and the
// socket upgrade's 429): whole seconds, rounded up, never zero.
[Trait("Category", "Unit")]
public sealed class RetryAfterTests
{
    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(999, 1)]
    [InlineData(1000, 1)]
    [InlineData(1001, 2)]
    [InlineData(59_500, 60)]
    public void AWaitIsWholeSecondsRoundedUpAndAtLeastOne(int milliseconds, int seconds) =>
        Assert.Equal(seconds, RetryAfter.Seconds(TimeSpan.FromMilliseconds(milliseconds)));

    [Fact]
    public void TheHeaderSaysTheSecondsItReturns()
    {
        var http = new DefaultHttpContext();
        Assert.Equal(3, RetryAfter.Set(http.Response, TimeSpan.FromSeconds(2.2)));
        Assert.Equal("3", http.Response.Headers.RetryAfter.ToString());
    }

    // The one reading of a rate limiter's answer, for logins, refreshes and socket connects alike.
    [Fact]
    public void AGrantedLeaseWaitsNothingAndARefusedOneTheLimitersWait()
    {
        using var limiter = new FixedWindowRateLimiter(new() { PermitLimit = 1, Window = TimeSpan.FromSeconds(30), QueueLimit = 0, AutoReplenishment = false });
        Assert.Null(RetryAfter.WaitOf(limiter.AttemptAcquire()));
        Assert.Equal(TimeSpan.FromSeconds(30), RetryAfter.WaitOf(limiter.AttemptAcquire()));
        using var concurrency = new ConcurrencyLimiter(new() { PermitLimit = 1, QueueLimit = 0 });
        using var held = concurrency.AttemptAcquire();
        Assert.Equal(TimeSpan.FromSeconds(1), RetryAfter.WaitOf(concurrency.AttemptAcquire())); // names no wait: a second
    }
}
