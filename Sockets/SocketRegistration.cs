using Microsoft.Extensions.Options;

namespace Balance.Sockets;

public static class SocketRegistration
{
    public static WebApplicationBuilder AddSockets(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<SocketOptions>().BindConfiguration("Balance:Socket").ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SocketStats>();
        services.AddSingleton<SocketAdmission>();
        services.AddSingleton<SocketAuth>();
        services.AddSingleton<SocketContext>();
        services.AddSingleton<SocketEndpoint>();
        // The hub reads the ledger's committed changes and fans them out.
        services.AddSingleton<BalanceSocket>();
        services.AddHostedService(sp => sp.GetRequiredService<BalanceSocket>());
        return builder;
    }

    // The socket takes a branch of its own at the front. A socket is a request that lasts for hours, and every
    // middleware it passes through keeps its state alive for that long (measured in BENCHMARKS.md, "Where an idle
    // socket's 13 KiB goes"); it needs none of them: it checks the Origin, authenticates and answers its errors itself.
    public static WebApplication MapBalanceSocket(this WebApplication app)
    {
        var endpoint = app.Services.GetRequiredService<SocketEndpoint>();
        var options = app.Services.GetRequiredService<IOptions<SocketOptions>>().Value;
        app.MapWhen(SocketEndpoint.IsSocketPath, ws => ws
            .UseControlFrameCounting()
            .UseWebSockets(new WebSocketOptions { KeepAliveInterval = options.KeepAliveInterval, KeepAliveTimeout = options.KeepAliveTimeout })
            .Run(endpoint.HandleAsync));
        return app;
    }
}
