using Balance.Api;

namespace Balance.Tests;

// The rule for text the ledger stores and the audit log writes (reference, Idempotency-Key): no control characters,
// so no newline can forge a second log line, and only whole characters (no lone surrogate).
[Trait("Category", "Unit")]
public sealed class PlainTextTests
{
    [Theory]
    [InlineData("round-8812")]
    [InlineData("")]
    [InlineData("café ☕ 北京")]
    [InlineData("emoji \U0001F3B0 pair")] // a surrogate pair is one character
    [InlineData("space and ~ are fine")]
    [InlineData("\u0080 and \u00a0 are not C0 controls")]
    public void TextWithoutControlCharactersIsPlain(string text) => Assert.True(LedgerApi.IsPlainText(text));

    [Theory]
    [InlineData("line\nforged")]
    [InlineData("cr\r")]
    [InlineData("\0")]
    [InlineData("tab\there")]
    [InlineData("unit\u001fseparator")]
    [InlineData("del\u007f")]
    public void ControlCharactersAreNot(string text) => Assert.False(LedgerApi.IsPlainText(text));

    // Built in code: an attribute's strings are stored as UTF-8, which would turn a lone surrogate into U+FFFD.
    [Theory]
    [InlineData('\ud800', ' ')]
    [InlineData(' ', '\udc00')]
    [InlineData('\udc00', '\ud800')]
    [InlineData('x', '\udbff')]
    public void UnpairedSurrogatesAreNot(char first, char second) => Assert.False(LedgerApi.IsPlainText($"pay-{first}{second}"));
}
