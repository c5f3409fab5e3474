using Balance.Postings;
using Microsoft.Extensions.Options;

namespace Balance.Sockets;

// What one socket needs from the service, and nothing more: its limits, clock, counters and logs, its auth, its
// admission, and its first balances. (The hub is not a bag of services: a socket asks it only for its place among
// its player's sockets, ISocketRegistry.)
public sealed class SocketContext(IOptions<SocketOptions> options, SocketStats stats, SocketAuth auth, SocketAdmission admission, Ledger ledger,
    TimeProvider time, ILoggerFactory loggers)
{
    internal static readonly Action<ILogger, Guid, string, long, long, Exception?> LogPush = LoggerMessage.Define<Guid, string, long, long>(
        LogLevel.Information, new EventId(2, "Pushed"), "Pushed {UserId} {Currency} v{Version} to socket {SocketId}");

    public SocketOptions Options { get; } = options.Value;
    public SocketStats Stats => stats;
    public SocketAuth Auth => auth;
    public SocketAdmission Admission => admission;
    public TimeProvider Time => time;
    public ILogger Log { get; } = loggers.CreateLogger<BalanceSocket>(); // one category for the whole socket side: the hub's
    public ILogger Audit { get; } = loggers.CreateLogger("Balance.Audit"); // one line per push, beside the ledger's line per commit

    public long Now => time.GetUtcNow().UtcTicks;

    /// Every wallet of the player: the balances a socket starts with.
    public Task<IReadOnlyList<BalanceChange>> SnapshotAsync(Guid userId) => ledger.WalletsAsync(userId);
}

// The hub, as a socket sees it.
internal interface ISocketRegistry
{
    /// Joins its player's sockets, the fan-out's list (its place was taken first: SocketAdmission.TryTakePlace).
    void Register(Connection connection);
    bool Stopping { get; }
}
