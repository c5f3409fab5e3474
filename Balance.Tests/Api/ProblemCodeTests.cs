using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using MsOptions = Microsoft.Extensions.Options.Options;

namespace Balance.Tests;

// The problem-code table (Api/ProblemCodes.cs) against what it describes: each refusal of the ledger answers the
// row it maps to, and the ledger's own text for it is the row's text (the text the OpenAPI document shows as the
// example), so neither can change without the other. The real writer loop runs over the in-memory store.
[Trait("Category", "Unit")]
public sealed class ProblemCodeTests : IAsyncLifetime
{
    private readonly InMemoryLedgerStore _store = new();
    private readonly Ledger _ledger;
    private readonly Guid _operator, _alice, _bob;
    private int _keys;

    public ProblemCodeTests()
    {
        _ledger = new Ledger(_store, new FakeTimeProvider(new DateTimeOffset(2026, 12, 3, 18, 0, 0, TimeSpan.Zero)),
            MsOptions.Create(new LedgerOptions { MaxBatch = 64 }), NullLoggerFactory.Instance);
        _operator = _store.AddUser(Roles.Operator);
        _alice = _store.AddUser(Roles.Player);
        _bob = _store.AddUser(Roles.Player);
    }

    public Task InitializeAsync() => _ledger.StartAsync(CancellationToken.None);
    public async Task DisposeAsync() => await _ledger.CompleteAsync(CancellationToken.None);

    private Task<PostOutcome> PostAsync(string type, Guid? user, long amount, string currency = "USD", string? reverses = null, Guid? by = null) =>
        _ledger.PostAsync(new Posting(user, type, amount, type == TxTypes.Rollback ? null : currency, null, reverses, by ?? _operator, $"key-{++_keys}"));

    private async Task<string> CommittedAsync(string type, Guid user, long amount, string currency = "USD") =>
        Assert.IsType<PostOutcome.Committed>(await PostAsync(type, user, amount, currency)).Result.TransactionId;

    [Fact]
    public async Task EveryRefusalOfTheLedgerAnswersItsRowWithItsRowsText()
    {
        string deposit = await CommittedAsync(TxTypes.Deposit, _alice, 1_000);
        string bet = await CommittedAsync(TxTypes.Bet, _alice, 100);
        await CommittedAsync(TxTypes.Deposit, _alice, long.MaxValue, "JPY");
        string missing = Guid.NewGuid().ToString(), nobody = Guid.NewGuid().ToString();

        var seen = new Dictionary<Refusal, (string Code, int Status, string Detail)>();
        async Task Refused(Task<PostOutcome> posting, Refusal kind, string expected)
        {
            var refused = Assert.IsType<PostOutcome.Refused>(await posting);
            Assert.Equal(kind, refused.Kind);
            var row = ProblemCodes.ForRefusal(kind);
            Assert.Equal(expected, refused.Detail);
            seen[kind] = (row.Code, row.Status, refused.Detail);
        }

        await Refused(PostAsync(TxTypes.Rollback, null, 0, reverses: missing), Refusal.TransactionNotFound, ProblemCodes.TransactionNotFound.Text(missing));
        await Refused(PostAsync(TxTypes.Rollback, null, 0, reverses: deposit), Refusal.NotReversible, ProblemCodes.NotReversible.Text(deposit, TxTypes.Deposit));
        await Refused(PostAsync(TxTypes.Rollback, _bob, 0, reverses: bet), Refusal.UserMismatch, ProblemCodes.UserMismatch.Text());
        await Refused(PostAsync(TxTypes.Deposit, Guid.Parse(nobody), 100), Refusal.UserNotFound, ProblemCodes.UserNotFound.Text(nobody));
        await Refused(PostAsync(TxTypes.Deposit, _operator, 100), Refusal.NotAPlayer, ProblemCodes.NotAPlayer.Text());
        await Refused(PostAsync(TxTypes.Win, _alice, 1, "JPY"), Refusal.BalanceOverflow, ProblemCodes.BalanceOverflow.Text());
        // Money's words for a poster who is no operator here; the HTTP answer is the route's plain 403 `forbidden`.
        await Refused(PostAsync(TxTypes.Deposit, _alice, 100, by: _bob), Refusal.NotAnOperator, "The token's user is not an operator of this ledger.");
        _store.BeforeWrite = entry => { if (entry.UserId == _bob) throw new StoreConflictException("the wallet moved"); };
        await Refused(PostAsync(TxTypes.Deposit, _bob, 100), Refusal.Conflict, ProblemCodes.Conflict.Text());

        Assert.Equal(Enum.GetValues<Refusal>().Order(), seen.Keys.Order()); // every refusal was produced and checked
        Assert.Equal(
            [("conflict", 409), ("transaction_not_found", 404), ("not_reversible", 422), ("user_mismatch", 422), ("user_not_found", 404),
             ("not_a_player", 422), ("forbidden", 403), ("balance_overflow", 422)],
            Enum.GetValues<Refusal>().Select(k => (seen[k].Code, seen[k].Status)));
    }

    [Fact]
    public void EveryCodeIsListedOnceAndEveryRefusalMapsToAListedCode()
    {
        Assert.Equal(ProblemCodes.All.Count, ProblemCodes.All.Select(c => c.Code).Distinct().Count());
        // Every row is the document's (All) or the socket endpoint's (SocketUpgrade, not in the document), never both.
        var listed = typeof(ProblemCodes).GetFields().Where(f => f.FieldType == typeof(ProblemCode)).Select(f => (ProblemCode)f.GetValue(null)!).ToList();
        Assert.Equal(ProblemCodes.SocketUpgrade.Count, ProblemCodes.SocketUpgrade.Distinct().Count());
        Assert.Equal(listed.Count, ProblemCodes.All.Count + ProblemCodes.SocketUpgrade.Count);
        Assert.All(listed, row => Assert.True(ProblemCodes.All.Contains(row) ^ ProblemCodes.SocketUpgrade.Contains(row), row.Code));
        // A code is one status and title wherever it is written (the socket's unavailable is the REST one's 503).
        Assert.All(listed.GroupBy(row => row.Code), rows => Assert.Single(rows.Select(row => (row.Status, row.Title)).Distinct()));
        Assert.All(Enum.GetValues<Refusal>(), kind => Assert.Contains(ProblemCodes.ForRefusal(kind), ProblemCodes.All));
        // The pipeline's fallback by status names a listed code wherever a listed code has that status's meaning.
        Assert.All(new[] { ProblemCodes.Unauthorized, ProblemCodes.Forbidden, ProblemCodes.PayloadTooLarge, ProblemCodes.UnsupportedMediaType, ProblemCodes.Unavailable },
            c => Assert.Equal(c.Code, ProblemCodes.ForStatus(c.Status)));
    }

    [Fact]
    public void ATextFillsItsValuesAndTheExampleIsTheTextWithTheRowsOwn()
    {
        Assert.Equal("Too many refreshes from this address; try again in 3 s.", ProblemCodes.TooManyAttempts.Text("refreshes from this address", 3));
        Assert.Equal("Too many login attempts; try again in 42 s.", ProblemCodes.TooManyAttempts.Example);
        Assert.Equal("Only a bet can be rolled back; 0193f1a2-7c4e-7b10-9a3d-5e2f8c1d4b6a is a deposit.", ProblemCodes.NotReversible.Example);
        Assert.Null(ProblemCodes.Unauthorized.Example); // the pipeline's 401 carries no detail
        Assert.Throws<InvalidOperationException>(() => ProblemCodes.Forbidden.Text());
        Assert.Equal(("One or more validation errors occurred.", "https://tools.ietf.org/html/rfc9110#section-15.5.1"), (ProblemCodes.ValidationFailed.Title, ProblemCodes.ValidationFailed.Type));
        Assert.Equal(("Too Many Requests", null), (ProblemCodes.TooManyAttempts.Title, ProblemCodes.TooManyAttempts.Type));
        Assert.Equal(("Service Unavailable", "https://tools.ietf.org/html/rfc9110#section-15.6.4"), (ProblemCodes.LoginBusy.Title, ProblemCodes.LoginBusy.Type));
    }

    // The socket endpoint's refusals of an upgrade, and the words its closes share with them (CloseReason).
    [Fact]
    public void TheSocketUpgradesRefusalsAreRowsWhoseWordsItsClosesShare()
    {
        Assert.Equal(
            [("websocket_required", 400, "This endpoint speaks WebSocket only."), ("unavailable", 503, "The server is restarting; reconnect."),
             ("too_many_connections", 429, "Reconnecting too fast; try again in 1 s."), ("origin_not_allowed", 403, "Origin not allowed."),
             ("too_many_connections", 429, "Too many unauthenticated sockets from this address.")],
            ProblemCodes.SocketUpgrade.Select(row => (row.Code, row.Status, row.Example)));
        Assert.Equal(ProblemCodes.ReconnectingTooFast.Text(3), CloseReason.ReconnectingTooFast(TimeSpan.FromSeconds(2.2)).Message);
        Assert.Equal(ProblemCodes.ServerRestarting.Text(), CloseReason.GoingAway.Message);
        Assert.Equal(ProblemCodes.Unavailable.Code, ProblemCodes.ServerRestarting.Code);
    }

    [Fact]
    public void ARouteDeclaresProblemsOfOneStatusAtATime()
    {
        var app = WebApplication.CreateBuilder().Build();
        var route = app.MapGet("/x", () => "x");
        route.ProducesProblems("Not found, or gone.", ProblemCodes.UserNotFound, ProblemCodes.TransactionNotFound);
        var error = Assert.Throws<ArgumentException>(() => route.ProducesProblems("Mixed.", ProblemCodes.UserNotFound, ProblemCodes.Conflict));
        Assert.Contains("user_not_found 404, conflict 409", error.Message);
        Assert.Throws<ArgumentException>(() => route.ProducesProblems("None."));
    }
}
