using System.Data.Common;
using System.Text.Json;
using Balance.Postings;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Balance.Api;

// Problem details with a stable machine `code` (ProblemCodes), and the mapping of failures to them.
public static class Problems
{
    public static ProblemHttpResult Create(ProblemCode code, string? detail, IDictionary<string, object?>? extra = null)
    {
        var extensions = new Dictionary<string, object?> { ["code"] = code.Code };
        if (extra is not null) foreach (var (k, v) in extra) extensions[k] = v;
        return TypedResults.Problem(detail: detail, statusCode: code.Status, extensions: extensions);
    }

    public static ValidationProblem Validation(string field, string message) => Validation(new Dictionary<string, string[]> { [field] = [message] });

    public static ValidationProblem Validation(IDictionary<string, string[]> errors) =>
        TypedResults.ValidationProblem(errors, detail: ProblemCodes.ValidationFailed.Text(),
            extensions: new Dictionary<string, object?> { ["code"] = ProblemCodes.ValidationFailed.Code });

    // The database (either engine) failed or timed out, or refused a batch twice, or the service is stopping: nothing
    // was changed, or in the one case it cannot know (CommitOutcomeUnknownException) the same key makes a retry safe.
    public static bool MeansUnavailable(Exception exception) =>
        exception is DbException or TimeoutException or StoreConflictException or CommitOutcomeUnknownException or ServiceStoppingException or PostingRefusedByStoreException
            or DurabilityLostException;

    public static void Configure(ProblemDetailsContext context)
    {
        var problem = context.ProblemDetails;
        var exception = context.Exception ?? context.HttpContext.Features.Get<IExceptionHandlerFeature>()?.Error;
        switch (exception)
        {
            case BadHttpRequestException bad:
                problem.Detail = bad.StatusCode == StatusCodes.Status413PayloadTooLarge
                    ? "The request body is too large."
                    : bad.InnerException is JsonException json ? ProblemCodes.MalformedRequest.Text(json.Message) : bad.Message;
                problem.Extensions.TryAdd("code", (bad.StatusCode == 413 ? ProblemCodes.PayloadTooLarge : ProblemCodes.MalformedRequest).Code);
                break;
            case not null when MeansUnavailable(exception):
                problem.Title = ProblemCodes.Unavailable.Title;
                problem.Detail = exception is CommitOutcomeUnknownException
                    ? "The database failed while the transaction committed; it may or may not have been applied. Retry with the same Idempotency-Key: it applies at most once."
                    : ProblemCodes.Unavailable.Text();
                problem.Extensions.TryAdd("code", ProblemCodes.Unavailable.Code);
                RetryAfter.Set(context.HttpContext.Response, TimeSpan.FromSeconds(1));
                break;
        }
        problem.Extensions.TryAdd("code", ProblemCodes.ForStatus(problem.Status ?? StatusCodes.Status500InternalServerError));
    }

    public static int StatusFor(Exception exception) => exception switch
    {
        BadHttpRequestException bad => bad.StatusCode,
        _ when MeansUnavailable(exception) => ProblemCodes.Unavailable.Status,
        _ => StatusCodes.Status500InternalServerError,
    };
}
