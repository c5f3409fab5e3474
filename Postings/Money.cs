using System.Globalization;

namespace Balance.Postings;

// Amounts travel as decimal strings with exactly the currency's decimals and are stored as
// integer minor units. Parsing is by hand on purpose: no floating point, no exponents, no signs.
public static class Money
{
    public const string DefaultCurrency = "USD";

    // A single transaction may move at most 10^15 minor units; balances are overflow-checked on top.
    public const long MaxAmountMinor = 1_000_000_000_000_000;

    public static readonly IReadOnlyDictionary<string, int> Decimals = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["USD"] = 2, ["EUR"] = 2, ["GBP"] = 2, ["CAD"] = 2, ["AUD"] = 2, ["JPY"] = 0, ["BTC"] = 8, ["ETH"] = 8,
    };

    public static bool IsKnownCurrency(string? currency) => currency is not null && Decimals.ContainsKey(currency);

    /// Returns null and an error message when the text is not a valid amount for the currency.
    public static long? TryParse(string text, string currency, out string? error)
    {
        error = null;
        int decimals = Decimals[currency];
        if (text.Length is 0 or > 40)
        {
            error = "amount must be a decimal string such as \"10.00\"";
            return null;
        }
        int dot = text.IndexOf('.');
        string whole = dot < 0 ? text : text[..dot];
        string frac = dot < 0 ? "" : text[(dot + 1)..];
        if (whole.Length == 0 || !whole.All(char.IsAsciiDigit) || (dot >= 0 && (frac.Length == 0 || !frac.All(char.IsAsciiDigit))))
        {
            error = "amount must be a plain decimal string such as \"10.00\" (no sign, exponent or spaces)";
            return null;
        }
        if (frac.Length > decimals)
        {
            error = decimals == 0
                ? $"{currency} has no minor units; send a whole number"
                : $"{currency} allows at most {decimals} decimals";
            return null;
        }
        string digits = (whole + frac.PadRight(decimals, '0')).TrimStart('0');
        if (digits.Length > 18 || !long.TryParse(digits.Length == 0 ? "0" : digits, NumberStyles.None, CultureInfo.InvariantCulture, out long minor) || minor > MaxAmountMinor)
        {
            error = $"amount is too large (at most {Format(MaxAmountMinor, currency)})";
            return null;
        }
        if (minor <= 0)
        {
            error = "amount must be greater than zero";
            return null;
        }
        return minor;
    }

    public static string Format(long minor, string currency)
    {
        int decimals = Decimals.TryGetValue(currency, out int d) ? d : 2;
        if (decimals == 0) return minor.ToString(CultureInfo.InvariantCulture);
        string s = minor.ToString(CultureInfo.InvariantCulture).PadLeft(decimals + 1, '0');
        return string.Concat(s.AsSpan(0, s.Length - decimals), ".", s.AsSpan(s.Length - decimals));
    }
}
