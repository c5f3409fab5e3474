using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Balance.Tests;

public partial class SecurityTests
{
    // ---- logins ----

    [Fact]
    public async Task LogoutClosesOnlyThatLoginsSocketsAndEndsItsTokens()
    {
        await using var app = new BalanceApplication(store: Store);
        var phone = await app.LoginAsync("alice");
        var laptop = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        await using var phoneTab1 = await app.OpenAuthenticatedSocketAsync(phone.AccessToken);
        await using var phoneTab2 = await app.OpenSocketAsync(bearer: phone.AccessToken);
        await using var laptopTab = await app.OpenAuthenticatedSocketAsync(laptop.AccessToken);
        foreach (var s in new[] { phoneTab1, phoneTab2, laptopTab }) await s.ReceiveMessageAsync(Patience.Long);

        using (var http = app.Http(phone.AccessToken))
            Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = phone.RefreshToken })).StatusCode);
        Assert.Equal(4503, await phoneTab1.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(4503, await phoneTab2.ReceiveCloseAsync(Patience.Long));

        using (var http = app.Http(phone.AccessToken))
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/balance")).StatusCode);
        using (var http = app.Http())
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = phone.RefreshToken })).StatusCode);
        await using (var reopened = await app.OpenAuthenticatedSocketAsync(phone.AccessToken))
            Assert.Equal(4503, await reopened.ReceiveCloseAsync(Patience.Long));

        await app.PostOkAsync(op.AccessToken, new { user_id = phone.UserId, type = "win", amount = "2.00", currency = "USD" });
        Assert.Equal("102.00", (await laptopTab.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task RefreshTokenReuseEndsTheWholeLoginAndClosesItsSockets()
    {
        // No grace: any second use of a spent token is reuse (the grace has tests of its own in SessionTests).
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:RefreshReuseGrace"] = "00:00:00" });
        var stolen = await app.LoginAsync("alice");
        var other = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        using var anonymous = app.Http();
        var refreshed = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = stolen.RefreshToken });
        Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
        var pair = await refreshed.Content.ReadFromJsonAsync<JsonElement>();
        string access2 = pair.GetProperty("access_token").GetString()!, refresh2 = pair.GetProperty("refresh_token").GetString()!;
        Assert.NotEqual(stolen.RefreshToken, refresh2);

        await using var oldTab = await app.OpenAuthenticatedSocketAsync(stolen.AccessToken);
        await using var newTab = await app.OpenAuthenticatedSocketAsync(access2);
        await using var otherTab = await app.OpenAuthenticatedSocketAsync(other.AccessToken);
        foreach (var s in new[] { oldTab, newTab, otherTab }) await s.ReceiveMessageAsync(Patience.Long);

        var reuse = await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = stolen.RefreshToken });
        Assert.Equal(HttpStatusCode.Unauthorized, reuse.StatusCode);
        Assert.Equal("refresh_token_reused", (await reuse.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        Assert.Equal(4503, await oldTab.ReceiveCloseAsync(Patience.Long));
        Assert.Equal(4503, await newTab.ReceiveCloseAsync(Patience.Long));

        // Every token of that login is dead; the other login is untouched.
        using (var http = app.Http(access2)) Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/balance")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = refresh2 })).StatusCode);
        using (var http = app.Http(other.AccessToken)) Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/balance")).StatusCode);
        await app.PostOkAsync(op.AccessToken, new { user_id = other.UserId, type = "win", amount = "3.00", currency = "USD" });
        Assert.Equal("103.00", (await otherTab.ReceiveMessageAsync(Patience.Long)).GetProperty("balance").GetString());
    }

    [Fact]
    public async Task LoginAttemptsAreLimitedPerAddressWith429AndRetryAfter()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:LoginAttemptsPerMinutePerIp"] = "6" });
        using var http = app.Http();
        for (int i = 0; i < 6; i++)
        {
            var response = await http.PostAsJsonAsync("/api/auth/login", new { username = i % 2 == 0 ? "alice" : $"nobody{i}", password = i % 2 == 0 ? "demo1234" : "wrong-password" });
            Assert.NotEqual(HttpStatusCode.TooManyRequests, response.StatusCode);
        }
        var limited = await http.PostAsJsonAsync("/api/auth/login", new { username = "bob", password = "demo1234" });
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.True(limited.Headers.RetryAfter?.Delta is { } wait && wait >= TimeSpan.FromSeconds(1) && wait <= TimeSpan.FromMinutes(1), $"Retry-After {limited.Headers.RetryAfter}");
        Assert.Equal("application/problem+json", limited.Content.Headers.ContentType?.MediaType);
        Assert.Equal("too_many_attempts", (await limited.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        Assert.False(await limited.Content.ReadAsStringAsync() is var body && body.Contains("access_token"), "a limited login must not log in");
    }

    [Fact]
    public async Task FailedLoginsAreLimitedPerUsernameAlikeForRealAndUnknownUsers()
    {
        await using var app = new BalanceApplication(store: Store, settings: new() { ["Auth:FailedLoginsPerUsername"] = "3", ["Auth:LoginAttemptsPerMinutePerIp"] = "1000" });
        using var http = app.Http();
        foreach (string username in new[] { "alice", "ghost" })
        {
            for (int i = 0; i < 3; i++)
                Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username, password = "wrong-password" })).StatusCode);
            // Now even the right password waits: guessing stops here.
            var limited = await http.PostAsJsonAsync("/api/auth/login", new { username, password = "demo1234" });
            Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
            Assert.True(limited.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After {limited.Headers.RetryAfter}");
            Assert.Equal("too_many_attempts", (await limited.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        }
        // Other accounts are unaffected.
        await app.LoginAsync("bob");
    }

    [Fact]
    public async Task UnknownUserAndWrongPasswordGetTheSameAnswer()
    {
        await using var app = new BalanceApplication(store: Store);
        using var http = app.Http();
        async Task<string> Answer(object body)
        {
            var response = await http.PostAsJsonAsync("/api/auth/login", body);
            var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
            json.Remove("traceId");
            json.Remove("trace_id");
            return $"{(int)response.StatusCode} {response.Content.Headers.ContentType} {string.Join(",", response.Headers.Select(h => h.Key).Order())} {json.ToJsonString()}";
        }
        string wrongPassword = await Answer(new { username = "alice", password = "wrong-password" });
        Assert.StartsWith("401 application/problem+json", wrongPassword);
        Assert.Contains("invalid_credentials", wrongPassword);
        Assert.Equal(wrongPassword, await Answer(new { username = "no-such-user", password = "wrong-password" }));
        Assert.Equal(wrongPassword, await Answer(new { username = "ALICE", password = "wrong-password" }));
        Assert.Equal(wrongPassword, await Answer(new { username = "alice", password = "" }));
    }

    [Fact]
    public async Task NoTokenOrPasswordReachesAnyLogLine()
    {
        var logs = new CapturingLoggerProvider();
        // Every category at Trace: the ones appsettings.json names (which would otherwise keep theirs, being more
        // specific), and through a rule for this provider alone, which outranks every category rule, any other.
        var settings = new Dictionary<string, string?> { ["Logging:LogLevel:Default"] = "Trace" };
        foreach (var category in new ConfigurationBuilder().AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json")).Build()
                     .GetSection("Logging:LogLevel").GetChildren())
            settings[$"Logging:LogLevel:{category.Key}"] = "Trace";
        await using var app = new BalanceApplication(settings, store: Store)
        {
            ConfigureTestServices = services => services.AddSingleton<ILoggerProvider>(logs).Configure<LoggerFilterOptions>(o =>
                o.Rules.Add(new LoggerFilterRule(typeof(CapturingLoggerProvider).FullName, null, LogLevel.Trace, null))),
        };
        const string password = "Sup3r-Secret-Passw0rd", wrong = "Wr0ng-Guess-Passw0rd";
        var op = await app.LoginAsync("operator");
        using (var http = app.Http(op.AccessToken))
            Assert.Equal(HttpStatusCode.Created, (await http.PostAsJsonAsync("/api/users", new { username = "carol", password, role = "player" })).StatusCode);
        var carol = await app.LoginAsync("carol", password);
        using (var http = app.Http())
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username = "carol", password = wrong })).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username = "nobody", password = wrong })).StatusCode);
        }
        using var anonymous = app.Http();
        var pair = await (await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = carol.RefreshToken })).Content.ReadFromJsonAsync<JsonElement>();
        string access2 = pair.GetProperty("access_token").GetString()!, refresh2 = pair.GetProperty("refresh_token").GetString()!;
        await using (var socket = await app.OpenAuthenticatedSocketAsync(access2))
        {
            await socket.ReceiveMessageAsync(Patience.Long);
            await app.PostOkAsync(op.AccessToken, new { user_id = carol.UserId, type = "deposit", amount = "10.00", currency = "USD" });
            await socket.ReceiveMessageAsync(Patience.Long);
        }
        await using (var socket = await app.OpenSocketAsync(bearer: access2)) await socket.ReceiveMessageAsync(Patience.Long);
        await using (var socket = await app.OpenAuthenticatedSocketAsync(carol.AccessToken[..^4] + "AAAA")) await socket.ReceiveCloseAsync(Patience.Long);
        using (var http = app.Http(access2)) await http.GetAsync("/api/balance");
        using (var http = app.Http(carol.AccessToken[..^4] + "AAAA")) await http.GetAsync("/api/balance");
        await anonymous.PostAsJsonAsync("/api/auth/refresh", new { refresh_token = carol.RefreshToken }); // reuse
        var last = await app.LoginAsync("carol", password);
        using (var http = app.Http(last.AccessToken)) await http.PostAsJsonAsync("/api/auth/logout", new { refresh_token = last.RefreshToken });
        await app.DisposeAsync(); // flush everything the service had to say

        var lines = logs.Lines.ToList();
        Assert.Contains(lines, l => l.Contains("Committed deposit")); // the capture works
        Assert.Contains(lines, l => l.Contains("Failed login"));
        // The categories appsettings.json turns down or off are heard too, down to Trace.
        Assert.Contains(lines, l => l.Contains(" Microsoft.AspNetCore.Hosting.Diagnostics: "));
        Assert.Contains(lines, l => l.StartsWith("Trace Microsoft.AspNetCore.", StringComparison.Ordinal));
        var secrets = new Dictionary<string, string>
        {
            ["password"] = password, ["wrong password"] = wrong, ["demo password"] = "demo1234",
            ["refresh token 1"] = carol.RefreshToken, ["refresh token 2"] = refresh2, ["refresh token 3"] = last.RefreshToken, ["operator refresh token"] = op.RefreshToken,
        };
        foreach (var (name, token) in new[] { ("access token 1", carol.AccessToken), ("access token 2", access2), ("access token 3", last.AccessToken), ("operator access token", op.AccessToken) })
        {
            secrets[name + " signature"] = token.Split('.')[2];
            secrets[name + " payload"] = token.Split('.')[1];
        }
        var leaks = (from line in lines from secret in secrets where line.Contains(secret.Value, StringComparison.Ordinal) select $"{secret.Key} in: {line}").ToList();
        Assert.True(leaks.Count == 0, string.Join("\n", leaks.Take(10)));
    }
}
