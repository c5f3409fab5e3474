using System.Security.Claims;
using Balance.Api;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.IdentityModel.JsonWebTokens;

namespace Balance.Auth;

public sealed record LoginRequest(string? Username, string? Password);
public sealed record RefreshRequest(string? RefreshToken);
public sealed record CreateUserRequest(string? Username, string? Password, string? Role);

public static class AuthApi
{
    public static Guid UserId(this ClaimsPrincipal user) => Guid.Parse(user.FindFirstValue(JwtRegisteredClaimNames.Sub)!);
    public static string SessionId(this ClaimsPrincipal user) => user.FindFirstValue("sid")!;

    public static IEndpointRouteBuilder MapAuthApi(this IEndpointRouteBuilder app)
    {
        var auth = app.MapGroup("/api/auth").WithTags("Auth")
            .ProducesProblems(503, "The database is unavailable.", "unavailable");
        auth.MapPost("/login", LoginAsync).AllowAnonymous()
            .WithSummary("Log in: an access token and a refresh token")
            .ProducesProblems(401, "Wrong username or password (the same answer for an unknown user).", "invalid_credentials")
            .ProducesProblems(429, "Too many attempts from this address, or too many failures for this username.", "too_many_attempts");
        auth.MapPost("/refresh", RefreshAsync).AllowAnonymous()
            .WithSummary("Spend a refresh token for a new pair")
            .WithDescription("A spent refresh token presented again ends the whole login: its tokens stop working and its sockets close 4503.")
            .ProducesProblems(401, "The refresh token is unknown, spent (the login is now ended), expired, or its login has ended.",
                "invalid_refresh_token", "refresh_token_reused", "refresh_token_expired", "session_revoked");
        auth.MapPost("/logout", LogoutAsync).RequireAuthorization()
            .WithSummary("End this login")
            .WithDescription("Revokes the login's refresh tokens; its access tokens stop working and its open sockets close 4503. The body is optional.");

        var users = app.MapGroup("/api/users").WithTags("Users").RequireAuthorization(Roles.Operator)
            .ProducesProblems(503, "The database is unavailable.", "unavailable");
        users.MapGet("/", FindUserAsync)
            .WithSummary("Look a user up by username: a list of zero or one")
            .ProducesProblems(400, "No username given.", "validation_failed");
        users.MapPost("/", CreateUserAsync)
            .WithSummary("Create a player or an operator")
            .ProducesProblems(400, "username, password or role not acceptable.", "validation_failed")
            .ProducesProblems(409, "The username is taken.", "username_taken");
        return app;
    }

    private static async Task<Results<Ok<TokenPair>, ProblemHttpResult>> LoginAsync(
        LoginRequest body, HttpContext http, Users users, Logins logins, LoginThrottle throttle, ILogger<Logins> log)
    {
        string ip = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        if (throttle.CheckAttempt(ip) is { } ipWait) return TooMany(http, ipWait);
        if (string.IsNullOrEmpty(body.Username) || string.IsNullOrEmpty(body.Password) || body.Username.Length > 64 || body.Password.Length > 256)
            return Problems.Unauthorized("invalid_credentials", "Username or password is wrong.");
        if (await throttle.CheckUsernameAsync(body.Username) is { } userWait) return TooMany(http, userWait);
        var user = await users.VerifyAsync(body.Username, body.Password);
        if (user is null)
        {
            await throttle.FailedAsync(body.Username);
            log.LogWarning("Failed login from {RemoteIp}", ip);
            return Problems.Unauthorized("invalid_credentials", "Username or password is wrong.");
        }
        return TypedResults.Ok(await logins.StartAsync(user));
    }

    private static ProblemHttpResult TooMany(HttpContext http, TimeSpan wait)
    {
        int seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        http.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Problems.Create(StatusCodes.Status429TooManyRequests, "too_many_attempts", $"Too many login attempts; try again in {seconds} s.");
    }

    private static async Task<Results<Ok<TokenPair>, ProblemHttpResult>> RefreshAsync(RefreshRequest body, Logins logins)
    {
        if (string.IsNullOrEmpty(body.RefreshToken) || body.RefreshToken.Length > 512)
            return Problems.Unauthorized("invalid_refresh_token", "The refresh token is missing or unknown.");
        var (outcome, pair) = await logins.RefreshAsync(body.RefreshToken);
        return outcome switch
        {
            Logins.RefreshOutcome.Ok => TypedResults.Ok(pair!),
            Logins.RefreshOutcome.Reused => Problems.Unauthorized("refresh_token_reused", "This refresh token was already used; the login has been ended. Log in again."),
            Logins.RefreshOutcome.Expired => Problems.Unauthorized("refresh_token_expired", "The refresh token has expired. Log in again."),
            Logins.RefreshOutcome.Revoked => Problems.Unauthorized("session_revoked", "This login has ended. Log in again."),
            _ => Problems.Unauthorized("invalid_refresh_token", "The refresh token is missing or unknown."),
        };
    }

    private static async Task<NoContent> LogoutAsync(RefreshRequest? body, ClaimsPrincipal user, Logins logins)
    {
        await logins.LogoutAsync(user.UserId(), user.SessionId(), body?.RefreshToken);
        return TypedResults.NoContent();
    }

    private static async Task<Results<Ok<UserView[]>, ValidationProblem>> FindUserAsync(string? username, Users users)
    {
        if (string.IsNullOrWhiteSpace(username))
            return Problems.Validation("username", "Give ?username= to look a user up.");
        var user = await users.FindAsync(username);
        return TypedResults.Ok(user is null ? [] : new[] { new UserView(user.Id, user.Username, user.Role) });
    }

    private static async Task<Results<Created<UserView>, ValidationProblem, ProblemHttpResult>> CreateUserAsync(
        CreateUserRequest body, Users users, ClaimsPrincipal caller, ILogger<Users> log)
    {
        var errors = new Dictionary<string, string[]>();
        if (!Users.IsValidUsername(body.Username)) errors["username"] = ["3-32 characters: letters, digits, '_', '-', '.'."];
        if (body.Password is not { Length: >= 8 and <= 256 }) errors["password"] = ["8-256 characters."];
        if (body.Role is not (Roles.Player or Roles.Operator)) errors["role"] = ["'player' or 'operator'."];
        if (errors.Count > 0) return Problems.Validation(errors);
        var user = await users.CreateAsync(body.Username!, body.Password!, body.Role!);
        if (user is null) return Problems.Create(StatusCodes.Status409Conflict, "username_taken", "That username is taken.");
        log.LogInformation("User {UserId} ({Role}) created by {OperatorId}", user.Id, user.Role, caller.UserId());
        return TypedResults.Created($"/api/users?username={Uri.EscapeDataString(user.Username)}", new UserView(user.Id, user.Username, user.Role));
    }
}
