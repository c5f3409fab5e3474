using Balance.Sockets;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace Balance.Api;

public static class HttpRegistration
{
    // HTTP: strict snake_case JSON (every request body: a property sent twice, a name in another case or a name the
    // body does not have is refused 400 malformed_request, never guessed at), problem details with a `code` everywhere, small bodies, CORS for allowed origins (CorsOrigins),
    // forwarded headers from known proxies only, and the OpenAPI document (Api/OpenApi.cs; mapped last, MapBalanceOpenApi).
    public static WebApplicationBuilder AddBalanceHttp(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
            o.SerializerOptions.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
            o.SerializerOptions.MaxDepth = 16;
            // "amount":"0.01","amount":"5000.00" must not post 5000.00, nor "Amount" stand in for "amount".
            o.SerializerOptions.AllowDuplicateProperties = false;
            o.SerializerOptions.PropertyNameCaseInsensitive = false;
            o.SerializerOptions.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow;
        });
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddOptions<ProxyOptions>().BindConfiguration("ForwardedHeaders").ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ForwardedHeadersOptions>().Configure<IOptions<ProxyOptions>>((o, proxies) => proxies.Value.ApplyTo(o));
        services.AddProblemDetails(o => o.CustomizeProblemDetails = Problems.Configure);
        services.AddSingleton<ErrorLog>();
        services.AddBalanceOpenApi();
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = 64 * 1024);
        services.AddOptions<CorsOrigins>().BindConfiguration(CorsOrigins.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddCors();
        services.AddOptions<Microsoft.AspNetCore.Cors.Infrastructure.CorsOptions>().Configure<IOptions<CorsOrigins>, IOptions<SocketOptions>, IHostEnvironment>((o, cors, sockets, env) =>
            o.AddDefaultPolicy(p => p.SetIsOriginAllowed(origin => CorsOrigins.Allows(cors.Value.AllowedOrigins ?? sockets.Value.AllowedOrigins, origin, env.IsDevelopment()))
                .AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("ETag", "Retry-After", "Idempotent-Replayed")));
        return builder;
    }

    // First of all, so every rule after it (socket caps, login limits, /metrics, audit lines, HTTPS) sees the real
    // client — and only with proxies configured: the framework's middleware with empty lists trusts anyone's headers.
    public static WebApplication UseForwardedClient(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<ProxyOptions>>().Value.AnyConfigured) app.UseForwardedHeaders();
        if (!app.Environment.IsDevelopment()) app.UseHsts(); // only ever sent over HTTPS
        return app;
    }

    // The REST pipeline: errors as problem details, the static client and demo, CORS, then who the caller is.
    public static WebApplication UseBalanceHttp(this WebApplication app)
    {
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            StatusCodeSelector = Problems.StatusFor,
            SuppressDiagnosticsCallback = app.Services.GetRequiredService<ErrorLog>().Suppress,
        });
        app.UseStatusCodePages();
        app.UseDefaultFiles();
        var contentTypes = new Microsoft.AspNetCore.StaticFiles.FileExtensionContentTypeProvider();
        contentTypes.Mappings[".ts"] = "application/typescript; charset=utf-8"; // the client's .d.ts files, not MPEG video
        app.UseStaticFiles(new StaticFileOptions { ContentTypeProvider = contentTypes });
        app.UseCors();
        app.UseAuthentication();
        app.UseAuthorization();
        return app;
    }
}
