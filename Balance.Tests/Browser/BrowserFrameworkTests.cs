using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// The React hook and the Vue composable, each rendering in a page with the real framework from npm.
[Collection(BrowserCollection.Name)]
public sealed class BrowserFrameworkTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static Task TextAsync(IPage page, string selector, string text) =>
        page.WaitForAsync("([selector, text]) => document.querySelector(selector)?.textContent === text", new[] { selector, text });

    [Theory]
    [InlineData("react")]
    [InlineData("vue")]
    public async Task TheHookRendersLiveUpdatesSharesOneSocketAndCleansUpOnUnmount(string framework)
    {
        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, $"/__test/pages/{framework}.html");
        await using var pageContext = page.Context; // closed before the app: no client retries after the test
        await page.WaitForAsync("() => window.ready");

        await page.EvaluateAsync("token => show(token, ['a', 'b'])", alice.AccessToken);
        foreach (var id in new[] { "#a", "#b" })
        {
            await TextAsync(page, $"{id} .balance", "100.00");
            await TextAsync(page, $"{id} .status", "connected");
            await TextAsync(page, $"{id} .connected", "yes");
        }
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "25.50", currency = "USD" });
        await TextAsync(page, "#a .balance", "125.50");
        await TextAsync(page, "#b .balance", "125.50");
        Assert.Equal(1, await page.EvaluateAsync<int>("() => sockets.created"));

        // One component unmounts: the other keeps the shared socket and its updates.
        await page.EvaluateAsync("token => show(token, ['b'])", alice.AccessToken);
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "5.00", currency = "USD" });
        await TextAsync(page, "#b .balance", "120.50");
        Assert.Equal(0, await page.EvaluateAsync<int>("() => document.querySelectorAll('#a').length"));
        Assert.Equal(1, await page.EvaluateAsync<int>("() => sockets.open"));

        // The last one unmounts: the socket closes.
        await page.EvaluateAsync("token => show(token, [])", alice.AccessToken);
        await page.WaitForAsync("() => sockets.open === 0");

        // A refused token shows up as status and error, not as an endless spinner.
        await page.EvaluateAsync("token => show(token, ['c'])", alice.AccessToken[..^4] + "AAAA");
        await TextAsync(page, "#c .status", "unauthorized");
        await TextAsync(page, "#c .error", "invalid_token");
        await TextAsync(page, "#c .connected", "no");
    }

    // A player whose only wallet is EUR: the server's snapshot still has USD at zero, which the hook must not show as the balance.
    [Theory]
    [InlineData("react")]
    [InlineData("vue")]
    public async Task APlayerWhoseOnlyMoneyIsInEuroSeesEuroAndEveryWalletIsThere(string framework)
    {
        await using var app = new BalanceApplication();
        string erinId = await app.CreatePlayerAsync("erin");
        var op = await app.LoginAsync("operator");
        await app.PostOkAsync(op.AccessToken, new { user_id = erinId, type = "deposit", amount = "50.00", currency = "EUR" });
        var erin = await app.LoginAsync("erin", "password123");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output, $"/__test/pages/{framework}.html");
        await using var pageContext = page.Context;
        await page.WaitForAsync("() => window.ready");

        await page.EvaluateAsync("token => show(token, ['a'])", erin.AccessToken);
        await TextAsync(page, "#a .status", "connected");
        await TextAsync(page, "#a .balance", "50.00");
        await TextAsync(page, "#a .currency", "EUR");
        await TextAsync(page, "#a .wallets", "0.00 USD, 50.00 EUR");
        await TextAsync(page, "#a .loading", "no");

        // A wallet asked for by name is the one shown, even at zero; the live update of the other reaches balances.
        await page.EvaluateAsync("token => show(token, ['a', 'b'], { currency: 'USD' })", erin.AccessToken);
        await TextAsync(page, "#b .balance", "0.00");
        await TextAsync(page, "#b .currency", "USD");
        await app.PostOkAsync(op.AccessToken, new { user_id = erinId, type = "bet", amount = "5.00", currency = "EUR" });
        await TextAsync(page, "#b .wallets", "0.00 USD, 45.00 EUR");
        await TextAsync(page, "#b .balance", "0.00");
    }
}
