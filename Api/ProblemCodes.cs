using System.Globalization;
using Balance.Postings;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Balance.Api;

// One machine `code` of a problem body: the HTTP status it comes with, its title, and its detail text — a composite
// format where the text names a value ({0}, {1}), given a real example value for the OpenAPI document; no detail
// where the answer carries none (the pipeline's own 401/403/413/415) or where the text depends on who refuses.
public sealed class ProblemCode(string code, int status, string? detail = null, object[]? example = null, string? title = null)
{
    public string Code { get; } = code;
    public int Status { get; } = status;
    public string Title { get; } = title ?? ReasonPhrase(status);
    public string? Detail { get; } = detail;

    // The URI the framework names the status by (RFC 9110 has no section for 429, so the framework names none).
    public string? Type => Section(Status) is { } section ? $"https://tools.ietf.org/html/rfc9110#section-15.{section}" : null;

    /// The detail text with these values.
    public string Text(params object?[] values) => string.Format(CultureInfo.InvariantCulture,
        Detail ?? throw new InvalidOperationException($"Problem code '{Code}' has no detail text of its own."), values);

    /// The detail text with the row's example values: what the OpenAPI document shows.
    public string? Example => Detail is null ? null : Text(example ?? []);

    /// This code's problem answer, its detail text filled with the values.
    public ProblemHttpResult Problem(params object?[] values) => Problems.Create(this, Text(values));

    public override string ToString() => Code;

    private static string? Section(int status) => status switch
    {
        400 => "5.1", 401 => "5.2", 403 => "5.4", 404 => "5.5", 409 => "5.10", 413 => "5.14", 415 => "5.16", 422 => "5.21", 503 => "6.4", _ => null,
    };

    private static string ReasonPhrase(int status) => status switch
    {
        400 => "Bad Request", 401 => "Unauthorized", 403 => "Forbidden", 404 => "Not Found", 405 => "Method Not Allowed", 409 => "Conflict",
        413 => "Content Too Large", 415 => "Unsupported Media Type", 422 => "Unprocessable Entity", 429 => "Too Many Requests",
        503 => "Service Unavailable", _ => "Error",
    };
}

// Every problem code the REST API answers with, auth's and the ledger's alike: a client branches on one vocabulary,
// and the OpenAPI document's Problem schema lists it in this order. A route declares which of them it gives
// (`.ProducesProblems("…", ProblemCodes.InsufficientFunds)`), and the status comes from here.
//
// Adding a refusal: the rule goes in Ledger.Apply, returning a new Refusal (money's word for it, Postings/Posting.cs,
// with its text in RefusalText); its row goes here, showing that text, and its status in ForRefusal below (the build
// fails until it has one); and POST /api/transactions declares its code in its ProducesProblems (Api/LedgerApi.cs;
// OpenApiTests fails until it does). ProblemCodeTests checks every refusal's answer against its row.
public static class ProblemCodes
{
    private const string UserExample = "0b7e4d1c-6f1a-4d43-9a40-2f5a2b1f4c11", TransactionExample = "0193f1a2-7c4e-7b10-9a3d-5e2f8c1d4b6a";

    public static readonly ProblemCode ValidationFailed = new("validation_failed", 400, "The request is not valid; see errors.", title: "One or more validation errors occurred.");
    public static readonly ProblemCode MalformedRequest = new("malformed_request", 400, "Malformed JSON: {0}", ["'x' is an invalid start of a value."]);
    public static readonly ProblemCode InvalidCredentials = new("invalid_credentials", 401, "Username or password is wrong.");
    public static readonly ProblemCode InvalidRefreshToken = new("invalid_refresh_token", 401, "The refresh token is missing or unknown.");
    public static readonly ProblemCode RefreshTokenReused = new("refresh_token_reused", 401, "This refresh token was already used; the login has been ended. Log in again.");
    public static readonly ProblemCode RefreshTokenExpired = new("refresh_token_expired", 401, "The refresh token has expired. Log in again.");
    public static readonly ProblemCode SessionRevoked = new("session_revoked", 401, "This login has ended. Log in again.");
    public static readonly ProblemCode Unauthorized = new("unauthorized", 401);
    public static readonly ProblemCode Forbidden = new("forbidden", 403);
    public static readonly ProblemCode UserDisabled = new("user_disabled", 403, "This account is disabled.");
    public static readonly ProblemCode WrongPassword = new("wrong_password", 403, "current_password is not this account's password.");
    public static readonly ProblemCode UserNotFound = new("user_not_found", 404, RefusalText.Format(Refusal.UserNotFound), [UserExample]);
    public static readonly ProblemCode TransactionNotFound = new("transaction_not_found", 404, RefusalText.Format(Refusal.TransactionNotFound), [TransactionExample]);
    public static readonly ProblemCode InsufficientFunds = new("insufficient_funds", 409, "The wallet does not hold enough for this debit; nothing was written.");
    public static readonly ProblemCode IdempotencyConflict = new("idempotency_conflict", 409, "This Idempotency-Key was already used with a different request body.");
    public static readonly ProblemCode AlreadyReversed = new("already_reversed", 409, "Bet {0} was already rolled back.", [TransactionExample]);
    public static readonly ProblemCode Conflict = new("conflict", 409, RefusalText.Format(Refusal.Conflict));
    public static readonly ProblemCode UsernameTaken = new("username_taken", 409, "That username is taken.");
    public static readonly ProblemCode PayloadTooLarge = new("payload_too_large", 413);
    public static readonly ProblemCode UnsupportedMediaType = new("unsupported_media_type", 415);
    public static readonly ProblemCode NotReversible = new("not_reversible", 422, RefusalText.Format(Refusal.NotReversible), [TransactionExample, TxTypes.Deposit]);
    public static readonly ProblemCode UserMismatch = new("user_mismatch", 422, RefusalText.Format(Refusal.UserMismatch));
    public static readonly ProblemCode NotAPlayer = new("not_a_player", 422, RefusalText.Format(Refusal.NotAPlayer));
    public static readonly ProblemCode BalanceOverflow = new("balance_overflow", 422, RefusalText.Format(Refusal.BalanceOverflow));
    public static readonly ProblemCode TooManyAttempts = new("too_many_attempts", 429, "Too many {0}; try again in {1} s.", ["login attempts", 42]);
    public static readonly ProblemCode Unavailable = new("unavailable", 503, "The ledger is temporarily unavailable; nothing was changed. Retry with the same Idempotency-Key.");
    public static readonly ProblemCode LoginBusy = new("login_busy", 503, "Too many passwords are being checked at once; try again in {0} s.", [1]);

    /// Every code above, in the document's order.
    public static readonly IReadOnlyList<ProblemCode> All =
    [
        ValidationFailed, MalformedRequest, InvalidCredentials, InvalidRefreshToken, RefreshTokenReused, RefreshTokenExpired, SessionRevoked,
        Unauthorized, Forbidden, UserDisabled, WrongPassword, UserNotFound, TransactionNotFound, InsufficientFunds, IdempotencyConflict,
        AlreadyReversed, Conflict, UsernameTaken, PayloadTooLarge, UnsupportedMediaType, NotReversible, UserMismatch, NotAPlayer,
        BalanceOverflow, TooManyAttempts, Unavailable, LoginBusy,
    ];

    // The ledger's refusals as answers. No default arm: a Refusal without a row here does not build (CS8509).
#pragma warning disable CS8524 // a value outside the enum's names cannot come from the ledger
    public static ProblemCode ForRefusal(Refusal kind) => kind switch
    {
        Refusal.Conflict => Conflict,
        Refusal.TransactionNotFound => TransactionNotFound,
        Refusal.NotReversible => NotReversible,
        Refusal.UserMismatch => UserMismatch,
        Refusal.UserNotFound => UserNotFound,
        Refusal.NotAnOperator => Forbidden,
        Refusal.NotAPlayer => NotAPlayer,
        Refusal.BalanceOverflow => BalanceOverflow,
    };
#pragma warning restore CS8524

    // The code of a problem no handler named, by its status: the pipeline's own answers (no token, the wrong role, an
    // unknown route or method, a body it cannot read, its rate limiter, an unhandled exception). Only the ones above
    // are in the document: an unknown route or method is not an operation of it.
    public static string ForStatus(int status) => status switch
    {
        400 => "bad_request",
        401 => Unauthorized.Code,
        403 => Forbidden.Code,
        404 => "not_found",
        405 => "method_not_allowed",
        413 => PayloadTooLarge.Code,
        415 => UnsupportedMediaType.Code,
        429 => "too_many_requests",
        503 => Unavailable.Code,
        _ => "server_error",
    };

    // The socket endpoint's refusals of an upgrade
    // (Sockets/SocketEndpoint.cs, answered in HTTP before a request becomes a socket), in the order it checks them.
    // Not in All, so not in the OpenAPI document: the socket is no operation of it (its description points to the
    // README). A row per refusal, so a code may have two: too_many_connections (a client reconnecting too fast, and
    // the unauthenticated cap), and unavailable, the REST row's code and status with the socket's own words, which
    // the open sockets' going-away close (CloseReason.GoingAway) sends too. ProblemCodeTests holds each code to one status.
    public static readonly ProblemCode WebSocketRequired = new("websocket_required", 400, "This endpoint speaks WebSocket only.");
    public static readonly ProblemCode ServerRestarting = new("unavailable", 503, "The server is restarting; reconnect.");
    public static readonly ProblemCode ReconnectingTooFast = new("too_many_connections", 429, "Reconnecting too fast; try again in {0} s.", [1]);
    public static readonly ProblemCode OriginNotAllowed = new("origin_not_allowed", 403, "Origin not allowed.");
    public static readonly ProblemCode TooManyUnauthenticatedSockets = new("too_many_connections", 429, "Too many unauthenticated sockets from this address.");

    public static readonly IReadOnlyList<ProblemCode> SocketUpgrade =
        [WebSocketRequired, ServerRestarting, ReconnectingTooFast, OriginNotAllowed, TooManyUnauthenticatedSockets];
}
