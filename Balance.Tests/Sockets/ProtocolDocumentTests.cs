using Balance.Tests.Browser;
using Xunit.Abstractions;

namespace Balance.Tests;

// docs/asyncapi.yaml, the machine-readable socket protocol, beside the OpenAPI document of the REST routes.
// With the browser tests, one at a time after the rest: a node process starting up competes for the 2 cores
// with the socket tests' token deadlines.
[Collection(BrowserCollection.Name)]
public sealed class ProtocolDocumentTests(ITestOutputHelper output)
{
    private static readonly string Document = Path.GetFullPath(Path.Combine(BrowserKit.Root, "..", "..", "docs", "asyncapi.yaml"));

    [Fact]
    public async Task TheAsyncApiDocumentPassesTheAsyncApiParserAndNamesEveryCloseCode()
    {
        string result = await Tool.RunAsync(output, BrowserKit.Root, "node", "validate-asyncapi.mjs", Document);
        Assert.Contains("ok: AsyncAPI 3.", result);
        Assert.Contains("/ws/balance/player", result);

        string text = await File.ReadAllTextAsync(Document);
        foreach (int code in new[] { CloseCodes.GoingAway, CloseCodes.PolicyViolation, CloseCodes.TooBig, CloseCodes.TokenExpired, CloseCodes.AuthTimeout,
                     CloseCodes.SlowConsumer, CloseCodes.TooManyConnections, CloseCodes.BadRequest, CloseCodes.InvalidToken, CloseCodes.Forbidden })
        {
            Assert.Contains($"{code} ", text);
            Assert.Contains(CloseCodes.Reason(code), text);
        }
    }
}
