using System.Data.Common;
using System.Text.Json;
using Balance.Postings;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Balance.Api;

// Problem details with a stable machine `code`, and the mapping of failures to them.
public static class Problems
{
    public static ProblemHttpResult Create(int status, string code, string detail, IDictionary<string, object?>? extra = null)
    {
        var extensions = new Dictionary<string, object?> { ["code"] = code };
        if (extra is not null) foreach (var (k, v) in extra) extensions[k] = v;
        return TypedResults.Problem(detail: detail, statusCode: status, extensions: extensions);
    }

    public static ProblemHttpResult Unauthorized(string code, string detail) => Create(StatusCodes.Status401Unauthorized, code, detail);

    public static ValidationProblem Validation(string field, string message) => Validation(new Dictionary<string, string[]> { [field] = [message] });

    public static ValidationProblem Validation(IDictionary<string, string[]> errors) =>
        TypedResults.ValidationProblem(errors, detail: "The request is not valid; see errors.",
            extensions: new Dictionary<string, object?> { ["code"] = "validation_failed" });

    public static void Configure(ProblemDetailsContext context)
    {
        var problem = context.ProblemDetails;
        var exception = context.Exception ?? context.HttpContext.Features.Get<IExceptionHandlerFeature>()?.Error;
        switch (exception)
        {
            case BadHttpRequestException bad:
                problem.Detail = bad.StatusCode == StatusCodes.Status413PayloadTooLarge
                    ? "The request body is too large."
                    : bad.InnerException is JsonException json ? $"Malformed JSON: {json.Message}" : bad.Message;
                problem.Extensions.TryAdd("code", bad.StatusCode == 413 ? "payload_too_large" : "malformed_request");
                break;
            case CommitOutcomeUnknownException:
                problem.Title = "Service Unavailable";
                problem.Detail = "The connection to the database was lost while it committed; the transaction may or may not have been applied. Retry with the same Idempotency-Key: it applies at most once.";
                problem.Extensions.TryAdd("code", "unavailable");
                context.HttpContext.Response.Headers.RetryAfter = "1";
                break;
            case DbException or TimeoutException or StoreConflictException or ServiceStoppingException or PostingRefusedByStoreException:
                problem.Title = "Service Unavailable";
                problem.Detail = "The ledger is temporarily unavailable; nothing was changed. Retry with the same Idempotency-Key.";
                problem.Extensions.TryAdd("code", "unavailable");
                context.HttpContext.Response.Headers.RetryAfter = "1";
                break;
        }
        problem.Extensions.TryAdd("code", problem.Status switch
        {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            429 => "too_many_requests",
            503 => "unavailable",
            _ => "server_error",
        });
    }

    public static int StatusFor(Exception exception) => exception switch
    {
        BadHttpRequestException bad => bad.StatusCode,
        // The database (either engine) failed or timed out, or refused a batch twice: nothing was changed, or in the one
        // case it cannot know (CommitOutcomeUnknownException) the same key makes a retry safe.
        DbException or TimeoutException or StoreConflictException or CommitOutcomeUnknownException or ServiceStoppingException or PostingRefusedByStoreException => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };
}
