using Microsoft.Extensions.Options;
using System.Security.Claims;
using Balance.Api;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.IdentityModel.JsonWebTokens;

namespace Balance.Auth;

public sealed record LoginRequest(string? Username, string? Password);
public sealed record RefreshRequest(string? RefreshToken);
public sealed record CreateUserRequest(string? Username, string? Password, string? Role);
public sealed record ChangePasswordRequest(string? CurrentPassword, string? NewPassword);
public sealed record UpdateUserRequest(bool? Disabled);

public static class AuthApi
{
    // The per-address allowance a route spends (LoginThrottle), before its body is read.
    private sealed record Allowance(bool Login)
    {
        public static readonly Allowance ForLogin = new(true), ForRefresh = new(false);
    }

    // Logins and refreshes spend their address's allowance before anything else, the body included: a body that is not
    // JSON spends it too, and past it every request gets a held 429 (TooManyAsync) without being read. So a stranger's
    // loop of bad bodies gets one answer a second per connection, not thousands of refusals that each throw twice
    // while the body is bound (bench/attack.sh --modes none,garbage). Between routing and the endpoint.
    public static WebApplication UseAddressAllowances(this WebApplication app)
    {
        app.Use(async (http, next) =>
        {
            if (http.GetEndpoint()?.Metadata.GetMetadata<Allowance>() is { } allowance)
            {
                var throttle = http.RequestServices.GetRequiredService<LoginThrottle>();
                string address = ClientAddress.Key(http);
                var (wait, what) = allowance.Login
                    ? (throttle.CheckAttempt(address), "login attempts")
                    : (throttle.CheckRefresh(address), "refreshes from this address");
                if (wait is { } w)
                {
                    await (await TooManyAsync(http, w, what)).ExecuteAsync(http);
                    return;
                }
            }
            await next(http);
        });
        return app;
    }

    public static Guid UserId(this ClaimsPrincipal user) => Guid.Parse(user.FindFirstValue(JwtRegisteredClaimNames.Sub)!);
    public static string SessionId(this ClaimsPrincipal user) => user.FindFirstValue("sid")!;

    public static IEndpointRouteBuilder MapAuthApi(this IEndpointRouteBuilder app)
    {
        var auth = app.MapGroup("/api/auth").WithTags("Auth")
            .ProducesProblems("The database is unavailable, or too many passwords are being checked at once (login_busy).", ProblemCodes.Unavailable, ProblemCodes.LoginBusy);
        auth.MapPost("/login", LoginAsync).AllowAnonymous().WithMetadata(Allowance.ForLogin)
            .WithSummary("Log in: an access token and a refresh token")
            .ProducesProblems("username or password missing, or control characters in username.", ProblemCodes.ValidationFailed)
            .ProducesProblems("Wrong username or password (the same answer for an unknown user).", ProblemCodes.InvalidCredentials)
            .ProducesProblems("The password is right but the account is disabled.", ProblemCodes.UserDisabled)
            .ProducesProblems("Too many attempts from this address, too many failures for this username from this address or for this address, or this username is being guessed from many addresses (slowed).", ProblemCodes.TooManyAttempts);
        auth.MapPost("/refresh", RefreshAsync).AllowAnonymous().WithMetadata(Allowance.ForRefresh)
            .WithSummary("Spend a refresh token for a new pair")
            .WithDescription("A spent refresh token presented again ends the whole login: its tokens stop working and its sockets close 4503.")
            .ProducesProblems("refresh_token missing.", ProblemCodes.ValidationFailed)
            .ProducesProblems("The refresh token is unknown, spent (the login is now ended), expired, or its login has ended.",
                ProblemCodes.InvalidRefreshToken, ProblemCodes.RefreshTokenReused, ProblemCodes.RefreshTokenExpired, ProblemCodes.SessionRevoked)
            .ProducesProblems("Too many refreshes from this address, or of this login.", ProblemCodes.TooManyAttempts);
        auth.MapPost("/logout", LogoutAsync).RequireAuthorization()
            .WithSummary("End this login")
            .WithDescription("Revokes the login's refresh tokens; its access tokens stop working and its open sockets close 4503. The body is optional.");
        auth.MapPost("/password", ChangePasswordAsync).RequireAuthorization()
            .WithSummary("Change your own password")
            .WithDescription("Any role, own account. The old password stops working and every other login of the user ends (tokens 401, sockets 4503); this login goes on.")
            .ProducesEmpty(204, "Changed.")
            .ProducesProblems("current_password missing, or new_password not 8-256 characters.", ProblemCodes.ValidationFailed)
            .ProducesProblems("The account was disabled or its login ended meanwhile.", ProblemCodes.SessionRevoked)
            .ProducesProblems("current_password is wrong.", ProblemCodes.WrongPassword)
            .ProducesProblems("Too many wrong passwords from this address.", ProblemCodes.TooManyAttempts);

        var users = app.MapGroup("/api/users").WithTags("Users").RequireAuthorization(Roles.Operator)
            .ProducesProblems("The database is unavailable, or too many passwords are being hashed at once (login_busy).", ProblemCodes.Unavailable, ProblemCodes.LoginBusy);
        users.MapGet("/", FindUserAsync)
            .WithSummary("Look a user up by username: a list of zero or one")
            .ProducesProblems("No username given.", ProblemCodes.ValidationFailed);
        users.MapPost("/", CreateUserAsync)
            .WithSummary("Create a player or an operator")
            .ProducesProblems("username, password or role not acceptable.", ProblemCodes.ValidationFailed)
            .ProducesProblems("The username is taken.", ProblemCodes.UsernameTaken);
        users.MapPatch("/{user_id}", UpdateUserAsync)
            .WithSummary("Disable or enable a user")
            .WithDescription("Disabling ends every login of the user at once (tokens 401, sockets 4503, on every node) and refuses new ones; enabled again, the user logs in.")
            .ProducesProblems("disabled missing, or an operator disabling their own account.", ProblemCodes.ValidationFailed)
            .ProducesProblems("No such user.", ProblemCodes.UserNotFound);
        users.MapDelete("/{user_id}/sessions", EndSessionsAsync)
            .WithSummary("End every login of a user")
            .WithDescription("Tokens 401 and sockets 4503 on every node; the user may log in again.")
            .ProducesEmpty(204, "Ended (also when there was none).")
            .ProducesProblems("No such user.", ProblemCodes.UserNotFound);
        return app;
    }

    private static async Task<Results<Ok<TokenPair>, ValidationProblem, ProblemHttpResult>> LoginAsync(
        LoginRequest body, HttpContext http, Users users, Logins logins, LoginThrottle throttle, ILogger<Logins> log)
    {
        string address = ClientAddress.Key(http); // its allowance already spent (UseAddressAllowances)
        var errors = new Dictionary<string, string[]>();
        // Missing is a malformed request (400); present but empty is only a wrong password (401, like any other).
        if (body.Username is null) errors["username"] = ["Required."];
        else if (Users.HasControlCharacters(body.Username)) errors["username"] = ["No control characters."];
        if (body.Password is null) errors["password"] = ["Required."];
        if (errors.Count > 0) return Problems.Validation(errors);
        if (body.Password!.Length is 0 or > 256 || Users.Normalize(body.Username) is not { } username)
        {
            // No user can have that name: no hash to check, but it is a failure of this address all the same.
            await throttle.FailedAsync(address);
            log.LogWarning("Failed login from {RemoteIp}", address);
            return WrongCredentials();
        }
        if (await throttle.CheckAsync(username, address) is { } userWait) return await TooManyAsync(http, userWait, "login attempts");
        UserRecord? user;
        try { user = await users.VerifyAsync(username, body.Password); }
        catch (PasswordBudgetSpentException) { return Busy(http); }
        if (user is null)
        {
            await throttle.FailedAsync(username, address);
            log.LogWarning("Failed login from {RemoteIp}", address);
            return WrongCredentials();
        }
        await throttle.SucceededAsync(username, address);
        if (!user.Disabled && await logins.StartAsync(user) is { } pair) return TypedResults.Ok(pair);
        // Disabled, or disabled or given a new password while this password was checked.
        return (await users.FindAsync(user.Id))?.Disabled == true ? Disabled() : WrongCredentials();
    }

    private static ProblemHttpResult WrongCredentials() => ProblemCodes.InvalidCredentials.Problem();
    private static ProblemHttpResult Disabled() => ProblemCodes.UserDisabled.Problem();

    // A 429 is held for up to Auth:ThrottledAnswerDelay before it is sent (never longer than the Retry-After it
    // carries): a client that must wait anyway loses nothing, while a script hammering in a loop gets one answer a
    // second per connection instead of thousands — each of which cost a request's CPU that postings needed
    // (bench/attack.sh: the refresh loop). Real time, not the service's clock: it paces the network, decides nothing.
    private static async Task<ProblemHttpResult> TooManyAsync(HttpContext http, TimeSpan wait, string what)
    {
        var hold = http.RequestServices.GetRequiredService<IOptions<AuthOptions>>().Value.ThrottledAnswerDelay;
        if (wait < hold) hold = wait;
        if (hold > TimeSpan.Zero)
            try { await Task.Delay(hold, http.RequestAborted); } catch (OperationCanceledException) { }
        return ProblemCodes.TooManyAttempts.Problem(what, RetryAfter.Set(http.Response, wait));
    }

    private static ProblemHttpResult Busy(HttpContext http)
    {
        return ProblemCodes.LoginBusy.Problem(RetryAfter.Set(http.Response, TimeSpan.FromSeconds(1)));
    }

    private static async Task<Results<Ok<TokenPair>, ValidationProblem, ProblemHttpResult>> RefreshAsync(RefreshRequest body, HttpContext http, Logins logins, LoginThrottle throttle)
    {
        if (body.RefreshToken is null) return Problems.Validation("refresh_token", "Required.");
        if (body.RefreshToken.Length is 0 or > 512) return ProblemCodes.InvalidRefreshToken.Problem();
        var (outcome, pair, wait) = await logins.RefreshAsync(body.RefreshToken);
        if (outcome == Logins.RefreshOutcome.Limited) return await TooManyAsync(http, wait ?? TimeSpan.FromSeconds(1), "refreshes of this login");
        return outcome switch
        {
            Logins.RefreshOutcome.Ok => TypedResults.Ok(pair!),
            Logins.RefreshOutcome.Reused => ProblemCodes.RefreshTokenReused.Problem(),
            Logins.RefreshOutcome.Expired => ProblemCodes.RefreshTokenExpired.Problem(),
            Logins.RefreshOutcome.Revoked => ProblemCodes.SessionRevoked.Problem(),
            _ => ProblemCodes.InvalidRefreshToken.Problem(),
        };
    }

    private static async Task<NoContent> LogoutAsync(RefreshRequest? body, ClaimsPrincipal user, Logins logins)
    {
        await logins.LogoutAsync(user.UserId(), user.SessionId(), body?.RefreshToken);
        return TypedResults.NoContent();
    }

    private static async Task<Results<NoContent, ValidationProblem, ProblemHttpResult>> ChangePasswordAsync(
        ChangePasswordRequest body, ClaimsPrincipal caller, HttpContext http, Users users, Logins logins, LoginThrottle throttle, ILogger<Users> log)
    {
        var errors = new Dictionary<string, string[]>();
        if (string.IsNullOrEmpty(body.CurrentPassword)) errors["current_password"] = ["Required."];
        if (body.NewPassword is not { Length: >= 8 and <= 256 }) errors["new_password"] = ["8-256 characters."];
        if (errors.Count > 0) return Problems.Validation(errors);
        var user = await users.FindAsync(caller.UserId());
        if (user is null || user.Disabled) return ProblemCodes.SessionRevoked.Problem();
        // A stolen access token must not make guessing the password cheap: the login's counters apply.
        string address = ClientAddress.Key(http);
        if (await throttle.CheckAsync(user.Username, address) is { } wait) return await TooManyAsync(http, wait, "wrong passwords");
        try
        {
            if (body.CurrentPassword!.Length > 256 || !await users.CheckAsync(user, body.CurrentPassword))
            {
                await throttle.FailedAsync(user.Username, address);
                return ProblemCodes.WrongPassword.Problem();
            }
            int ended = await logins.ChangePasswordAsync(user.Id, await users.HashAsync(user, body.NewPassword!), caller.SessionId());
            log.LogInformation("User {UserId} changed their password; {Ended} other logins ended", user.Id, ended);
        }
        catch (PasswordBudgetSpentException) { return Busy(http); }
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
        CreateUserRequest body, Users users, ClaimsPrincipal caller, HttpContext http, ILogger<Users> log)
    {
        var errors = new Dictionary<string, string[]>();
        if (!Users.IsValidUsername(body.Username)) errors["username"] = ["3-32 characters: letters, digits, '_', '-', '.' (ASCII; stored in lower case)."];
        if (body.Password is not { Length: >= 8 and <= 256 }) errors["password"] = ["8-256 characters."];
        if (body.Role is not (Roles.Player or Roles.Operator)) errors["role"] = ["'player' or 'operator'."];
        if (errors.Count > 0) return Problems.Validation(errors);
        UserRecord? user;
        try { user = await users.CreateAsync(body.Username!, body.Password!, body.Role!); }
        catch (PasswordBudgetSpentException) { return Busy(http); }
        if (user is null) return ProblemCodes.UsernameTaken.Problem();
        log.LogInformation("User {UserId} ({Role}) created by {OperatorId}", user.Id, user.Role, caller.UserId());
        return TypedResults.Created($"/api/users?username={Uri.EscapeDataString(user.Username)}", new UserView(user.Id, user.Username, user.Role));
    }

    private static async Task<Results<Ok<UserAccount>, ValidationProblem, ProblemHttpResult>> UpdateUserAsync(
        [FromRoute(Name = "user_id")] Guid userId, UpdateUserRequest body, ClaimsPrincipal caller, Users users, Logins logins, ILogger<Users> log)
    {
        if (body.Disabled is not { } disabled) return Problems.Validation("disabled", "Required: true or false.");
        if (disabled && userId == caller.UserId()) return Problems.Validation("disabled", "An operator cannot disable their own account.");
        if (!await logins.SetDisabledAsync(userId, disabled) || await users.FindAsync(userId) is not { } user) return UserNotFound(userId);
        log.LogInformation("User {UserId} {Change} by {OperatorId}", userId, disabled ? "disabled" : "enabled", caller.UserId());
        return TypedResults.Ok(new UserAccount(user.Id, user.Username, user.Role, user.Disabled));
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> EndSessionsAsync(
        [FromRoute(Name = "user_id")] Guid userId, ClaimsPrincipal caller, Logins logins, ILogger<Users> log)
    {
        int ended = await logins.EndAllAsync(userId);
        if (ended < 0) return UserNotFound(userId);
        log.LogInformation("{Ended} logins of user {UserId} ended by {OperatorId}", ended, userId, caller.UserId());
        return TypedResults.NoContent();
    }

    private static ProblemHttpResult UserNotFound(Guid userId) => ProblemCodes.UserNotFound.Problem(userId);
}
