using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Balance.Tests;

// Seeded, bounded fuzzing: random garbage at the REST money route and at the socket, then the service must still serve
// and no balance may have moved except by postings it answered 201.
[Collection("Load")]
public class FuzzTests
{
    /// The engine under test; the same tests run again on PostgreSQL (Postgres/OnPostgres.cs).
    protected virtual Store Store => Store.Sqlite;

    private const int Seed = 1_618_033;

    private static readonly string[] Hostile =
    [
        "", " ", "0", "-1", "1e3", "1.001", "NaN", "99999999999999999999", "\u0000", "\uFEFF1.00", "１", "null", "true", "[]", "{}",
        "USD", "usd", "JPY", "deposit", "rollback", "bet", "' OR 1=1 --", "\"; DROP TABLE ledger; --", "<script>", "%00", "../../etc/passwd",
        new string('9', 400), new string('a', 300), "1.00", "10", "00000000-0000-0000-0000-000000000000",
    ];

    // Any text at all, one to four bytes a character in UTF-8 (so some frames pass 4 KiB), but always valid UTF-8.
    private static string RandomText(Random r, int length)
    {
        var text = new StringBuilder(length);
        for (int i = 0; i < length; i++)
            text.Append(r.Next(4) switch
            {
                0 => ((char)r.Next(0, 0x80)).ToString(),
                1 => ((char)r.Next(0x80, 0x800)).ToString(),
                2 => ((char)r.Next(0x800, 0xD800)).ToString(),
                _ => char.ConvertFromUtf32(r.Next(0x10000, 0x110000)),
            });
        return text.ToString();
    }

    private static string RandomJsonValue(Random r, int depth = 0) => r.Next(depth > 3 ? 6 : 9) switch
    {
        0 => JsonSerializer.Serialize(Hostile[r.Next(Hostile.Length)]),
        1 => r.Next(int.MinValue, int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture),
        2 => (r.NextDouble() * Math.Pow(10, r.Next(-5, 30))).ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        3 => r.Next(2) == 0 ? "true" : "null",
        4 => JsonSerializer.Serialize(new string((char)r.Next(32, 0xD7FF), r.Next(0, 50))),
        5 => JsonSerializer.Serialize(new Guid(Enumerable.Range(0, 16).Select(_ => (byte)r.Next(256)).ToArray()).ToString()),
        6 => "[" + string.Join(",", Enumerable.Range(0, r.Next(4)).Select(_ => RandomJsonValue(r, depth + 1))) + "]",
        7 => "{" + string.Join(",", Enumerable.Range(0, r.Next(4)).Select(i => $"\"k{i}\":" + RandomJsonValue(r, depth + 1))) + "}",
        _ => new string('[', r.Next(10, 300)),
    };

    private static string RandomBody(Random r, string alice, string bet)
    {
        var fields = new Dictionary<string, string>
        {
            ["user_id"] = JsonSerializer.Serialize(alice),
            ["type"] = JsonSerializer.Serialize(new[] { "deposit", "bet", "win", "withdrawal", "rollback" }[r.Next(5)]),
            ["amount"] = JsonSerializer.Serialize("1.00"),
            ["currency"] = JsonSerializer.Serialize("USD"),
            ["reverses"] = JsonSerializer.Serialize(bet),
        };
        switch (r.Next(6))
        {
            case 0: // random bytes
                var bytes = new byte[r.Next(0, 400)];
                r.NextBytes(bytes);
                return Encoding.Latin1.GetString(bytes);
            case 1: // a template with a few fields replaced by anything
                for (int i = r.Next(1, 4); i > 0; i--) fields[fields.Keys.ElementAt(r.Next(fields.Count))] = RandomJsonValue(r);
                break;
            case 2: // a template cut short
                string whole = "{" + string.Join(",", fields.Select(f => $"\"{f.Key}\":{f.Value}")) + "}";
                return whole[..r.Next(whole.Length)];
            case 3: // fields removed and unknown ones added
                foreach (var k in fields.Keys.Where(_ => r.Next(2) == 0).ToList()) fields.Remove(k);
                for (int i = r.Next(1, 4); i > 0; i--) fields[Hostile[r.Next(Hostile.Length)]] = RandomJsonValue(r);
                break;
            case 4: // the same field twice
                string dup = fields.Keys.ElementAt(r.Next(fields.Count));
                return "{" + string.Join(",", fields.Select(f => $"\"{f.Key}\":{f.Value}")) + $",\"{dup}\":{RandomJsonValue(r)}" + "}";
            default: // random JSON
                return RandomJsonValue(r);
        }
        return "{" + string.Join(",", fields.Select(f => $"\"{f.Key}\":{f.Value}")) + "}";
    }

    [Fact]
    public async Task RandomBodiesAndHeadersNeverBreakTheServiceOrMoveUnacknowledgedMoney()
    {
        var r = new Random(Seed);
        await using var app = new BalanceApplication(store: Store);
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        string bet = (await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "1.00", currency = "USD" })).GetProperty("transaction_id").GetString()!;
        var before = LedgerAudit.Read(app.DatabasePath);
        using var http = app.Http(op.AccessToken);
        var accepted = new List<JsonElement>();
        var failures = new List<string>();
        for (int i = 0; i < 400; i++)
        {
            string body = RandomBody(r, alice.UserId, bet);
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/transactions") { Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body)) };
            request.Content.Headers.ContentType = r.Next(10) switch
            {
                0 => new MediaTypeHeaderValue("text/plain"),
                1 => null,
                2 => new MediaTypeHeaderValue("application/json") { CharSet = "latin1" },
                _ => new MediaTypeHeaderValue("application/json"),
            };
            switch (r.Next(6))
            {
                case 0: break; // no key
                case 1: request.Headers.TryAddWithoutValidation("Idempotency-Key", new string('k', r.Next(0, 400))); break;
                case 2: request.Headers.TryAddWithoutValidation("Idempotency-Key", new string(Hostile[r.Next(Hostile.Length)].Where(c => c is >= ' ' and <= '~').ToArray())); break; // HttpClient sends ASCII only
                default: request.Headers.TryAddWithoutValidation("Idempotency-Key", InvariantTests.NewKey()); break;
            }
            HttpResponseMessage response;
            try { response = await http.SendAsync(request); }
            catch (HttpRequestException ex) { failures.Add($"#{i} connection failed {ex.Message}: {body}"); continue; }
            string text = await response.Content.ReadAsStringAsync();
            int status = (int)response.StatusCode;
            if (status is 200 or 201)
            {
                accepted.Add(JsonDocument.Parse(text).RootElement.Clone());
                continue;
            }
            string? code = null;
            try { code = JsonDocument.Parse(text).RootElement.GetProperty("code").GetString(); } catch (Exception) { }
            if (status is < 400 or >= 500 || response.Content.Headers.ContentType?.MediaType != "application/problem+json" || string.IsNullOrEmpty(code))
                failures.Add($"#{i} {status} {response.Content.Headers.ContentType} {text[..Math.Min(200, text.Length)]} for {body[..Math.Min(200, body.Length)]}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));

        // Whatever was accepted is in the ledger exactly as answered; nothing else changed.
        var after = LedgerAudit.Read(app.DatabasePath);
        after.AssertConsistent();
        var fresh = after.Rows.Skip(before.Rows.Count).ToList();
        Assert.Equal(before.Rows, after.Rows.Take(before.Rows.Count));
        Assert.Equal(accepted.Select(a => a.GetProperty("transaction_id").GetString()).Distinct().Order(), fresh.Select(f => f.TransactionId).Order());
        using var mine = app.Http(alice.AccessToken);
        var balance = await mine.GetFromJsonAsync<JsonElement>("/api/balance");
        var usd = after.Wallet(alice.UserId, "USD")!;
        Assert.Equal(Money.Format(usd.Balance, "USD"), balance.GetProperty("balance").GetString());
        if (accepted.Count == 0) Assert.Equal("99.00", balance.GetProperty("balance").GetString());
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task RandomFramesNeverBreakTheSocketServiceOrLeakAnotherPlayersBalance()
    {
        var r = new Random(Seed + 1);
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Balance:Socket:AuthTimeout"] = "00:00:02" });
        var alice = await app.LoginAsync("alice");
        var bob = await app.LoginAsync("bob");
        var op = await app.LoginAsync("operator");
        // The contract's closes for bad input. No 1007: the text frames here are always valid UTF-8, since .NET fails
        // the connection itself on invalid UTF-8 (RFC 6455 8.1; HostileInputTests covers that case on its own).
        int[] allowedCloses = [1008, 1009, 4001, 4002, 4500, 4501, 4503];
        var failures = new List<string>();

        await Task.WhenAll(Enumerable.Range(0, 4).Select(lane => Task.Run(async () =>
        {
            var random = new Random(Seed + 10 + lane);
            for (int n = 0; n < 8; n++)
            {
                bool v2 = random.Next(3) == 0;
                await using var socket = await app.OpenSocketAsync(v2 ? "balance.v2" : null);
                if (random.Next(2) == 0) await socket.SendAuthAsync(bob.AccessToken);
                var frames = new List<string>();
                bool unfinishedText = false;
                try
                {
                    for (int f = random.Next(1, 5); f > 0; f--)
                    {
                        byte[] payload;
                        var type = WebSocketMessageType.Text;
                        switch (random.Next(6))
                        {
                            case 0: payload = Encoding.UTF8.GetBytes(RandomText(random, random.Next(1, 3000))); break;
                            case 1: payload = new byte[random.Next(1, 100)]; random.NextBytes(payload); type = WebSocketMessageType.Binary; break;
                            case 2: payload = Encoding.UTF8.GetBytes(RandomJsonValue(random)); break;
                            case 3: payload = Encoding.UTF8.GetBytes($$"""{"type":"auth","access_token":{{RandomJsonValue(random)}}}"""); break;
                            case 4: payload = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { type = Hostile[random.Next(Hostile.Length)], user_id = alice.UserId, balance = "1000000.00" })); break;
                            default: payload = Encoding.UTF8.GetBytes("""{"type":"pong"}"""); break;
                        }
                        // A frame after an unfinished text message continues that message: keep it text, and valid UTF-8.
                        if (unfinishedText && type == WebSocketMessageType.Binary) (payload, type) = (Encoding.UTF8.GetBytes(RandomText(random, payload.Length)), WebSocketMessageType.Text);
                        bool end = random.Next(8) != 0; // sometimes an unfinished message
                        unfinishedText = !end && type == WebSocketMessageType.Text || (unfinishedText && !end);
                        frames.Add($"{type}:{payload.Length}{(end ? "" : "+")}");
                        using var cts = new CancellationTokenSource(Patience.Long);
                        await socket.Socket.SendAsync(payload, type, end, cts.Token);
                    }
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException) { } // the server hung up first

                // Read what comes until the close or a quiet second: only bob's balances, or v2 control frames.
                try
                {
                    while (true)
                    {
                        JsonElement? message;
                        try { message = await socket.ReceiveAsync(TimeSpan.FromSeconds(2)); }
                        catch (OperationCanceledException) { break; } // still open and quiet: fine
                        if (message is not { } m)
                        {
                            int code = (int)socket.Socket.CloseStatus!.Value;
                            if (!allowedCloses.Contains(code)) lock (failures) failures.Add($"closed {code} after {string.Join(" ", frames)}");
                            break;
                        }
                        string? kind = m.GetProperty("type").GetString();
                        if (kind == "balance" && m.GetProperty("user_id").GetString() != bob.UserId) lock (failures) failures.Add($"foreign balance {m}");
                        else if (kind is not ("balance" or "auth_ok" or "error" or "ping") || (!v2 && kind != "balance")) lock (failures) failures.Add($"unexpected frame {m}");
                    }
                }
                catch (WebSocketException ex)
                {
                    // No close frame: the handler crashed or aborted. Not a clean end, whatever was sent.
                    lock (failures) failures.Add($"connection failed without a close ({ex.WebSocketErrorCode}: {ex.Message}) after {string.Join(" ", frames)}");
                }
            }
        })));
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));

        // Still serving: a fresh socket gets the right balance and live updates; nothing moved.
        await using var check = await app.OpenAuthenticatedSocketAsync(alice.AccessToken);
        Assert.Equal("100.00", (await check.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "win", amount = "1.00", currency = "USD" });
        Assert.Equal("101.00", (await check.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
        var audit = LedgerAudit.Read(app.DatabasePath);
        audit.AssertConsistent();
        Assert.Equal(2, audit.Rows.Count);
    }

    [Fact]
    public async Task RandomForwardedHeadersFromAKnownProxyNeverBreakTheServiceOrItsRules()
    {
        var r = new Random(Seed + 2);
        await using var app = new BalanceApplication(store: Store, settings: new()
        {
            ["ForwardedHeaders:KnownProxies:0"] = "127.0.0.1",
            ["Auth:LoginAttemptsPerMinutePerIp"] = "100000",
            ["Auth:FailedLoginsPerUsername"] = "100000",
        });
        var bob = await app.LoginAsync("bob");
        string[] values =
        [
            .. Hostile, "203.0.113.5", "2001:db8::1", "[2001:db8::1]:443", "203.0.113.5:8080", "unknown", "_hidden", "203.0.113.5, 198.51.100.1",
            new string(',', 500), "127.0.0.1, 127.0.0.1, 127.0.0.1", "http", "https", "HTTPS", "ftp", "evil.example:99999", "casino.example", "a b c",
        ];
        string[] names = ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix", "Forwarded", "X-Real-IP"];
        using var http = app.Http();
        var failures = new List<string>();
        for (int i = 0; i < 300; i++)
        {
            var headers = Enumerable.Range(0, r.Next(1, 4)).Select(_ => (names[r.Next(names.Length)], values[r.Next(values.Length)]))
                .Where(h => h.Item2.All(c => c is >= ' ' and <= '~')).ToList(); // what HTTP/1.1 clients can send at all
            int kind = r.Next(4);
            if (kind == 3)
            {
                using var ws = new ClientWebSocket();
                ws.Options.CollectHttpResponseDetails = true;
                try
                {
                    foreach (var (name, value) in headers) ws.Options.SetRequestHeader(name, value);
                    using var cts = new CancellationTokenSource(BalanceApplication.ReceiveTimeout);
                    await ws.ConnectAsync(app.SocketUri, cts.Token);
                }
                catch (ArgumentException) { continue; } // a value the client itself will not send
                catch (WebSocketException) { }
                if ((int)ws.HttpStatusCode >= 500) failures.Add($"socket {(int)ws.HttpStatusCode} with {string.Join("; ", headers)}");
                ws.Abort();
                continue;
            }
            using var request = kind switch
            {
                0 => new HttpRequestMessage(HttpMethod.Post, "/api/auth/login") { Content = JsonContent.Create(new { username = "bob", password = r.Next(2) == 0 ? "demo1234" : "wrong-password" }) },
                1 => new HttpRequestMessage(HttpMethod.Get, "/api/balance") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", bob.AccessToken) } },
                _ => new HttpRequestMessage(HttpMethod.Get, r.Next(2) == 0 ? "/healthz" : "/metrics"),
            };
            if (!headers.All(h => request.Headers.TryAddWithoutValidation(h.Item1, h.Item2))) continue;
            var response = await http.SendAsync(request);
            if ((int)response.StatusCode >= 500) failures.Add($"{request.RequestUri} {(int)response.StatusCode} with {string.Join("; ", headers)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));

        // Still serving, with its rules: the box itself reads /metrics, a forwarded remote client does not.
        using (var local = app.Http()) Assert.Equal(HttpStatusCode.OK, (await local.GetAsync("/metrics")).StatusCode);
        using var remote = new HttpRequestMessage(HttpMethod.Get, "/metrics") { Headers = { { "X-Forwarded-For", "203.0.113.77" } } };
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(remote)).StatusCode);
        await using var check = await app.OpenAuthenticatedSocketAsync(bob.AccessToken);
        Assert.Equal("0.00", (await check.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
    }
}
