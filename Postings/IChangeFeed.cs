using System.Threading.Channels;

namespace Balance.Postings;

// Committed changes that reach this node from elsewhere — with PostgreSQL, every node's commits, read back from the
// ledger — fanned out by the socket hub beside the ledger's own. A change may come twice (from this node's writer
// and from the feed); a socket sends a wallet's version once and never an older one after a newer.
public interface IChangeFeed
{
    ChannelReader<CommittedChange> Changes { get; }
}
