using System.Text.Json;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// Server rendering (Next.js, Nuxt, a Pinia store on the server): the hooks render, and nothing opens a socket with
// the user's token from the server. Node 20 gets its built-in WebSocket with --experimental-websocket (22+ always
// has it), so a client that tried would succeed; the script counts every socket constructed and reads the
// service's own gauges while it is still running.
[Collection(BrowserCollection.Name)]
public sealed class BrowserServerRenderTests(ITestOutputHelper output)
{
    private static readonly string Ssr = Path.Combine(BrowserKit.Root, "ssr");
    private static readonly string Package = Path.GetFullPath(Path.Combine(BrowserKit.Root, "..", "..", "wwwroot"));

    [Fact]
    public async Task RenderingReactAndVueOnTheServerInsideAndOutsideComponentsOpensNoSocket()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");

        // The package's modules beside the script, so their bare 'react' and 'vue' resolve from Balance.Tests/browser.
        string client = Path.Combine(Ssr, "client");
        if (Directory.Exists(client)) Directory.Delete(client, recursive: true);
        Directory.CreateDirectory(client);
        foreach (var js in Directory.GetFiles(Package, "balance-*.js")) File.Copy(js, Path.Combine(client, Path.GetFileName(js)));

        string text = await Tool.RunAsync(output, BrowserKit.Root, "node", "--experimental-websocket", Path.Combine(Ssr, "render.mjs"),
            app.BaseAddress.ToString().TrimEnd('/'), alice.AccessToken);
        using var result = JsonDocument.Parse(text.Trim().Split('\n')[^1]);
        var root = result.RootElement;
        Assert.Empty(root.GetProperty("opened").EnumerateArray());
        Assert.Equal(0, root.GetProperty("serverOpen").GetDouble());
        Assert.Equal(0, root.GetProperty("serverAuthenticated").GetDouble());

        // What the server rendered is what the first browser render shows too (hydration): no balance, not live.
        var html = root.GetProperty("html");
        Assert.Equal("<p>closed false -</p>", html.GetProperty("react").GetString());
        Assert.Equal("<p>closed -</p>", html.GetProperty("vue").GetString());
        Assert.Equal("closed -", html.GetProperty("vueStore").GetString());
    }
}
