using Balance.Postings;

namespace Balance.Auth;

// Outside Development there are no demo accounts: the first operator comes from configuration
// (Auth:BootstrapOperator:Username / :Password), created once if missing. The password is never logged.
public sealed class BootstrapOperator(Users users, IConfiguration config, ILogger<BootstrapOperator> log) : IHostedService
{
    public async Task StartAsync(CancellationToken ct)
    {
        string? username = config["Auth:BootstrapOperator:Username"], password = config["Auth:BootstrapOperator:Password"];
        if (string.IsNullOrEmpty(username) || string.IsNullOrEmpty(password) || await users.FindAsync(username) is not null) return;
        if (!Users.IsValidUsername(username) || password.Length < 12)
            throw new InvalidOperationException("Auth:BootstrapOperator needs a valid username and a password of at least 12 characters.");
        var user = await users.CreateAsync(username, password, Roles.Operator);
        log.LogInformation("Bootstrap operator {Username} created as {UserId}", username, user?.Id);
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}
