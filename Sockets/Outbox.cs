using System.Threading.Tasks.Sources;

namespace Balance.Sockets;

// One socket's outbox: bounded by design. A balance for a currency that is still waiting is replaced by the newer one
// (only the newest balance per currency is kept); control frames queue in order; a close, once asked for, goes after
// what is waiting and ends the queue. Sized for the usual case, one waiting message, held inline; a second one
// (another currency, a ping) spills into a small list. The send loop waits on this object itself (IValueTaskSource):
// no allocation per wake, and an idle socket holds no task. Fifteen thousand idle sockets make every field count.
public sealed class Outbox(SocketStats stats) : IValueTaskSource
{
    /// A frame to send: a balance (Currency and Version set), another frame, or the close (Close set).
    public readonly record struct Item(byte[] Bytes, string? Currency, long Version, long CommittedAt = 0, CloseReason? Close = null);

    private object Gate => this;
    private Item _head;
    private bool _hasHead;
    private List<Item>? _more;
    private ManualResetValueTaskSourceCore<bool> _signal = new() { RunContinuationsAsynchronously = true };
    private bool _waiting;
    private Item? _close;
    private volatile bool _closing;
    private string? _sentCurrency; // the newest version sent, per currency: one inline, others in a dictionary
    private long _sentVersion;
    private Dictionary<string, long>? _sentOther;

    /// A close was asked for: nothing more is queued.
    public bool Closing => _closing;

    public void Enqueue(byte[] bytes, string? currency, long version, long committedAt = 0)
    {
        bool wake;
        lock (Gate)
        {
            if (_close is not null) return;
            var item = new Item(bytes, currency, version, committedAt);
            if (currency is not null && _hasHead && _head.Currency == currency)
            {
                if (_head.Version < version) _head = item;
                Interlocked.Increment(ref stats.Coalesced);
                return;
            }
            int i = currency is null || _more is null ? -1 : _more.FindIndex(o => o.Currency == currency);
            if (i >= 0)
            {
                if (_more![i].Version < version) _more[i] = item;
                Interlocked.Increment(ref stats.Coalesced);
                return;
            }
            if (!_hasHead) (_head, _hasHead) = (item, true);
            else (_more ??= new List<Item>(2)).Add(item);
            stats.NoteDepth(1 + (_more?.Count ?? 0));
            wake = _waiting;
            _waiting = false;
        }
        if (wake) _signal.SetResult(true);
    }

    /// Queues the close (after what is waiting), with the frame sent before it; true when this call asked for it first.
    public bool TryClose(CloseReason reason, byte[] before)
    {
        bool wake;
        lock (Gate)
        {
            if (_close is not null) return false;
            _close = new Item(before, null, 0, 0, reason);
            _closing = true;
            wake = _waiting; // the loop may be idle: let it send the close
            _waiting = false;
        }
        if (wake) _signal.SetResult(true);
        return true;
    }

    /// The next frame to send (the close last), or false and a task that completes when there is one.
    public bool TryTake(out Item next, out ValueTask wait)
    {
        lock (Gate)
        {
            wait = default;
            if (_hasHead)
            {
                next = _head;
                if (_more is { Count: > 0 }) { _head = _more[0]; _more.RemoveAt(0); }
                else (_head, _hasHead) = (default, false);
                return true;
            }
            if (_close is { } close) { next = close; return true; }
            next = default;
            _signal.Reset();
            _waiting = true;
            wait = new ValueTask(this, _signal.Version);
            return false;
        }
    }

    // Versions only go up on a socket: a balance older than one already sent for its currency is dropped. Called by
    // the send loop alone.
    public bool IsNewer(string currency, long version)
    {
        if (_sentCurrency is null || _sentCurrency == currency)
        {
            if (_sentCurrency is not null && _sentVersion >= version) return false;
            (_sentCurrency, _sentVersion) = (currency, version);
            return true;
        }
        _sentOther ??= new Dictionary<string, long>(1);
        if (_sentOther.TryGetValue(currency, out long sent) && sent >= version) return false;
        _sentOther[currency] = version;
        return true;
    }

    void IValueTaskSource.GetResult(short token) => _signal.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _signal.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _signal.OnCompleted(continuation, state, token, flags);
}
