using Microsoft.AspNetCore.Http;

namespace Balance.Tests.Unit;

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
}
