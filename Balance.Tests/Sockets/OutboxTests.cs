using System.Text;

namespace Balance.Tests;

// A socket's outbox (Sockets/Outbox.cs) without a socket: the newest balance per currency replaces a waiting older
// one, other frames queue in order, the close goes last and ends the queue, and the send loop's wait wakes.
[Trait("Category", "Unit")]
public sealed class OutboxTests
{
    private readonly SocketStats _stats = new();
    private readonly Outbox _outbox;

    public OutboxTests() => _outbox = new Outbox(_stats);

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    private List<string> Drain()
    {
        var taken = new List<string>();
        while (_outbox.TryTake(out var next, out _))
        {
            taken.Add(next.Close is { } close ? $"close {close.Code}" : Encoding.UTF8.GetString(next.Bytes));
            if (next.Close is not null) break;
        }
        return taken;
    }

    [Fact]
    public void AWaitingBalanceIsReplacedByANewerOneOfItsCurrency()
    {
        _outbox.Enqueue(Bytes("USD v1"), "USD", 1);
        _outbox.Enqueue(Bytes("USD v2"), "USD", 2);
        _outbox.Enqueue(Bytes("USD v3"), "USD", 3);
        Assert.Equal(["USD v3"], Drain());
        Assert.Equal(2, _stats.Coalesced);
        Assert.Equal(1, _stats.DeepestOutbox);
    }

    [Fact]
    public void AnOlderBalanceArrivingLateDoesNotReplaceANewerOneWaiting()
    {
        _outbox.Enqueue(Bytes("USD v5"), "USD", 5);
        _outbox.Enqueue(Bytes("USD v4"), "USD", 4); // another node's feed, late
        Assert.Equal(["USD v5"], Drain());
        Assert.Equal(1, _stats.Coalesced);
    }

    [Fact]
    public void EachCurrencyKeepsItsPlaceAndItsNewestBalanceBehindTheFirst()
    {
        _outbox.Enqueue(Bytes("USD v1"), "USD", 1);
        _outbox.Enqueue(Bytes("EUR v1"), "EUR", 1);
        _outbox.Enqueue(Bytes("BTC v1"), "BTC", 1);
        _outbox.Enqueue(Bytes("EUR v2"), "EUR", 2); // coalesced in the spill list
        _outbox.Enqueue(Bytes("USD v2"), "USD", 2); // coalesced at the head
        Assert.Equal(["USD v2", "EUR v2", "BTC v1"], Drain());
        Assert.Equal(2, _stats.Coalesced);
        Assert.Equal(3, _stats.DeepestOutbox); // bounded by the currencies, not by the updates
    }

    [Fact]
    public void FramesWithoutACurrencyQueueInOrderAndAreNeverCoalesced()
    {
        _outbox.Enqueue(Bytes("auth_ok"), null, 0);
        _outbox.Enqueue(Bytes("ping"), null, 0);
        _outbox.Enqueue(Bytes("ping"), null, 0);
        _outbox.Enqueue(Bytes("USD v1"), "USD", 1);
        Assert.Equal(["auth_ok", "ping", "ping", "USD v1"], Drain());
        Assert.Equal(0, _stats.Coalesced);
    }

    [Fact]
    public void TheCloseGoesAfterWhatIsWaitingAndEndsTheQueue()
    {
        _outbox.Enqueue(Bytes("USD v1"), "USD", 1);
        Assert.False(_outbox.Closing);
        Assert.True(_outbox.TryClose(CloseReason.SessionRevoked, Bytes("error")));
        Assert.True(_outbox.Closing);
        Assert.False(_outbox.TryClose(CloseReason.GoingAway, [])); // the first reason stands
        _outbox.Enqueue(Bytes("USD v2"), "USD", 2); // nothing is queued once closing

        Assert.True(_outbox.TryTake(out var first, out _));
        Assert.Equal("USD v1", Encoding.UTF8.GetString(first.Bytes));
        Assert.True(_outbox.TryTake(out var close, out _));
        Assert.Same(CloseReason.SessionRevoked, close.Close);
        Assert.Equal("error", Encoding.UTF8.GetString(close.Bytes)); // the frame sent before the close
    }

    [Fact]
    public async Task TheSendLoopsWaitWakesOnABalanceAndOnTheClose()
    {
        Assert.False(_outbox.TryTake(out _, out var wait));
        Assert.False(wait.IsCompleted);
        _outbox.Enqueue(Bytes("USD v1"), "USD", 1);
        await wait.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(_outbox.TryTake(out var next, out _));
        Assert.Equal("USD", next.Currency);

        Assert.False(_outbox.TryTake(out _, out wait));
        Assert.False(wait.IsCompleted);
        _outbox.TryClose(CloseReason.GoingAway, []);
        await wait.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(_outbox.TryTake(out next, out _));
        Assert.Same(CloseReason.GoingAway, next.Close);
    }

    [Fact]
    public void VersionsOnlyGoUpPerCurrencyOnTheWayOut()
    {
        Assert.True(_outbox.IsNewer("USD", 1));
        Assert.True(_outbox.IsNewer("USD", 3));
        Assert.False(_outbox.IsNewer("USD", 3)); // the same version twice (this node's writer and the change feed)
        Assert.False(_outbox.IsNewer("USD", 2)); // an older one after a newer
        Assert.True(_outbox.IsNewer("EUR", 1)); // each currency on its own
        Assert.True(_outbox.IsNewer("BTC", 7));
        Assert.False(_outbox.IsNewer("BTC", 7));
        Assert.False(_outbox.IsNewer("EUR", 1));
        Assert.True(_outbox.IsNewer("EUR", 2));
        Assert.True(_outbox.IsNewer("USD", 4));
    }

    [Fact]
    public void EveryCloseReasonCarriesTheContractsWireReasonForItsCode()
    {
        foreach (var reason in typeof(CloseReason).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
                     .Select(f => (CloseReason)f.GetValue(null)!))
        {
            Assert.Equal(CloseCodes.Reason(reason.Code), reason.Reason);
            Assert.NotEqual("closed", reason.Reason);
        }
        Assert.Equal((4001, "token_expired"), (CloseReason.TokenExpired.Code, CloseReason.TokenExpired.Reason));
        Assert.Equal((4503, "forbidden", "session_revoked"), (CloseReason.SessionRevoked.Code, CloseReason.SessionRevoked.Reason, CloseReason.SessionRevoked.ErrorCode));
        Assert.Equal("Reconnecting too fast; try again in 3 s.", CloseReason.ReconnectingTooFast(TimeSpan.FromSeconds(2.2)).Message);
        Assert.Equal((1000, "closed", null), (CloseReason.Echo(1000).Code, CloseReason.Echo(1000).Reason, CloseReason.Echo(1000).ErrorCode));
    }
}
