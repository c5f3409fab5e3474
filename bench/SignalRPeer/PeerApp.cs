using System.Security.Cryptography;
using System.Text.Json;
using Balance;
using Balance.Api;
using Balance.Auth;
using Balance.Postings;
using Balance.Sockets;
using Balance.Storage;
using Balance.Storage.Sqlite;
using Dapper;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.SignalR;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace SignalRPeer;

// Not top-level statements: Balance (referenced for its Ledger) already owns the global Program class.
public static class PeerApp
{
    public static void Main(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);

        // The same ledger as the product: one writer loop, group commit, WAL + synchronous=FULL.
        builder.AddStorage();
        builder.AddLedger();
        builder.Services.AddHostedService<DrainChanges>();

        // What a C# team writes: JWT bearer (query string for the hub), SignalR with snake_case JSON.
        var key = new SymmetricSecurityKey(RandomNumberGenerator.GetBytes(64));
        builder.Services.AddSingleton(new PeerTokens(key));
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(o =>
        {
            o.MapInboundClaims = false;
            o.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = "peer", ValidAudience = "peer", IssuerSigningKey = key,
                ValidAlgorithms = [SecurityAlgorithms.HmacSha256], RoleClaimType = "role", NameClaimType = "sub",
            };
            o.Events = new JwtBearerEvents
            {
                OnMessageReceived = ctx =>
                {
                    if (ctx.Request.Path.StartsWithSegments("/hub")) ctx.Token = ctx.Request.Query["access_token"];
                    return Task.CompletedTask;
                },
            };
        });
        builder.Services.AddAuthorization();
        builder.Services.AddSingleton<IUserIdProvider, SubjectUserIdProvider>();
        builder.Services.AddSignalR().AddJsonProtocol(o => o.PayloadSerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower);
        builder.Services.Configure<JsonOptions>(o => o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower);

        var app = builder.Build();
        app.Services.GetRequiredService<SqliteDatabase>().InitializeAsync().GetAwaiter().GetResult();
        app.UseAuthentication();
        app.UseAuthorization();

        app.MapHub<BalanceHub>("/hub/balance");

        // The same posting endpoint as the product (same validation, same ledger), operator bearer required;
        // after the commit the handler pushes the balance the way a SignalR app does: Clients.User(id).
        app.MapPost("/api/transactions", async (TransactionBody body, HttpContext http, Ledger ledger, IHubContext<BalanceHub> hub) =>
        {
            var (posting, errors) = LedgerApi.Validate(body, http.Request.Headers["Idempotency-Key"], Guid.Parse(http.User.FindFirst("sub")!.Value));
            if (posting is null) return Results.ValidationProblem(errors);
            var outcome = await ledger.PostAsync(posting);
            if (outcome is not PostOutcome.Committed c) return Results.Conflict(outcome.ToString());
            var r = c.Result;
            if (!c.Replayed)
                await hub.Clients.User(r.UserId.ToString()).SendAsync("balance",
                    new BalanceMessage("balance", r.UserId, r.Balance, r.Currency, r.Version, r.TransactionId, r.Type, r.CreatedAt), http.RequestAborted);
            return Results.Created($"/api/transactions/{r.TransactionId}", r);
        }).RequireAuthorization(p => p.RequireRole(Roles.Operator));

        // The HTTP ceiling: binds the same body, answers 201 with a JSON body of the same shape, does nothing.
        var noop = new TransactionResult("00000000-0000-0000-0000-000000000000", Guid.Empty, "bet", "1.00", "USD", "1000.00", 1, "2026-01-01T00:00:00.000Z", null, null);
        app.MapPost("/noop", (TransactionBody body) => Results.Created("/noop", noop with { UserId = body.UserId ?? Guid.Empty }));

        // Bench setup: players without password hashing, tokens minted here.
        app.MapPost("/bench/setup", async (SetupRequest req, SqliteDatabase db, PeerTokens tokens) =>
        {
            await using var c = await db.OpenAsync();
            await using var tx = await c.BeginTransactionAsync();
            var op = Guid.NewGuid();
            string now = Timestamps.Format(DateTime.UtcNow);
            await c.ExecuteAsync("INSERT INTO users (id, username, password_hash, role, created_at) VALUES (@op, @name, '-', 'operator', @now)", new { op, name = "op-" + op.ToString("N")[..12], now }, tx);
            var players = new List<SetupPlayer>(req.Players);
            for (int i = 0; i < req.Players; i++)
            {
                var id = Guid.NewGuid();
                await c.ExecuteAsync("INSERT INTO users (id, username, password_hash, role, created_at) VALUES (@id, @name, '-', 'player', @now)", new { id, name = "p-" + id.ToString("N")[..20], now }, tx);
                players.Add(new SetupPlayer(id, tokens.Create(id, Roles.Player)));
            }
            await tx.CommitAsync();
            return Results.Ok(new SetupResponse(tokens.Create(op, Roles.Operator), op, players));
        });
        app.MapGet("/healthz", () => "ok");
        app.Run();
    }
}

public sealed record SetupRequest(int Players);
public sealed record SetupPlayer(Guid UserId, string AccessToken);
public sealed record SetupResponse(string OperatorToken, Guid OperatorId, List<SetupPlayer> Players);

[Authorize]
public sealed class BalanceHub : Hub;

public sealed class SubjectUserIdProvider : IUserIdProvider
{
    public string? GetUserId(HubConnectionContext connection) => connection.User.FindFirst("sub")?.Value;
}

// The ledger publishes every commit to an unbounded channel for the product's socket fan-out; here the
// handler pushes instead, so the channel is only drained.
public sealed class DrainChanges(Ledger ledger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var _ in ledger.Changes.ReadAllAsync(ct)) { }
        }
        catch (OperationCanceledException) { }
    }
}

public sealed class PeerTokens(SecurityKey key)
{
    private readonly JsonWebTokenHandler _handler = new();

    public string Create(Guid userId, string role) => _handler.CreateToken(new SecurityTokenDescriptor
    {
        Issuer = "peer", Audience = "peer", Expires = DateTime.UtcNow.AddHours(2),
        SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.HmacSha256),
        Claims = new Dictionary<string, object> { ["sub"] = userId.ToString(), ["role"] = role },
    });
}
