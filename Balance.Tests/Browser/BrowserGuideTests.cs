using Xunit.Abstractions;

namespace Balance.Tests.Browser;

[Collection(BrowserCollection.Name)]
public sealed class BrowserGuideTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    [Fact]
    public async Task TheGuidesOwnClassReceivesAlicesBalanceAndEveryLaterUpdate()
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/__test/pages/guide.html");
        await using var pageContext = page.Context; // closed before the app: no client retries after the test

        await page.EvaluateAsync("([base, token]) => startGuide(base, token)", new[] { BrowserKit.SocketBase(app.BaseAddress), alice.AccessToken });
        await page.WaitForAsync("() => guideMessages.length === 1");

        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "10.00", currency = "USD" });
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "35.25", currency = "USD" });
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "0.75", currency = "USD" });
        await page.WaitForAsync("() => guideMessages.length >= 4");

        // The guide's listener sees every frame: only balance messages may reach it, in order, each one step on.
        var messages = await page.EvaluateJsonAsync<GuideMessage[]>("() => guideMessages");
        Assert.Equal(["100.00", "90.00", "125.25", "126.00"], messages.Select(m => m.Balance));
        Assert.All(messages, m => Assert.Equal(("balance", alice.UserId, "USD"), (m.Type, m.UserId, m.Currency)));
        Assert.Equal(Enumerable.Range((int)messages[0].Version, 4).Select(v => (long)v), messages.Select(m => m.Version));
        Assert.Equal(1, await page.EvaluateAsync<int>("() => guideService.ws.readyState"));
    }

    private sealed record GuideMessage(string Type, string UserId, string Balance, string Currency, long Version);
}
