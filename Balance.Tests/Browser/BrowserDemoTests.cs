using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// The demo page at /: a player window and an operator window side by side, as a person would use them.
[Collection(BrowserCollection.Name)]
public sealed class BrowserDemoTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static Task TextAsync(IPage page, string selector, string text) =>
        page.WaitForAsync("([selector, text]) => document.querySelector(selector)?.textContent.includes(text)", new[] { selector, text });

    [Fact]
    public async Task AnOperatorsBetAndRollbackShowUpInThePlayersWindowAtOnce()
    {
        await using var app = new BalanceApplication();
        var player = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/");
        await using var playerContext = player.Context; // closed before the app: no client retries after the test
        await player.SetViewportSizeAsync(720, 640);
        await player.FillAsync("#username", "alice");
        await player.FillAsync("#password", "demo1234");
        await player.ClickAsync("#login-button");
        await TextAsync(player, "#balance", "100.00");
        await TextAsync(player, "#status", "connected");
        await TextAsync(player, "#transactions tbody", "deposit");

        var operatorPage = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, "/");
        await using var operatorPageContext = operatorPage.Context; // closed before the app: no client retries after the test
        await operatorPage.SetViewportSizeAsync(720, 640);
        await operatorPage.ClickAsync("[data-user=operator]");
        await operatorPage.FillAsync("#op-player", "alice");
        await operatorPage.SelectOptionAsync("#op-type", "bet");
        await operatorPage.FillAsync("#op-amount", "12.50");
        await operatorPage.FillAsync("#op-reference", "round-1");
        await operatorPage.ClickAsync("#op-post");
        await TextAsync(operatorPage, "#op-result", "balance 87.50");

        await TextAsync(player, "#balance", "87.50");
        await TextAsync(player, "#last-change", "bet");
        await TextAsync(player, "#transactions tbody tr:first-child", "round-1");

        await operatorPage.ClickAsync("#op-transactions button.rollback");
        await TextAsync(operatorPage, "#op-result", "Rolled back");
        await TextAsync(player, "#balance", "100.00");
        await TextAsync(player, "#transactions tbody tr:first-child", "rollback");
        Assert.Equal("connected", await player.TextContentAsync("#status"));

        // The picture for the README: both windows after the operator's bet and rollback.
        await player.WaitForAsync("() => document.getAnimations().length === 0");
        var shots = new[] { await player.ScreenshotAsync(), await operatorPage.ScreenshotAsync() };
        Assert.All(shots, png => Assert.Equal([0x89, 0x50, 0x4E, 0x47], png[..4]));
        if (Environment.GetEnvironmentVariable("BALANCE_DEMO_SCREENSHOT") is { Length: > 0 } path)
        {
            await operatorPage.SetViewportSizeAsync(1456, 640);
            await operatorPage.SetContentAsync($"""
                <body style="margin:0;display:flex;gap:16px;background:#0b132b">
                <img src="data:image/png;base64,{Convert.ToBase64String(shots[0])}" width="720" height="640">
                <img src="data:image/png;base64,{Convert.ToBase64String(shots[1])}" width="720" height="640"></body>
                """);
            await operatorPage.ScreenshotAsync(new PageScreenshotOptions { Path = path });
        }
    }

    private static async Task LogInAsync(IPage page, string username)
    {
        await page.FillAsync("#username", username);
        await page.FillAsync("#password", "demo1234");
        await page.ClickAsync("#login-button");
        await TextAsync(page, "#balance", "100.00");
        await TextAsync(page, "#status", "connected");
    }

    private static Task LoginFormAsync(IPage page) => page.WaitForAsync(
        "() => !document.getElementById('login-view').hidden && document.getElementById('player-view').hidden");

    [Fact]
    public async Task WhenTheSessionEndsEveryTabOfThePlayerReturnsToTheLoginForm()
    {
        await using var app = new BalanceApplication();
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, app.BaseAddress);
        var first = await BrowserKit.NewPageAsync(context, output, "/", "tab 1");
        var second = await BrowserKit.NewPageAsync(context, output, "/", "tab 2");
        await LogInAsync(first, "alice");
        await LogInAsync(second, "alice");

        // Log out in one tab: the other leaves too, and no balance stays behind in storage.
        await first.ClickAsync("#logout");
        await LoginFormAsync(first);
        await LoginFormAsync(second);
        await TextAsync(second, "#login-error", "logged out in another tab");
        Assert.Equal(0, await second.EvaluateAsync<int>("() => Object.keys(localStorage).filter(k => k.startsWith('balance-client:')).length"));

        // The server ends the login (a logout elsewhere, a reused refresh token): the socket closes 4503, the page asks to log in.
        await LogInAsync(first, "alice");
        var session = JsonDocument.Parse(await first.EvaluateAsync<string>("() => sessionStorage.getItem('balance-demo-session')")).RootElement;
        using var http = app.Http(session.GetProperty("access_token").GetString());
        var response = await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = session.GetProperty("refresh_token").GetString() });
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        await LoginFormAsync(first);
        await TextAsync(first, "#login-error", "Please log in again");
    }
}
