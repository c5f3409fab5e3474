using Balance;
using Dapper;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

var builder = WebApplication.CreateBuilder(args);
SqlMapper.RemoveTypeMap(typeof(Guid));
SqlMapper.AddTypeHandler(new GuidHandler());

// Options, bound once and checked at start.
builder.Services.AddOptions<AuthOptions>().BindConfiguration("Auth")
    .Validate(o => o.ClockSkew >= TimeSpan.Zero && o.ClockSkew <= TimeSpan.FromSeconds(30), "Auth:ClockSkew must be between 0 and 00:00:30.")
    .Validate(o => o.AccessTokenLifetime > TimeSpan.Zero && o.RefreshTokenLifetime > TimeSpan.Zero, "Token lifetimes must be positive.")
    .ValidateOnStart();
builder.Services.AddOptions<SocketOptions>().BindConfiguration("Balance:Socket").ValidateOnStart();
builder.Services.AddSingleton(sp => sp.GetRequiredService<IOptions<AuthOptions>>().Value);
builder.Services.AddSingleton(sp => sp.GetRequiredService<IOptions<SocketOptions>>().Value);
builder.Services.AddSingleton(TimeProvider.System);

// Money: the database (and its background checkpoints), the ledger's writer loop, and the socket fan-out that reads its commits.
builder.Services.AddSingleton<Database>();
builder.Services.AddSingleton<Checkpointer>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<Checkpointer>());
builder.Services.AddSingleton<Ledger>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<Ledger>());
builder.Services.AddSingleton<BalanceSocket>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<BalanceSocket>());
builder.Services.AddHostedService<BootstrapOperator>();
if (builder.Environment.IsDevelopment()) builder.Services.AddHostedService<Demo>();

// Tokens: one set of validation rules for REST and the socket; sessions can be revoked.
builder.Services.AddSingleton(sp => new Tokens(sp.GetRequiredService<AuthOptions>(),
    Tokens.LoadSigningKey(sp.GetRequiredService<AuthOptions>(), sp.GetRequiredService<Database>(), sp.GetRequiredService<IHostEnvironment>())));
builder.Services.AddSingleton<Sessions>().AddSingleton<Users>().AddSingleton<Logins>().AddSingleton<LoginThrottle>();
builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme).Configure<Tokens, Sessions>((o, tokens, sessions) =>
{
    o.MapInboundClaims = false;
    o.TokenValidationParameters = tokens.Parameters;
    o.TokenHandlers.Clear();
    o.TokenHandlers.Add(tokens.RequestHandler);
    o.Events = new JwtBearerEvents
    {
        OnTokenValidated = ctx =>
        {
            if (sessions.IsRevoked(ctx.Principal?.FindFirst("sid")?.Value)) ctx.Fail("The login session has ended.");
            return Task.CompletedTask;
        },
    };
});
builder.Services.AddAuthorizationBuilder()
    .AddPolicy(Roles.Player, p => p.RequireRole(Roles.Player))
    .AddPolicy(Roles.Operator, p => p.RequireRole(Roles.Operator))
    // Scrapers on the box itself, or an operator from anywhere.
    .AddPolicy("metrics", p => p.RequireAssertion(c => c.User.IsInRole(Roles.Operator)
        || (c.Resource is HttpContext h && h.Connection.RemoteIpAddress is { } ip && System.Net.IPAddress.IsLoopback(ip))));

// HTTP: strict snake_case JSON, problem details with a `code` everywhere, small bodies, CORS for allowed origins.
builder.Services.Configure<JsonOptions>(o =>
{
    o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
    o.SerializerOptions.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
    o.SerializerOptions.MaxDepth = 16;
});
builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = Problems.Configure);
builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = 64 * 1024);
builder.Services.AddCors();
builder.Services.AddOptions<Microsoft.AspNetCore.Cors.Infrastructure.CorsOptions>().Configure<SocketOptions, IHostEnvironment>((o, sockets, env) =>
    o.AddDefaultPolicy(p => p.SetIsOriginAllowed(origin => sockets.AllowsCrossOrigin(origin, env.IsDevelopment()))
        .AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("ETag", "Retry-After", "Idempotent-Replayed")));
// Operability: health, metrics (meter "Balance", Prometheus text at /metrics), OpenAPI.
builder.Services.AddSingleton<BalanceMetrics>();
builder.Services.AddOps(); // the operations page's numbers, from the meter above
builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(BalanceMetrics.MeterName).AddPrometheusExporter());
builder.Services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: ["ready"]);
builder.Services.AddBalanceOpenApi();

var app = builder.Build();

await app.Services.GetRequiredService<Database>().InitializeAsync();
await app.Services.GetRequiredService<Sessions>().LoadAsync();
app.Services.GetRequiredService<BalanceMetrics>();

// The socket takes a branch of its own at the front. A socket is a request that lasts for hours, and every
// middleware it passes through keeps its state alive for that long (about 1 KB per socket, with 15,000 open);
// it needs none of them: it checks the Origin, authenticates and answers its errors itself.
var sockets = app.Services.GetRequiredService<BalanceSocket>();
app.MapWhen(BalanceSocket.IsSocketPath, ws => ws
    .UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(30) })
    .Run(http => sockets.HandleAsync(http, app.Environment)));

app.UseExceptionHandler(new ExceptionHandlerOptions { StatusCodeSelector = Problems.StatusFor });
app.UseStatusCodePages();
app.UseDefaultFiles();
var contentTypes = new Microsoft.AspNetCore.StaticFiles.FileExtensionContentTypeProvider();
contentTypes.Mappings[".ts"] = "application/typescript; charset=utf-8"; // the client's .d.ts files, not MPEG video
app.UseStaticFiles(new StaticFileOptions { ContentTypeProvider = contentTypes });
app.UseCors();
app.UseAuthentication();
app.UseAuthorization();

app.MapAuthApi();
app.MapLedgerApi();
app.MapOpsApi();
app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false });
app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") });
app.MapPrometheusScrapingEndpoint("/metrics").RequireAuthorization("metrics");
app.MapBalanceOpenApi(); // and, in Development, the reference page at /reference/

app.Run();
