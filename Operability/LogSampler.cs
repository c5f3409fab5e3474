namespace Balance.Operability;

// A log line that a stranger's flood or an outage can cause on every request gets a budget: at most one line per
// interval, and that line counts the events it stands for since the last one. On the monotonic clock (a wall clock
// stepped back would silence it), and lock-free: one compare-exchange decides which caller writes.
public sealed class LogSampler(TimeProvider time, TimeSpan interval)
{
    private readonly long _interval = (long)(interval.TotalSeconds * time.TimestampFrequency);
    private long _loggedAt = long.MinValue / 2;
    private int _unlogged;

    // True for the caller that writes this interval's line, with how many events went unlogged before it; false (and
    // counted) for every other.
    public bool TryTake(out int unlogged)
    {
        long now = time.GetTimestamp(), last = Volatile.Read(ref _loggedAt);
        if (now - last < _interval || Interlocked.CompareExchange(ref _loggedAt, now, last) != last)
        {
            Interlocked.Increment(ref _unlogged);
            unlogged = 0;
            return false;
        }
        unlogged = Interlocked.Exchange(ref _unlogged, 0);
        return true;
    }
}
