using System.Security.Claims;
using Balance.Auth;
using Balance.Postings;
using Balance.Sockets;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Balance.Api;

public sealed record TransactionBody(Guid? UserId, string? Type, string? Amount, string? Currency, string? Reference, string? Reverses);
public sealed record TransactionPage(IReadOnlyList<TransactionResult> Items, string? NextBefore);

// The REST face of the ledger: balances and history for players, postings for operators.
public static class LedgerApi
{
    public static IEndpointRouteBuilder MapLedgerApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Ledger")
            .ProducesProblems("The database is unavailable (locked, full disk); nothing was changed.", ProblemCodes.Unavailable);
        api.MapGet("/balance", GetBalanceAsync).RequireAuthorization(Roles.Player)
            .WithSummary("The caller's balance in one currency")
            .WithDescription("The same JSON as the socket's balance message. `ETag` is the wallet's version: send it back as `If-None-Match` to poll cheaply.")
            .WithRequestHeader("If-None-Match", "An ETag from an earlier answer; an unchanged wallet answers 304 with no body.", "\"7\"")
            .WithResponseHeader(200, "ETag", "The wallet's version, quoted.", "\"7\"")
            .ProducesEmpty(304, "The wallet has not changed since the ETag in If-None-Match.")
            .WithResponseHeader(304, "ETag", "The wallet's version, quoted.", "\"7\"")
            .ProducesProblems("Unknown currency.", ProblemCodes.ValidationFailed);
        api.MapGet("/balances", GetBalancesAsync).RequireAuthorization(Roles.Player)
            .WithSummary("Every wallet of the caller");
        api.MapGet("/transactions", GetTransactionsAsync).RequireAuthorization()
            .WithSummary("Ledger entries, newest first")
            .WithDescription("A player reads their own; an operator reads any player's (`user_id`) or everyone's. Page with `before` = the last page's `next_before`.")
            .ProducesProblems("limit out of 1-200, or before names no transaction of this history.", ProblemCodes.ValidationFailed)
            .ProducesProblems("limit or user_id of the wrong type.", ProblemCodes.MalformedRequest)
            .ProducesProblems("A player asked for another player's transactions.", ProblemCodes.Forbidden);
        api.MapPost("/transactions", PostTransactionAsync).RequireAuthorization(Roles.Operator)
            .WithSummary("Post one transaction")
            .WithDescription("Committed durably before the answer; the new balance reaches the player's sockets right after. A refused request (4xx) writes nothing.")
            .WithResponseHeader(201, "Location", "Names the new transaction by its id (no route serves it; read it back with GET /api/transactions).", "/api/transactions/0193f1a2-7c4e-7b10-9a3d-5e2f8c1d4b6a")
            .WithResponseHeader(201, "Idempotent-Replayed", "`true` when this is the first answer to this Idempotency-Key again; absent on the first.", "true")
            .WithRequestExample("deposit", "A deposit", new { user_id = "0b7e4d1c-6f1a-4d43-9a40-2f5a2b1f4c11", type = "deposit", amount = "25.50", currency = "USD", reference = "cashier-42" })
            .WithRequestExample("bet", "A bet", new { user_id = "0b7e4d1c-6f1a-4d43-9a40-2f5a2b1f4c11", type = "bet", amount = "10.00", currency = "USD", reference = "round-8812" })
            .WithRequestExample("rollback", "Undo a bet", new { type = "rollback", reverses = "0193f1a2-7c4e-7b10-9a3d-5e2f8c1d4b6a" })
            .ProducesProblems("A field is missing or wrong (amount, currency, type, Idempotency-Key, ...).", ProblemCodes.ValidationFailed)
            .ProducesProblems("No such user, or no such transaction to roll back.", ProblemCodes.UserNotFound, ProblemCodes.TransactionNotFound)
            .ProducesProblems("Not enough money (the body holds the balance), the key was used with another body, the bet is already rolled back, or a race: retry with the same key.",
                ProblemCodes.InsufficientFunds, ProblemCodes.IdempotencyConflict, ProblemCodes.AlreadyReversed, ProblemCodes.Conflict)
            .ProducesProblems("The posting cannot apply: rolling back a non-bet, another owner's bet, a non-player's wallet, or a balance overflow.",
                ProblemCodes.NotReversible, ProblemCodes.UserMismatch, ProblemCodes.NotAPlayer, ProblemCodes.BalanceOverflow);
        return app;
    }

    private static async Task<Results<Ok<BalanceMessage>, StatusCodeHttpResult, ValidationProblem>> GetBalanceAsync(
        string? currency, ClaimsPrincipal user, Ledger ledger, HttpContext http, CancellationToken ct)
    {
        currency ??= Money.DefaultCurrency;
        if (!Money.IsKnownCurrency(currency)) return Problems.Validation("currency", $"Unknown currency '{currency}'.");
        var wallets = await ledger.WalletsAsync(user.UserId(), ct);
        var wallet = wallets.FirstOrDefault(w => w.Currency == currency) ?? new BalanceChange(user.UserId(), currency, 0, 0, null, null, null);
        string etag = $"\"{wallet.Version}\"";
        http.Response.Headers.ETag = etag;
        http.Response.Headers.CacheControl = "no-cache";
        if (http.Request.Headers.IfNoneMatch.Any(v => v is not null && v.Split(',').Any(t => t.Trim() == etag || t.Trim() == "*")))
            return TypedResults.StatusCode(StatusCodes.Status304NotModified);
        return TypedResults.Ok(BalanceMessage.From(wallet));
    }

    private static async Task<Ok<BalanceMessage[]>> GetBalancesAsync(ClaimsPrincipal user, Ledger ledger, CancellationToken ct) =>
        TypedResults.Ok((await ledger.WalletsAsync(user.UserId(), ct)).Select(BalanceMessage.From).ToArray());

    private static async Task<Results<Ok<TransactionPage>, ValidationProblem, ProblemHttpResult>> GetTransactionsAsync(
        ClaimsPrincipal user, Ledger ledger, CancellationToken ct, int? limit, string? before, [FromQuery(Name = "user_id")] Guid? userId)
    {
        if (limit is < 1 or > 200) return Problems.Validation("limit", "limit must be between 1 and 200.");
        if (!user.IsInRole(Roles.Operator))
        {
            if (userId is { } asked && asked != user.UserId())
                return Problems.Create(ProblemCodes.Forbidden, "A player may read only their own transactions.");
            userId = user.UserId();
        }
        var page = await ledger.HistoryAsync(userId, limit ?? 50, before, ct);
        if (page is null) return Problems.Validation("before", $"No transaction {before} in this history.");
        return TypedResults.Ok(new TransactionPage(page.Value.Items, page.Value.NextBefore));
    }

    private static async Task<Results<Created<TransactionResult>, ValidationProblem, ProblemHttpResult>> PostTransactionAsync(
        TransactionBody body, [FromHeader(Name = "Idempotency-Key")] string? idempotencyKey, ClaimsPrincipal user, Ledger ledger, HttpContext http)
    {
        var (posting, errors) = Validate(body, idempotencyKey, user.UserId());
        if (posting is null) return Problems.Validation(errors);
        var outcome = await ledger.PostAsync(posting);
        switch (outcome)
        {
            case PostOutcome.Committed { Replayed: true } replay:
                http.Response.Headers["Idempotent-Replayed"] = "true";
                return TypedResults.Created($"/api/transactions/{replay.Result.TransactionId}", replay.Result);
            case PostOutcome.Committed committed:
                return TypedResults.Created($"/api/transactions/{committed.Result.TransactionId}", committed.Result);
            case PostOutcome.InsufficientFunds funds:
                return Problems.Create(ProblemCodes.InsufficientFunds, ProblemCodes.InsufficientFunds.Text(),
                    new Dictionary<string, object?> { ["balance"] = funds.Balance, ["currency"] = funds.Currency });
            case PostOutcome.IdempotencyConflict:
                return ProblemCodes.IdempotencyConflict.Problem();
            case PostOutcome.AlreadyReversed reversed:
                return ProblemCodes.AlreadyReversed.Problem(reversed.TransactionId);
            case PostOutcome.Refused refused:
                return Problems.Create(ProblemCodes.ForRefusal(refused.Kind), refused.Detail);
            default:
                throw new InvalidOperationException($"Unhandled outcome {outcome}");
        }
    }

    // Text the ledger stores and the audit log writes: no control characters (a newline would forge a second audit line,
    // a NUL is refused by PostgreSQL) and only whole characters (an unpaired surrogate cannot be written as UTF-8).
    public static bool IsPlainText(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c < '\u0020' || c == '\u007f') return false;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (char.IsSurrogate(c)) return false;
        }
        return true;
    }

    public static (Posting?, Dictionary<string, string[]>) Validate(TransactionBody body, string? idempotencyKey, Guid postedBy)
    {
        var errors = new Dictionary<string, string[]>();
        if (string.IsNullOrEmpty(idempotencyKey) || idempotencyKey.Length > 255)
            errors["Idempotency-Key"] = ["The Idempotency-Key header is required: 1-255 characters, unique per intended transaction."];
        else if (!IsPlainText(idempotencyKey))
            errors["Idempotency-Key"] = ["The Idempotency-Key may not hold control characters (U+0000-U+001F, U+007F)."];
        if (!TxTypes.IsKnown(body.Type))
            errors["type"] = ["type must be one of deposit, withdrawal, bet, win, rollback."];
        if (body.Reference is { Length: > 255 })
            errors["reference"] = ["reference is at most 255 characters."];
        else if (body.Reference is not null && !IsPlainText(body.Reference))
            errors["reference"] = ["reference may not hold control characters (U+0000-U+001F, U+007F) or unpaired surrogates."];
        long amount = 0;
        if (body.Type == TxTypes.Rollback)
        {
            if (string.IsNullOrEmpty(body.Reverses) || !Guid.TryParse(body.Reverses, out _))
                errors["reverses"] = ["A rollback names the bet it undoes: reverses = its transaction_id."];
            if (body.Amount is not null || body.Currency is not null)
                errors["amount"] = ["A rollback takes its amount and currency from the bet; leave them out."];
        }
        else
        {
            if (body.UserId is null) errors["user_id"] = ["user_id is required."];
            if (body.Reverses is not null) errors["reverses"] = ["Only a rollback reverses a transaction."];
            if (!Money.IsKnownCurrency(body.Currency))
                errors["currency"] = [$"currency must be one of {string.Join(", ", Money.Decimals.Keys)}."];
            else if (body.Amount is null)
                errors["amount"] = ["amount is required, as a decimal string such as \"10.00\"."];
            else if (Money.TryParse(body.Amount, body.Currency!, out string? error) is { } minor)
                amount = minor;
            else
                errors["amount"] = [error!];
        }
        if (errors.Count > 0) return (null, errors);
        return (new Posting(body.UserId, body.Type!, amount, body.Currency, body.Reference, body.Reverses?.ToLowerInvariant(), postedBy, idempotencyKey!), errors);
    }
}
