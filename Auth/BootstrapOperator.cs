using Balance.Postings;
using Microsoft.Extensions.Options;

namespace Balance.Auth;

// Outside Development there are no demo accounts: the first operator comes from configuration
// (Auth:BootstrapOperator:Username / :Password), created once if missing. The password is never logged.
public sealed class BootstrapOperator(Users users, IOptions<BootstrapOperatorOptions> options, ILogger<BootstrapOperator> log) : IHostedService
{
    public async Task StartAsync(CancellationToken ct)
    {
        string? username = options.Value.Username, password = options.Value.Password;
        if (string.IsNullOrEmpty(username) || string.IsNullOrEmpty(password) || await users.FindAsync(username) is not null) return;
        if (!Users.IsValidUsername(username) || password.Length < 12)
            throw new InvalidOperationException("Auth:BootstrapOperator needs a valid username and a password of at least 12 characters.");
        var user = await users.CreateAsync(username, password, Roles.Operator);
        log.LogInformation("Bootstrap operator {Username} created as {UserId}", username, user?.Id);
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}

// Auth:BootstrapOperator. Checked when the operator is created (a valid username, a password of at least 12
// characters), not at every start: once the operator exists the settings are not read.
public sealed class BootstrapOperatorOptions
{
    public const string Section = "Auth:BootstrapOperator";
    public string? Username { get; set; }
    public string? Password { get; set; }
}
