using System.Collections.Concurrent;
using Balance.Auth;
using Balance.Postings;
using Balance.Sockets;

namespace Balance;

// The hub: every open socket, by player; what reaches them, all read in ExecuteAsync — committed changes fanned out to
// every socket of their player, serialized once (this node's from the ledger, Ledger.Changes; other nodes' from the
// change feed, IChangeFeed.Changes), and ended logins whose sockets close 4503 (this node's, Sessions.EndedHere; other
// nodes', IChangeFeed.EndedLogins); one housekeeping tick for all sockets; and the shutdown that pushes in-flight
// commits before the 1001. One socket itself is Sockets/Connection.cs, the way in is Sockets/SocketEndpoint.cs.
public sealed class BalanceSocket : BackgroundService, IHostedLifecycleService, ISocketRegistry
{
    private readonly ConcurrentDictionary<Connection, byte> _all = new();
    private readonly ConcurrentDictionary<Guid, Connection[]> _byPlayer = new();
    private long _nextId;
    private volatile bool _stopping;
    private readonly TaskCompletionSource _fannedOut = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _allClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly SocketContext _context;
    private readonly Ledger _ledger;
    private readonly Sessions _sessions;
    private readonly IChangeFeed[] _feeds;

    public SocketStats Stats => _context.Stats;
    public int OpenSockets => _all.Count;
    public bool Stopping => _stopping;

    public BalanceSocket(SocketContext context, Ledger ledger, Sessions sessions, IEnumerable<IChangeFeed> feeds) =>
        (_context, _ledger, _sessions, _feeds) = (context, ledger, sessions, [.. feeds]);

    internal long NextId() => Interlocked.Increment(ref _nextId);

    internal void Attach(Connection c)
    {
        _all.TryAdd(c, 0);
        Interlocked.Increment(ref Stats.Open);
        if (_stopping) c.Close(CloseReason.GoingAway); // raced the close loop
    }

    internal void Detach(Connection c)
    {
        _all.TryRemove(c, out _);
        Interlocked.Decrement(ref Stats.Open);
        if (c.Authenticated) { Unregister(c); _context.Admission.ReleasePlace(c.UserId); Interlocked.Decrement(ref Stats.Authenticated); }
        Stats.ReportClose(c.CloseCode);
        if (_stopping && _all.IsEmpty) _allClosed.TrySetResult();
    }

    void ISocketRegistry.Register(Connection c)
    {
        while (true)
        {
            var current = _byPlayer.GetOrAdd(c.UserId, []);
            if (_byPlayer.TryUpdate(c.UserId, [.. current, c], current)) return;
        }
    }

    private void Unregister(Connection c)
    {
        while (_byPlayer.TryGetValue(c.UserId, out var current))
        {
            var next = current.Where(x => x != c).ToArray();
            if (next.Length == 0 ? _byPlayer.TryRemove(new KeyValuePair<Guid, Connection[]>(c.UserId, current)) : _byPlayer.TryUpdate(c.UserId, next, current)) return;
        }
    }

    // ---- what reaches the sockets: committed changes and ended logins, this node's and the feed's ----

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250), _context.Time);
        var housekeeping = HousekeepingAsync(timer, stoppingToken);
        // Logins ended here, and those the feeds bring from other nodes: the same close.
        var ended = _feeds.Select(f => CloseEndedAsync(f.EndedLogins, stoppingToken)).Append(CloseEndedAsync(_sessions.EndedHere, stoppingToken)).ToArray();
        // Other nodes' commits (PostgreSQL's change feed), beside this node's own: the same fan-out.
        var feeds = _feeds.Select(f => FanOutAsync(f.Changes, stoppingToken)).ToArray();
        try
        {
            await FanOutAsync(_ledger.Changes, stoppingToken);
        }
        finally { _fannedOut.TrySetResult(); } // the ledger completed its changes (or the host gave up): nothing more comes
        await Task.WhenAll(feeds);
        await Task.WhenAll(ended);
        await housekeeping;
    }

    private async Task FanOutAsync(System.Threading.Channels.ChannelReader<CommittedChange> changes, CancellationToken ct)
    {
        try
        {
            await foreach (var (change, committedAt) in changes.ReadAllAsync(ct))
            {
                if (!_byPlayer.TryGetValue(change.UserId, out var sockets)) continue;
                byte[] bytes = Frames.Balance(change);
                foreach (var socket in sockets) socket.Enqueue(bytes, change.Currency, change.Version, committedAt);
            }
        }
        catch (OperationCanceledException) { }
    }

    // An ended login: every socket of it closes 4503. Its id is read after the login was marked ended (Sessions.MarkRevoked),
    // so a socket authenticating meanwhile either sees it ended or has its session set for this scan to find.
    private async Task CloseEndedAsync(System.Threading.Channels.ChannelReader<string> ended, CancellationToken ct)
    {
        try
        {
            await foreach (string sessionId in ended.ReadAllAsync(ct))
                foreach (var c in _all.Keys) if (c.SessionId == sessionId) c.Close(CloseReason.SessionRevoked);
        }
        catch (OperationCanceledException) { }
    }

    // One timer for all sockets: auth deadlines, token expiry, heartbeats.
    private async Task HousekeepingAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                long now = _context.Now;
                foreach (var (c, _) in _all) // enumerating the dictionary itself copies nothing
                {
                    // One socket's failure must not end deadlines, expiry, heartbeats and slow-consumer checks for all.
                    try { c.Tick(now); }
                    catch (Exception ex)
                    {
                        Interlocked.Increment(ref _context.Stats.HousekeepingFailures);
                        try
                        {
                            c.Abort(); // first: a logger that throws must not leave the socket unsupervised
                            _context.Log.LogError(ex, "Housekeeping of socket {SocketId} failed; closing it", c.Id);
                        }
                        catch (Exception) { } // a logger that throws here too must not end the loop either
                    }
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    // Shutdown: let in-flight commits finish and reach the sockets, then close every socket with 1001
    // (sockets are long requests: the web server would otherwise wait for them until its timeout).
    public async Task StoppingAsync(CancellationToken ct)
    {
        _stopping = true; // from now on new sockets are refused (503) or closed 1001 at once
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await _ledger.CompleteAsync(limit.Token); // every accepted posting committed and published, Changes completed
            await _fannedOut.Task.WaitAsync(limit.Token); // and every change handed to its sockets' outboxes
        }
        catch (OperationCanceledException) { } // past the limit: close what is open all the same
        foreach (var c in _all.Keys) c.Close(CloseReason.GoingAway);
        if (_all.IsEmpty) _allClosed.TrySetResult();
        try { await _allClosed.Task.WaitAsync(limit.Token); }
        catch (OperationCanceledException) { }
    }

    public Task StartingAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken ct) => Task.CompletedTask;
}
