using System.Collections.Concurrent;
using Balance.Operability;
using Microsoft.AspNetCore.Diagnostics;

namespace Balance.Api;

// What the exception handler logs of a request it answered with a problem (UseBalanceHttp). A request any caller can
// send, or an outage that fails every request, must not cost a stack trace each:
// - the caller's own mistake (a body that is not the JSON asked for, or too large) is its 400 or 413 and no line;
// - the store unavailable (Problems.MeansUnavailable: 503) is one warning a second for each kind of failure, counting
//   the requests since (a burst of one kind, say the service stopping, does not hide another);
// - anything else is a defect, and the middleware logs it in full as an unhandled exception.
public sealed class ErrorLog(ILogger<ErrorLog> log, TimeProvider time)
{
    private readonly ConcurrentDictionary<Type, LogSampler> _unavailable = new();

    // ExceptionHandlerOptions.SuppressDiagnosticsCallback: true where this class has said all there is to say.
    public bool Suppress(ExceptionHandlerSuppressDiagnosticsContext context)
    {
        var exception = context.Exception;
        if (exception is BadHttpRequestException) return true;
        if (!Problems.MeansUnavailable(exception)) return false;
        var sampler = _unavailable.GetOrAdd(exception.GetType(), static (_, clock) => new LogSampler(clock, TimeSpan.FromSeconds(1)), time);
        if (sampler.TryTake(out int unlogged))
            log.LogWarning(exception, "Answered {Method} {Route} 503 unavailable (and {Unlogged} more requests since the last line)",
                context.HttpContext.Request.Method, (context.HttpContext.Features.Get<IExceptionHandlerFeature>()?.Endpoint as RouteEndpoint)?.RoutePattern.RawText, unlogged);
        return true;
    }
}
