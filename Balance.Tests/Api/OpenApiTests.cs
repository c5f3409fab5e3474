using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace Balance.Tests;

// The npm tools (tsc, Redocly) take a core for many seconds: alone, after the parallel tests, so they do not
// stretch the timing of socket tests running beside them.
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ToolsCollection
{
    public const string Name = "Tools";
}

[Collection(ToolsCollection.Name)]
public sealed class OpenApiTests(ITestOutputHelper output)
{
    // An integrator's whole path: lint the served document, generate a typed client, compile a program
    // against it, run it against the service. The program checks every answer against the document too.
    [Fact]
    public async Task AClientGeneratedFromTheDocumentCompilesAndEveryAnswerItGetsIsDocumented()
    {
        await using var app = new BalanceApplication();
        string tools = Tools.Root;
        string outDir = Path.Combine(tools, "out");
        if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        Directory.CreateDirectory(outDir);
        using (var http = app.Http())
            await File.WriteAllTextAsync(Path.Combine(outDir, "openapi.json"), await http.GetStringAsync("/openapi/v1.json"));

        var lint = await Tools.RunAsync(output, "node_modules/.bin/redocly", "lint", "out/openapi.json", "--format=json");
        Assert.True(lint.ExitCode == 0, lint.Output);
        var totals = JsonDocument.Parse(lint.Stdout).RootElement.GetProperty("totals");
        Assert.Equal((0, 0), (totals.GetProperty("errors").GetInt32(), totals.GetProperty("warnings").GetInt32()));

        var generate = await Tools.RunAsync(output, "node_modules/.bin/openapi-typescript", "out/openapi.json", "-o", "out/balance.d.ts");
        Assert.True(generate.ExitCode == 0, generate.Output);
        var compile = await Tools.RunAsync(output, "node_modules/.bin/tsc", "-p", ".");
        Assert.True(compile.ExitCode == 0, compile.Output);

        var run = await Tools.RunAsync(output, "node", "out/js/client/integrator.js", app.BaseAddress.ToString().TrimEnd('/'), "out/openapi.json");
        Assert.True(run.ExitCode == 0, run.Output);
        var steps = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        string Step(JsonElement s) => $"{s.GetProperty("step").GetString()} {s.GetProperty("status").GetInt32()}"
            + (s.TryGetProperty("code", out var code) && code.ValueKind == JsonValueKind.String ? $" {code.GetString()}" : "");
        Assert.Equal(
        [
            "login_wrong_password 401 invalid_credentials", "login_operator 200", "create_player 201", "create_player_again 409 username_taken",
            "deposit 201", "deposit_replayed 201", "key_reused_with_another_body 409 idempotency_conflict", "bet_over_balance 409 insufficient_funds",
            "bet 201", "rollback 201", "rollback_again 409 already_reversed", "rollback_of_a_deposit 422 not_reversible",
            "rollback_naming_another_owner 422 user_mismatch", "rollback_of_no_transaction 404 transaction_not_found",
            "deposit_to_an_operator 422 not_a_player", "deposit_to_unknown_user 404 user_not_found", "amount_with_three_decimals 400 validation_failed", "body_over_64_kib 413 payload_too_large",
            "body_as_text_plain 415 unsupported_media_type", "balance 200", "balance_unchanged 304", "balance_unknown_currency 400 validation_failed",
            "balances 200", "history_page 200", "history_last_page 200", "history_limit_too_large 400 validation_failed", "history_of_someone_else 403 forbidden", "player_posts 403 forbidden",
            "player_looks_up_users 403 forbidden", "no_token 401 unauthorized", "find_player 200", "operator_reads_history 200", "ops_nodes 200", "player_reads_ops 403 forbidden", "refresh 200",
            "refresh_reused 401 refresh_token_reused", "refresh_after_reuse 401 session_revoked", "logout 204", "after_logout 401 unauthorized",
            "failed_logins_throttled 429 too_many_attempts",
        ], steps.Select(Step));

        // What the program did is in the ledger: the money moved exactly as it was told, once per key.
        var op = await app.LoginAsync("operator");
        using var opHttp = app.Http(op.AccessToken);
        string player = steps.Single(s => s.GetProperty("step").GetString() == "create_player").GetProperty("user_id").GetString()!;
        var history = await opHttp.GetFromJsonAsync<JsonElement>($"/api/transactions?user_id={player}");
        Assert.Equal([("rollback", "25.50"), ("bet", "15.50"), ("deposit", "25.50")], history.GetProperty("items").EnumerateArray()
            .Select(t => (t.GetProperty("type").GetString(), t.GetProperty("balance").GetString())));
    }

    // The document's promises, one by one: the bearer scheme, only the statuses each route gives (a POST /api/transactions never gives 200), and every problem.
    [Fact]
    public async Task TheDocumentDeclaresBearerAndRolesAndExactlyTheResponsesEachRouteGives()
    {
        await using var app = new BalanceApplication();
        using var http = app.Http();
        var doc = await http.GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var scheme = doc.GetProperty("components").GetProperty("securitySchemes").GetProperty("bearer");
        Assert.Equal(("http", "bearer", "JWT"), (scheme.GetProperty("type").GetString(), scheme.GetProperty("scheme").GetString(), scheme.GetProperty("bearerFormat").GetString()));

        JsonElement Op(string path, string method) => doc.GetProperty("paths").GetProperty(path).GetProperty(method);
        string[] Statuses(JsonElement op) => [.. op.GetProperty("responses").EnumerateObject().Select(r => r.Name)];
        string[] Codes(JsonElement op, string status) =>
            [.. op.GetProperty("responses").GetProperty(status).GetProperty("content").GetProperty("application/problem+json").GetProperty("schema")
                .GetProperty("allOf")[1].GetProperty("properties").GetProperty("code").GetProperty("enum").EnumerateArray().Select(c => c.GetString()!)];
        string[] Roles(JsonElement op) => op.TryGetProperty("x-roles", out var roles) ? [.. roles.EnumerateArray().Select(r => r.GetString()!)] : [];

        var post = Op("/api/transactions", "post");
        Assert.Equal(["201", "400", "401", "403", "404", "409", "413", "415", "422", "503"], Statuses(post));
        Assert.Equal(["insufficient_funds", "idempotency_conflict", "already_reversed", "conflict"], Codes(post, "409"));
        Assert.Equal(["validation_failed", "malformed_request"], Codes(post, "400"));
        // Every refusal of the ledger is declared on the route that posts: a new Refusal fails here until its code is
        // in the route's ProducesProblems (Api/LedgerApi.cs).
        foreach (var kind in Enum.GetValues<Balance.Postings.Refusal>())
        {
            var row = ProblemCodes.ForRefusal(kind);
            Assert.Contains(row.Code, Codes(post, row.Status.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        Assert.Equal(["operator"], Roles(post));
        Assert.True(post.GetProperty("responses").GetProperty("201").GetProperty("headers").TryGetProperty("Idempotent-Replayed", out _));
        Assert.True(post.GetProperty("responses").GetProperty("503").GetProperty("headers").TryGetProperty("Retry-After", out _));
        var key = post.GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "Idempotency-Key");
        Assert.True(key.GetProperty("required").GetBoolean());
        Assert.Equal(["deposit", "bet", "rollback"], post.GetProperty("requestBody").GetProperty("content").GetProperty("application/json")
            .GetProperty("examples").EnumerateObject().Select(e => e.Name));

        var balance = Op("/api/balance", "get");
        Assert.Equal(["200", "304", "400", "401", "403", "503"], Statuses(balance));
        Assert.Equal(["player"], Roles(balance));
        Assert.True(balance.GetProperty("responses").GetProperty("304").GetProperty("headers").TryGetProperty("ETag", out _));
        Assert.Contains(balance.GetProperty("parameters").EnumerateArray(), p => p.GetProperty("name").GetString() == "If-None-Match");
        Assert.Equal(["player", "operator"], Roles(Op("/api/transactions", "get")));
        Assert.Equal(["operator"], Roles(Op("/api/users", "post")));
        Assert.Equal(["operator"], Roles(Op("/api/ops/nodes", "get")));

        // Anonymous routes say so, instead of inheriting a requirement they do not have.
        var login = Op("/api/auth/login", "post");
        Assert.Equal(0, login.GetProperty("security").GetArrayLength());
        Assert.Equal(["200", "400", "401", "403", "413", "415", "429", "503"], Statuses(login));
        Assert.Equal(["invalid_credentials"], Codes(login, "401"));
        Assert.True(Op("/api/auth/logout", "post").GetProperty("security")[0].TryGetProperty("bearer", out _));
    }

    // The one documented answer a healthy service never gives by itself: a database that cannot take the write.
    [Fact]
    public async Task ALockedDatabaseAnswersTheDocumented503WithRetryAfter()
    {
        await using var app = new BalanceApplication();
        var op = await app.LoginAsync("operator");
        var alice = await app.LoginAsync("alice");
        using var http = app.Http();
        var doc = await http.GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var documented = doc.GetProperty("paths").GetProperty("/api/transactions").GetProperty("post").GetProperty("responses").GetProperty("503");

        HttpResponseMessage response;
        await using (var locker = new SqliteConnection($"Data Source={app.DatabasePath};Pooling=False"))
        {
            await locker.OpenAsync();
            using (var cmd = locker.CreateCommand()) { cmd.CommandText = "BEGIN IMMEDIATE"; await cmd.ExecuteNonQueryAsync(); }
            response = await app.PostTransactionAsync(op.AccessToken, new { user_id = alice.UserId, type = "deposit", amount = "5.00", currency = "USD" });
        }
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(documented.GetProperty("content").TryGetProperty("application/problem+json", out _));
        string code = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString()!;
        Assert.Equal("unavailable", code);
        Assert.Contains(code, documented.GetProperty("content").GetProperty("application/problem+json").GetProperty("schema")
            .GetProperty("allOf")[1].GetProperty("properties").GetProperty("code").GetProperty("enum").EnumerateArray().Select(c => c.GetString()));
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.True(documented.GetProperty("headers").TryGetProperty("Retry-After", out _));
    }
}

// Balance.Tests/tools: the npm tools and the integrator program (installed by test.sh from the lock file).
public static class Tools
{
    public static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (string candidate in new[] { Path.Combine(dir.FullName, "tools"), Path.Combine(dir.FullName, "Balance.Tests", "tools") })
                if (File.Exists(Path.Combine(candidate, "package.json")) && File.Exists(Path.Combine(candidate, "tsconfig.json")))
                    return candidate;
        }
        throw new InvalidOperationException("Balance.Tests/tools not found above " + AppContext.BaseDirectory);
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string Output => $"exit {ExitCode}\n{Stdout}\n{Stderr}";
    }

    public static async Task<Result> RunAsync(ITestOutputHelper output, string file, params string[] args)
    {
        if (!Directory.Exists(Path.Combine(Root, "node_modules")))
            throw new InvalidOperationException($"{Root}/node_modules is missing: run ./test.sh (it runs npm ci there)");
        var info = new ProcessStartInfo(file.StartsWith("node_modules", StringComparison.Ordinal) ? Path.Combine(Root, file) : file)
        {
            WorkingDirectory = Root, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        info.Environment["REDOCLY_TELEMETRY"] = "off";
        info.Environment["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3)); // tsc takes seconds; this bounds a hung one
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { process.Kill(entireProcessTree: true); throw new TimeoutException($"{file} {string.Join(' ', args)} ran over 3 minutes"); }
        var result = new Result(process.ExitCode, await stdout, await stderr);
        output.WriteLine($"$ {file} {string.Join(' ', args)}\n{result.Output}");
        return result;
    }
}
