using System.Net;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// The human-readable reference at /reference/ (Development only): Redoc from the service's own files, no CDN.
[Collection(BrowserCollection.Name)]
public sealed class BrowserReferenceTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    [Fact]
    public async Task TheReferencePageRendersTheDocumentFromTheServicesOwnFilesOnly()
    {
        await using var app = new BalanceApplication();
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output);
        await using var pageContext = page.Context;
        // What reached the network, and what the page's Content-Security-Policy stopped before it did (Redoc's bundle
        // asks for the Redocly logo from its CDN; the policy allows this origin only).
        var requested = new List<string>();
        var blocked = new List<string>();
        page.RequestFinished += (_, request) => { lock (requested) requested.Add(request.Url); };
        page.RequestFailed += (_, request) => { lock (requested) (request.Failure?.Contains("CSP", StringComparison.OrdinalIgnoreCase) == true ? blocked : requested).Add(request.Url); };
        await page.GotoAsync("/reference/");

        // Rendered from /openapi/v1.json: operations' summaries, the role a route needs, a required header, a 409's description.
        foreach (string text in new[] { "Log in: an access token and a refresh token", "Post one transaction", "Requires a bearer token with role operator",
                     "Idempotency-Key", "Not enough money (the body holds the balance)" })
            await page.WaitForAsync("(text) => document.body.innerText.includes(text)", text, timeout: 20_000);
        string origin = app.BaseAddress.GetLeftPart(UriPartial.Authority);
        lock (requested)
        {
            Assert.Contains(requested, u => u.EndsWith("/openapi/v1.json", StringComparison.Ordinal));
            Assert.All(requested, u => Assert.True(u.StartsWith(origin, StringComparison.Ordinal) || u.StartsWith("blob:", StringComparison.Ordinal)
                || u.StartsWith("data:", StringComparison.Ordinal), $"the page fetched {u}"));
            output.WriteLine($"blocked by the page's CSP: {string.Join(", ", blocked)}");
        }
    }

    [Fact]
    public async Task TheReferencePageIsServedInDevelopmentOnlyAndTheDocumentAlways()
    {
        await using var app = new BalanceApplication(new()
        {
            ["environment"] = "Production",
            ["Auth:SigningKey"] = "production-test-signing-key-of-at-least-32-bytes",
        });
        using var http = app.Http();
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/reference/")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/reference/redoc.standalone.js")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/openapi/v1.json")).StatusCode);
    }
}
