using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balance.Tests;

public class HostileInputTests
{
    /// The engine under test; the same tests run again on PostgreSQL (Postgres/OnPostgres.cs).
    protected virtual Store Store => Store.Sqlite;

    private static readonly string Key256 = new('k', 256);

    // (what, body with {alice}/{op}/{deposit} placeholders, Idempotency-Key or null for none, content type, status, code or null)
    public static readonly (string What, string Body, string? Key, string ContentType, int Status, string Code)[] Cases =
    [
        ("malformed JSON", """{"user_id":"{alice}","type":"deposit","amount":"1.00",""", "k", "application/json", 400, "malformed_request"),
        ("not JSON at all", "hello", "k", "application/json", 400, "malformed_request"),
        ("empty body", "", "k", "application/json", 400, "malformed_request"),
        ("a JSON array", "[]", "k", "application/json", 400, "malformed_request"),
        ("JSON null", "null", "k", "application/json", 400, "malformed_request"),
        ("user_id a number", """{"user_id":123,"type":"deposit","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("user_id not a guid", """{"user_id":"alice","type":"deposit","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("amount a number", """{"user_id":"{alice}","type":"deposit","amount":10,"currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("amount a float", """{"user_id":"{alice}","type":"deposit","amount":10.5,"currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("amount a bool", """{"user_id":"{alice}","type":"deposit","amount":true,"currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("amount an object", """{"user_id":"{alice}","type":"deposit","amount":{"value":"1.00"},"currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("type a number", """{"user_id":"{alice}","type":5,"amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("deeply nested JSON", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":""" + new string('[', 200) + new string(']', 200) + "}", "k", "application/json", 400, "malformed_request"),
        ("amount with exponent", Deposit("1e3", "USD"), "k", "application/json", 400, "validation_failed"),
        ("amount 1E2", Deposit("1E2", "USD"), "k", "application/json", 400, "validation_failed"),
        ("too many decimals USD", Deposit("1.001", "USD"), "k", "application/json", 400, "validation_failed"),
        ("decimals on JPY", Deposit("1.5", "JPY"), "k", "application/json", 400, "validation_failed"),
        ("too many decimals BTC", Deposit("0.000000001", "BTC"), "k", "application/json", 400, "validation_failed"),
        ("zero", Deposit("0", "USD"), "k", "application/json", 400, "validation_failed"),
        ("zero with decimals", Deposit("0.00", "USD"), "k", "application/json", 400, "validation_failed"),
        ("negative", Deposit("-5.00", "USD"), "k", "application/json", 400, "validation_failed"),
        ("negative withdrawal", """{"user_id":"{alice}","type":"withdrawal","amount":"-500.00","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("plus sign", Deposit("+5.00", "USD"), "k", "application/json", 400, "validation_failed"),
        ("overflow", Deposit("99999999999999999999", "USD"), "k", "application/json", 400, "validation_failed"),
        ("above the per-transaction cap", Deposit("10000000000000.01", "USD"), "k", "application/json", 400, "validation_failed"),
        ("overflow JPY", Deposit("9223372036854775808", "JPY"), "k", "application/json", 400, "validation_failed"),
        ("leading space", Deposit(" 1.00", "USD"), "k", "application/json", 400, "validation_failed"),
        ("comma decimal", Deposit("1,00", "USD"), "k", "application/json", 400, "validation_failed"),
        ("trailing dot", Deposit("1.", "USD"), "k", "application/json", 400, "validation_failed"),
        ("leading dot", Deposit(".50", "USD"), "k", "application/json", 400, "validation_failed"),
        ("empty amount", Deposit("", "USD"), "k", "application/json", 400, "validation_failed"),
        ("NaN", Deposit("NaN", "USD"), "k", "application/json", 400, "validation_failed"),
        ("Infinity", Deposit("Infinity", "USD"), "k", "application/json", 400, "validation_failed"),
        ("hex", Deposit("0x10", "USD"), "k", "application/json", 400, "validation_failed"),
        ("non-ASCII digits", Deposit("١٠", "USD"), "k", "application/json", 400, "validation_failed"),
        ("fullwidth digits", Deposit("１０", "USD"), "k", "application/json", 400, "validation_failed"),
        ("missing amount", """{"user_id":"{alice}","type":"deposit","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("unknown currency", Deposit("1.00", "XXX"), "k", "application/json", 400, "validation_failed"),
        ("lowercase currency", Deposit("1.00", "usd"), "k", "application/json", 400, "validation_failed"),
        ("missing currency", """{"user_id":"{alice}","type":"deposit","amount":"1.00"}""", "k", "application/json", 400, "validation_failed"),
        ("unknown type", """{"user_id":"{alice}","type":"transfer","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("uppercase type", """{"user_id":"{alice}","type":"DEPOSIT","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("missing type", """{"user_id":"{alice}","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("missing user", """{"type":"deposit","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("unknown user", """{"user_id":"6f1c1e57-1f2e-4c1b-9a43-0d7e4b1c9a77","type":"deposit","amount":"1.00","currency":"USD"}""", "k", "application/json", 404, "user_not_found"),
        ("operator has no wallet", """{"user_id":"{op}","type":"deposit","amount":"1.00","currency":"USD"}""", "k", "application/json", 422, "not_a_player"),
        ("reference too long", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"REF"}""".Replace("REF", new string('r', 256)), "k", "application/json", 400, "validation_failed"),
        ("missing Idempotency-Key", Deposit("1.00", "USD"), null, "application/json", 400, "validation_failed"),
        ("empty Idempotency-Key", Deposit("1.00", "USD"), "", "application/json", 400, "validation_failed"),
        ("256-char Idempotency-Key", Deposit("1.00", "USD"), Key256, "application/json", 400, "validation_failed"),
        ("text/plain body", Deposit("1.00", "USD"), "k", "text/plain", 415, "unsupported_media_type"),
        ("rollback with an amount", """{"type":"rollback","reverses":"{deposit}","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "validation_failed"),
        ("rollback of garbage", """{"type":"rollback","reverses":"nope"}""", "k", "application/json", 400, "validation_failed"),
        ("rollback of nothing", """{"type":"rollback","reverses":"0190a8f4-0000-7000-8000-000000000000"}""", "k", "application/json", 404, "transaction_not_found"),
        ("rollback of a deposit", """{"type":"rollback","reverses":"{deposit}"}""", "k", "application/json", 422, "not_reversible"),
        ("rollback as someone else's", """{"type":"rollback","reverses":"{bet}","user_id":"{bob}"}""", "k", "application/json", 422, "user_mismatch"),
        ("deposit naming a reversal", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reverses":"{deposit}"}""", "k", "application/json", 400, "validation_failed"),
        ("withdrawal beyond the balance", """{"user_id":"{alice}","type":"withdrawal","amount":"100.01","currency":"USD"}""", "k", "application/json", 409, "insufficient_funds"),
        ("bet in a currency never deposited", """{"user_id":"{alice}","type":"bet","amount":"0.00000001","currency":"BTC"}""", "k", "application/json", 409, "insufficient_funds"),
        // A body is read one way only: a property sent twice, a name in another case or one the body does not have is
        // malformed (never its last value or a case-blind match: 5000.00 posted), and a control character in text is
        // refused before it reaches the ledger or the audit log (a newline would forge a second line).
        ("a duplicated amount", """{"user_id":"{alice}","type":"deposit","amount":"0.01","amount":"5000.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("a duplicated user_id", """{"user_id":"{alice}","type":"bet","amount":"1.00","currency":"USD","user_id":"{bob}"}""", "k", "application/json", 400, "malformed_request"),
        ("Amount in another case", """{"user_id":"{alice}","type":"deposit","Amount":"5000.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("amount and Amount", """{"user_id":"{alice}","type":"deposit","amount":"0.01","Amount":"5000.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("USER_ID in another case", """{"USER_ID":"{alice}","type":"deposit","amount":"1.00","currency":"USD"}""", "k", "application/json", 400, "malformed_request"),
        ("a property the body does not have", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","referense":"typo"}""", "k", "application/json", 400, "malformed_request"),
        ("a newline in reference", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"pay-1\nCommitted deposit forged"}""", "k", "application/json", 400, "validation_failed"),
        ("a NUL in reference", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"pay\u00001"}""", "k", "application/json", 400, "validation_failed"),
        ("U+001F in reference", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"pay\u001f1"}""", "k", "application/json", 400, "validation_failed"),
        ("DEL in reference", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"pay\u007f1"}""", "k", "application/json", 400, "validation_failed"),
        ("a carriage return in a rollback's reference", """{"type":"rollback","reverses":"{bet}","reference":"r\r"}""", "k", "application/json", 400, "validation_failed"),
        ("an unpaired surrogate in reference", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"pay\ud800"}""", "k", "application/json", 400, "malformed_request"), // the JSON reader's own refusal
        ("a tab in the Idempotency-Key", Deposit("1.00", "USD"), "key\twith-tab", "application/json", 400, "validation_failed"),
        ("oversized body (> 64 KiB)", """{"user_id":"{alice}","type":"deposit","amount":"1.00","currency":"USD","reference":"REF"}""".Replace("REF", new string('x', 70 * 1024)), "k", "application/json", 413, "payload_too_large"),
    ];

    private static string Deposit(string amount, string currency) =>
        $$"""{"user_id":"{alice}","type":"deposit","amount":{{JsonSerializer.Serialize(amount)}},"currency":"{{currency}}"}""";

    [Fact]
    public async Task EveryHostileTransactionBodyGetsA4xxProblemWithACodeAndChangesNothing()
    {
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        using var http = app.Http(op.AccessToken);
        string deposit = (await InvariantTests.PageHistoryAsync(http, alice.UserId, 50)).Single().GetProperty("transaction_id").GetString()!;
        string bet = (await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "1.00", currency = "USD" })).GetProperty("transaction_id").GetString()!;
        string bob = (await app.LoginAsync("bob")).UserId;
        var before = LedgerAudit.Read(app.DatabasePath);
        using var mine = app.Http(alice.AccessToken);
        string balanceBefore = (await mine.GetFromJsonAsync<JsonElement>("/api/balance")).ToString();
        var failures = new List<string>();
        foreach (var c in Cases)
        {
            string body = c.Body.Replace("{alice}", alice.UserId).Replace("{op}", op.UserId).Replace("{deposit}", deposit).Replace("{bet}", bet).Replace("{bob}", bob);
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/transactions") { Content = new StringContent(body, Encoding.UTF8) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(c.ContentType);
            string? key = c.Key == "k" ? InvariantTests.NewKey() : c.Key;
            if (key is not null) request.Headers.TryAddWithoutValidation("Idempotency-Key", key);
            var response = await http.SendAsync(request);
            string text = await response.Content.ReadAsStringAsync();
            string? code = null;
            try { code = JsonDocument.Parse(text).RootElement.GetProperty("code").GetString(); } catch (Exception) { }
            if ((int)response.StatusCode != c.Status || response.Content.Headers.ContentType?.MediaType != "application/problem+json"
                || code != c.Code)
                failures.Add($"{c.What}: {(int)response.StatusCode} {response.Content.Headers.ContentType} {text[..Math.Min(text.Length, 300)]}");
        }
        Assert.True(failures.Count == 0, "wrong answers:\n" + string.Join("\n", failures));

        var after = LedgerAudit.Read(app.DatabasePath);
        Assert.Equal(before.Rows, after.Rows);
        Assert.Equal(before.Wallets, after.Wallets);
        Assert.Equal(balanceBefore, (await mine.GetFromJsonAsync<JsonElement>("/api/balance")).ToString());
    }

    // A body anyone can send is its 400 or 413 and nothing else: not a server error with a stack trace per request,
    // which a stranger's loop would turn into a full disk (Api/ErrorLog.cs). A defect still logs in full (ErrorLog).
    [Fact]
    public async Task AMalformedBodyIsAnsweredWithoutALogLine()
    {
        var logs = new CapturingLoggerProvider();
        // An allowance wide enough for every bad login to be read (past it they are 429s unread: AuthAbuseTests).
        await using var app = new BalanceApplication(new() { ["Auth:LoginAttemptsPerMinutePerIp"] = "1000" }, store: Store)
        {
            ConfigureTestServices = s => s.AddSingleton<ILoggerProvider>(logs),
        };
        var op = await app.LoginAsync("operator");
        using var stranger = app.Http();
        using var operatorHttp = app.Http(op.AccessToken);
        int before = logs.Lines.Count;
        var answers = new List<HttpResponseMessage>();
        for (int i = 0; i < 20; i++)
        {
            answers.Add(await stranger.PostAsync("/api/auth/login", new StringContent("""{"username":"alice","password":""", Encoding.UTF8, "application/json")));
            answers.Add(await stranger.PostAsync("/api/auth/login", new StringContent("""{"username":5,"password":"x"}""", Encoding.UTF8, "application/json")));
            answers.Add(await stranger.PostAsync("/api/auth/login", new StringContent("\"" + new string('a', 70_000) + "\"", Encoding.UTF8, "application/json")));
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/transactions")
            {
                Content = new StringContent("""{"user_id":"not-a-guid","type":"deposit","amount":"1.00","currency":"USD"}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("Idempotency-Key", InvariantTests.NewKey());
            answers.Add(await operatorHttp.SendAsync(request));
        }
        Assert.All(answers, a => Assert.True(a.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.RequestEntityTooLarge, a.StatusCode.ToString()));
        Assert.Contains(answers, a => a.StatusCode == HttpStatusCode.RequestEntityTooLarge);
        var logged = logs.Lines.Skip(before).Where(l => l.StartsWith("Error ", StringComparison.Ordinal) || l.StartsWith("Warning ", StringComparison.Ordinal)
            || l.StartsWith("Critical ", StringComparison.Ordinal) || l.Contains("BadHttpRequestException", StringComparison.Ordinal)).ToList();
        Assert.True(logged.Count == 0, $"{logged.Count} log lines for 80 bad requests, the first: {logged.FirstOrDefault()}");
    }

    // Every body of the service, not only the ledger's, is read as strictly: a property sent twice, a name in another
    // case or one the body does not have is 400 malformed_request, and the request has no effect (the token is not
    // spent, the login not ended, the user not made).
    [Fact]
    public async Task EveryRequestBodyRefusesDuplicatedOtherCaseAndUnknownPropertiesAndChangesNothing()
    {
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        string refresh = JsonSerializer.Serialize(alice.RefreshToken);
        var cases = new (string Path, string Body, string? Token)[]
        {
            ("/api/auth/login", """{"username":"operator","password":"wrong-one","password":"demo1234"}""", null),
            ("/api/auth/login", """{"Username":"operator","password":"demo1234"}""", null),
            ("/api/auth/login", """{"username":"operator","PASSWORD":"demo1234"}""", null),
            ("/api/auth/login", """{"username":"operator","password":"demo1234","remember_me":true}""", null),
            ("/api/auth/refresh", $$"""{"refresh_token":"nope","refresh_token":{{refresh}}}""", null),
            ("/api/auth/refresh", $$"""{"Refresh_Token":{{refresh}}}""", null),
            ("/api/auth/logout", $$"""{"refresh_token":{{refresh}},"refresh_token":{{refresh}}}""", alice.AccessToken),
            ("/api/auth/logout", $$"""{"RefreshToken":{{refresh}}}""", alice.AccessToken),
            ("/api/users", """{"username":"eve","password":"password123","role":"player","role":"operator"}""", op.AccessToken),
            ("/api/users", """{"username":"eve","password":"password123","Role":"operator","role":"player"}""", op.AccessToken),
            ("/api/users", """{"username":"eve","password":"password123","role":"player","is_admin":true}""", op.AccessToken),
        };
        var failures = new List<string>();
        foreach (var (path, body, token) in cases)
        {
            using var http = app.Http(token);
            var response = await http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            string text = await response.Content.ReadAsStringAsync();
            string? code = null;
            try { code = JsonDocument.Parse(text).RootElement.GetProperty("code").GetString(); } catch (Exception) { }
            if (response.StatusCode != HttpStatusCode.BadRequest || code != "malformed_request") failures.Add($"{path} {body}: {(int)response.StatusCode} {text[..Math.Min(text.Length, 300)]}");
        }
        Assert.True(failures.Count == 0, "wrong answers:\n" + string.Join("\n", failures));

        using (var asOp = app.Http(op.AccessToken))
            Assert.Equal("[]", (await asOp.GetFromJsonAsync<JsonElement>("/api/users?username=eve")).ToString());
        using (var anyone = app.Http()) // alice's refresh token was neither spent nor revoked: it still rotates once
        {
            var rotated = await anyone.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = alice.RefreshToken });
            Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
        }
    }

    [Fact]
    public async Task ARefusedRequestDoesNotBindItsKey()
    {
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        string key = InvariantTests.NewKey();
        var refused = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "withdrawal", amount = "150.00", currency = "USD" }, key);
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "50.00", currency = "USD" });
        var retried = await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "withdrawal", amount = "150.00", currency = "USD" }, key);
        Assert.Equal("0.00", retried.GetProperty("balance").GetString());
        LedgerAudit.Read(app.DatabasePath).AssertConsistent();
    }

    // ---- the socket ----

    [Fact]
    public async Task BinaryFrameAfterAuthClosesWith4500()
    {
        await using var app = new BalanceApplication(store: Store);
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync(Patience.Long);
        await socket.Socket.SendAsync("""{"type":"pong"}"""u8.ToArray(), WebSocketMessageType.Binary, true, CancellationToken.None);
        Assert.Equal(4500, await socket.ReceiveCloseAsync(Patience.Long));
    }

    [Fact]
    public async Task AFragmentedMessageOver4KiBClosesWith1009()
    {
        await using var app = new BalanceApplication(store: Store);
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync(Patience.Long);
        var chunk = Encoding.UTF8.GetBytes(new string(' ', 1024));
        try
        {
            await socket.Socket.SendAsync("{\"type\":\"auth\",\"access_token\":\""u8.ToArray(), WebSocketMessageType.Text, false, CancellationToken.None);
            for (int i = 0; i < 8; i++) await socket.Socket.SendAsync(chunk, WebSocketMessageType.Text, false, CancellationToken.None);
        }
        catch (Exception ex) when (ex is WebSocketException or IOException) { } // the server may hang up mid-message
        Assert.Equal(1009, await socket.ReceiveCloseAsync(Patience.Long));
    }

    [Fact]
    public async Task InvalidUtf8IsRefusedWithACloseThatSaysStop()
    {
        await using var app = new BalanceApplication(store: Store);
        await using var socket = await app.OpenSocketAsync();
        byte[] bad = [.. "{\"type\":\"auth\",\"access_token\":\""u8, 0xFF, 0xFE, 0xC3, 0x28, .. "\"}"u8];
        await socket.Socket.SendAsync(bad, WebSocketMessageType.Text, true, CancellationToken.None);
        // RFC 6455 8.1: invalid UTF-8 in a text frame fails the connection — a close frame (1007 or our 4500) or a dropped
        // connection are both that; what must not happen is anything else arriving, or the service suffering.
        try
        {
            int code = await socket.ReceiveCloseAsync(Patience.Long);
            Assert.True(code is 1007 or 4500, $"closed with {code}");
        }
        catch (WebSocketException) { Assert.NotEqual(WebSocketState.Open, socket.Socket.State); }
        await AssertStillServesAsync(app);
    }

    [Fact]
    public async Task DeeplyNestedJsonClosesWith4500()
    {
        await using var app = new BalanceApplication(store: Store);
        await using var socket = await app.OpenSocketAsync();
        await socket.SendTextAsync("{\"type\":\"auth\",\"data\":" + new string('[', 1000) + new string(']', 1000) + "}");
        Assert.Equal(4500, await socket.ReceiveCloseAsync(Patience.Long));
        await AssertStillServesAsync(app);
    }

    [Theory]
    [InlineData("""{"type":"subscribe","currency":"USD"}""")]
    [InlineData("""{"type":"balance","user_id":"x","balance":"1000000.00","currency":"USD"}""")]
    [InlineData("""{"type":null}""")]
    [InlineData("""{"type":42}""")]
    [InlineData("\"auth\"")]
    [InlineData("null")]
    public async Task UnknownMessagesOnAnAuthenticatedSocketCloseWith4500AndMoveNothing(string text)
    {
        await using var app = new BalanceApplication(store: Store);
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await socket.ReceiveMessageAsync(Patience.Long);
        await socket.SendTextAsync(text);
        Assert.Equal(4500, await socket.ReceiveCloseAsync(Patience.Long));
        using var mine = app.Http(alice.AccessToken);
        Assert.Equal("100.00", (await mine.GetFromJsonAsync<JsonElement>("/api/balance")).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task AMessageFloodIsClosedWith1008WhileOtherSocketsKeepWorking()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Balance:Socket:MessageBurst"] = "5", ["Balance:Socket:MessagesPerSecond"] = "1" });
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var flooder = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await using var calm = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        await flooder.ReceiveMessageAsync(Patience.Long);
        await calm.ReceiveMessageAsync(Patience.Long);
        try
        {
            for (int i = 0; i < 50; i++) await flooder.SendTextAsync("""{"type":"pong"}""");
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException) { }
        Assert.Equal(1008, await flooder.ReceiveCloseAsync(Patience.Long));
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        Assert.Equal("101.00", (await calm.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task UnauthenticatedSocketsAreCappedPerAddressWith429AndTimedOutWith4002()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Balance:Socket:MaxUnauthenticatedPerIp"] = "4", ["Balance:Socket:AuthTimeout"] = "00:00:08" });
        var alice = await app.LoginAsync("alice");
        var idle = new List<TestSocket>();
        for (int i = 0; i < 4; i++) idle.Add(await app.OpenSocketAsync());

        using (var refused = new ClientWebSocket())
        {
            refused.Options.CollectHttpResponseDetails = true;
            using var cts = new CancellationTokenSource(Patience.Long);
            await Assert.ThrowsAsync<WebSocketException>(() => refused.ConnectAsync(app.SocketUri, cts.Token));
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.HttpStatusCode);
            Assert.True(refused.HttpResponseHeaders?.ContainsKey("Retry-After") == true, "429 without Retry-After");
        }

        // Authenticating frees the slot at once.
        await idle[0].SendAuthAsync(alice.AccessToken);
        Assert.Equal("100.00", (await idle[0].ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
        await using (var next = await app.OpenSocketAsync()) { }

        // The rest never authenticate: the deadline closes them, and then the address may connect again.
        foreach (var socket in idle.Skip(1))
        {
            Assert.Equal(4002, await socket.ReceiveCloseAsync(Patience.Long));
            await socket.DisposeAsync();
        }
        var fresh = new List<TestSocket>();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (fresh.Count < 3)
        {
            try { fresh.Add(await app.OpenSocketAsync()); }
            catch (WebSocketException ex) when (ex.Message.Contains("429") && DateTime.UtcNow < deadline) { await Task.Delay(100); } // the server is still letting go of the closed ones
        }
        await fresh[0].SendAuthAsync(alice.AccessToken);
        Assert.Equal("100.00", (await fresh[0].ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
        foreach (var socket in fresh.Append(idle[0])) await socket.DisposeAsync();
    }

    internal static async Task AssertStillServesAsync(BalanceApplication app)
    {
        var alice = await app.LoginAsync("alice");
        await using var socket = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        Assert.Equal("100.00", (await socket.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
    }
}
