using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// balance-client.js's rules that need neither a server nor a browser (browser/unit/client-rules.mjs, in Node).
public sealed class ClientRulesTests(ITestOutputHelper output)
{
    private static readonly string Client = Path.GetFullPath(Path.Combine(BrowserKit.Root, "..", "..", "wwwroot", "balance-client.js"));

    [Fact]
    [Trait("Category", "Unit")]
    public async Task TheDefaultWalletNoSocketOutsideABrowserAndTheGuidesMembers()
    {
        string text = await Tool.RunAsync(output, BrowserKit.Root, "node", Path.Combine(BrowserKit.Root, "unit", "client-rules.mjs"), new Uri(Client).ToString());
        Assert.Contains("client rules: ok", text);
    }
}
