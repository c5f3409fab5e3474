namespace Balance.Tests;

// The engine-neutral suites once more on a real PostgreSQL: the ledger's rules, idempotency and rollback (RestTests),
// the bank invariant under concurrent clients (InvariantTests), tokens and sessions (SecurityTests, SessionTests), and
// bad input — hand-made and fuzzed — that must get the same clear errors and change nothing (HostileInputTests, FuzzTests).
// What holds on SQLite must hold here, with the same answers.
public sealed class RestTestsOnPostgres : RestTests
{
    protected override Store Store => Store.Postgres;
}

[Collection("Load")]
public sealed class InvariantTestsOnPostgres : InvariantTests
{
    protected override Store Store => Store.Postgres;
}

public sealed class SecurityTestsOnPostgres : SecurityTests
{
    protected override Store Store => Store.Postgres;
}

public sealed class SessionTestsOnPostgres : SessionTests
{
    protected override Store Store => Store.Postgres;
}

public sealed class HostileInputTestsOnPostgres : HostileInputTests
{
    protected override Store Store => Store.Postgres;
}

[Collection("Load")]
public sealed class FuzzTestsOnPostgres : FuzzTests
{
    protected override Store Store => Store.Postgres;
}

public sealed class AuthAbuseTestsOnPostgres : AuthAbuseTests
{
    protected override Store Store => Store.Postgres;
}

public sealed class AccountAdminTestsOnPostgres : AccountAdminTests
{
    protected override Store Store => Store.Postgres;
}
