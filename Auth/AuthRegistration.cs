using Balance.Storage;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Balance.Auth;

public static class AuthRegistration
{
    // Tokens: one set of validation rules for REST and the socket; logins are sessions that can be ended.
    public static WebApplicationBuilder AddBalanceAuth(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<AuthOptions>().BindConfiguration("Auth").ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<AuthOptions>>().Value;
            return new Tokens(options, Tokens.LoadSigningKey(options, sp.GetRequiredService<IDatabase>(), sp.GetRequiredService<IHostEnvironment>()),
                sp.GetRequiredService<TimeProvider>());
        });
        services.AddSingleton<Sessions>().AddSingleton<Users>().AddSingleton<Logins>().AddSingleton<LoginThrottle>().AddSingleton<PasswordBudget>();
        services.AddSingleton<Housekeeping>();
        services.AddHostedService(sp => sp.GetRequiredService<Housekeeping>());
        services.TryAddSingleton<ILoginFailures, MemoryLoginFailures>(); // unless the store counts them for every node
        // The accounts a start needs: a bootstrap operator from configuration, and in Development the demo accounts.
        services.AddOptions<BootstrapOperatorOptions>().BindConfiguration(BootstrapOperatorOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddHostedService<BootstrapOperator>();
        if (builder.Environment.IsDevelopment()) services.AddHostedService<Demo>();
        services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme).Configure<Tokens, Sessions>((o, tokens, sessions) =>
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
        services.AddAuthorizationBuilder()
            .AddPolicy(Roles.Player, p => p.RequireRole(Roles.Player))
            .AddPolicy(Roles.Operator, p => p.RequireRole(Roles.Operator))
            // Scrapers on the box itself, or an operator from anywhere.
            .AddPolicy("metrics", p => p.RequireAssertion(c => c.User.IsInRole(Roles.Operator)
                || (c.Resource is HttpContext h && h.Connection.RemoteIpAddress is { } ip && System.Net.IPAddress.IsLoopback(ip))));
        return builder;
    }

    /// Ended logins are remembered across restarts: loaded before the first request.
    public static Task LoadSessionsAsync(this WebApplication app) => app.Services.GetRequiredService<Sessions>().LoadAsync();
}
