using System.Text.RegularExpressions;

namespace Balance.Tests;

// Money's own rules, without a server: amounts are decimal strings with at most the currency's decimals, parsed to
// integer minor units by hand (no sign, exponent, spaces or floating point) and formatted with exactly those decimals.
[Trait("Category", "Unit")]
public sealed class MoneyTests
{
    public static TheoryData<string, int> Currencies() => new()
    {
        { "USD", 2 }, { "EUR", 2 }, { "GBP", 2 }, { "CAD", 2 }, { "AUD", 2 }, { "JPY", 0 }, { "BTC", 8 }, { "ETH", 8 },
    };

    [Fact]
    public void TheCurrenciesAreExactlyTheDocumentedEight()
    {
        Assert.Equal(["AUD", "BTC", "CAD", "ETH", "EUR", "GBP", "JPY", "USD"], Money.Decimals.Keys.Order(StringComparer.Ordinal));
        Assert.True(Money.IsKnownCurrency("USD"));
        Assert.False(Money.IsKnownCurrency("usd"));
        Assert.False(Money.IsKnownCurrency("XXX"));
        Assert.False(Money.IsKnownCurrency(null));
    }

    [Theory]
    [MemberData(nameof(Currencies))]
    public void EveryCurrencyParsesAndFormatsWithExactlyItsDecimals(string currency, int decimals)
    {
        Assert.Equal(decimals, Money.Decimals[currency]);
        string one = decimals == 0 ? "1" : "1." + new string('0', decimals);
        string smallest = decimals == 0 ? "1" : "0." + new string('0', decimals - 1) + "1";
        long unit = (long)Math.Pow(10, decimals);

        Assert.Equal(unit, Money.TryParse(one, currency, out var error));
        Assert.Null(error);
        Assert.Equal(1, Money.TryParse(smallest, currency, out error));
        Assert.Null(error);
        Assert.Equal(unit * 12, Money.TryParse("12", currency, out _)); // the decimals may be left out

        Assert.Equal(one, Money.Format(unit, currency));
        Assert.Equal(smallest, Money.Format(1, currency));
        Assert.Equal(decimals == 0 ? "0" : "0." + new string('0', decimals), Money.Format(0, currency));
        foreach (long minor in new[] { 0L, 1, 7, 99, 100, 12_345, 1_000_000_007, Money.MaxAmountMinor })
        {
            string text = Money.Format(minor, currency);
            Assert.Equal(decimals, text.Contains('.') ? text.Length - text.IndexOf('.') - 1 : 0);
            if (minor > 0) Assert.Equal(minor, Money.TryParse(text, currency, out _)); // format and parse round-trip
        }
    }

    [Theory]
    [InlineData("10.001", "USD", "USD allows at most 2 decimals")]
    [InlineData("0.123456789", "BTC", "BTC allows at most 8 decimals")]
    [InlineData("1.5", "JPY", "JPY has no minor units; send a whole number")]
    [InlineData("1.0", "JPY", "JPY has no minor units; send a whole number")]
    public void MoreDecimalsThanTheCurrencyHasIsRefused(string text, string currency, string message)
    {
        Assert.Null(Money.TryParse(text, currency, out var error));
        Assert.Equal(message, error);
    }

    [Theory]
    [InlineData("-1.00")]
    [InlineData("+1.00")]
    [InlineData("1e3")]
    [InlineData("1E3")]
    [InlineData(" 1.00")]
    [InlineData("1.00 ")]
    [InlineData("1,00")]
    [InlineData("1_000")]
    [InlineData(".50")]
    [InlineData("5.")]
    [InlineData("1.2.3")]
    [InlineData("ten")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("0x10")]
    [InlineData("١٢")] // Arabic-Indic digits: digits, but not ASCII ones
    [InlineData("１２")] // full-width digits
    public void AnythingButAPlainDecimalIsRefused(string text)
    {
        Assert.Null(Money.TryParse(text, "USD", out var error));
        Assert.Equal("amount must be a plain decimal string such as \"10.00\" (no sign, exponent or spaces)", error);
    }

    [Theory]
    [InlineData("")]
    [InlineData("00000000000000000000000000000000000000001")] // 41 characters
    public void EmptyOrOverlongTextIsRefused(string text)
    {
        Assert.Null(Money.TryParse(text, "USD", out var error));
        Assert.Equal("amount must be a decimal string such as \"10.00\"", error);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("0.00")]
    [InlineData("000.00")]
    public void ZeroIsRefused(string text)
    {
        Assert.Null(Money.TryParse(text, "USD", out var error));
        Assert.Equal("amount must be greater than zero", error);
    }

    [Fact]
    public void LeadingZerosAreAccepted() => Assert.Equal(1_050, Money.TryParse("0010.50", "USD", out _));

    [Theory]
    [InlineData("10000000000000.00", "USD", 1_000_000_000_000_000)] // exactly 10^15 minor units
    [InlineData("1000000000000000", "JPY", 1_000_000_000_000_000)]
    [InlineData("10000000.00000000", "BTC", 1_000_000_000_000_000)]
    public void TheLargestAmountIsTenToTheFifteenMinorUnits(string text, string currency, long minor) =>
        Assert.Equal(minor, Money.TryParse(text, currency, out _));

    [Theory]
    [InlineData("10000000000000.01", "USD")] // one minor unit past 10^15
    [InlineData("1000000000000001", "JPY")]
    [InlineData("99999999999999999999", "USD")] // past long
    [InlineData("9223372036854775807", "JPY")] // long.MaxValue itself
    [InlineData("9999999999999999999999999999999999999999", "USD")] // 40 digits
    public void HugeAmountsAreRefused(string text, string currency)
    {
        Assert.Null(Money.TryParse(text, currency, out var error));
        Assert.Equal($"amount is too large (at most {Money.Format(Money.MaxAmountMinor, currency)})", error);
    }

    [Fact]
    public void FormatOfAnUnknownCurrencyUsesTwoDecimals() => Assert.Equal("12.34", Money.Format(1234, "XYZ"));

    // The browser client (wwwroot/balance-client.js) validates and formats balances with a table of its own: the two
    // tables must agree, or the client would refuse (or misprint) a balance the server sends.
    [Fact]
    public void TheBrowserClientKnowsTheSameCurrenciesWithTheSameDecimals()
    {
        string js = File.ReadAllText(Path.Combine(RepositoryRoot(), "wwwroot", "balance-client.js"));
        var table = Regex.Match(js, @"const DECIMALS = \{(?<body>[^}]*)\};");
        Assert.True(table.Success, "balance-client.js has no `const DECIMALS = { ... };` table");
        var client = Regex.Matches(table.Groups["body"].Value, @"(?<code>[A-Z]{3})\s*:\s*(?<decimals>\d+)")
            .ToDictionary(m => m.Groups["code"].Value, m => int.Parse(m.Groups["decimals"].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(Money.Decimals.OrderBy(p => p.Key, StringComparer.Ordinal), client.OrderBy(p => p.Key, StringComparer.Ordinal));
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Balance.slnx"))) return dir.FullName;
        throw new InvalidOperationException("Balance.slnx not found above " + AppContext.BaseDirectory);
    }
}
