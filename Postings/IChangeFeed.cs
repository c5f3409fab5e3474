using System.Threading.Channels;

namespace Balance.Postings;

// What reaches this node's sockets from other nodes, read by the socket hub beside this node's own two streams (the
// ledger's committed changes, Ledger.Changes, and the logins ended here, Auth/Sessions.EndedHere). With PostgreSQL
// (Storage/Postgres/ChangeFeed.cs) it is every node's commits and ended logins, read back from the database.
// Two readers, not one stream of mixed messages: they go different ways (a change to its player's sockets, coalesced
// per wallet; an ended login to the sockets of that login) and are never ordered against each other, and the ledger's
// own stream, the hot path, stays a reader of CommittedChange with nothing to unwrap.
public interface IChangeFeed
{
    /// Committed balance changes. A change may come twice (from this node's writer and from the feed); a socket sends
    /// a wallet's version once and never an older one after a newer.
    ChannelReader<CommittedChange> Changes { get; }

    /// Logins ended on another node (a logout, a reused refresh token): the session ids, each once, already marked
    /// ended in this node's Sessions (so its REST routes refuse their tokens) when they come.
    ChannelReader<string> EndedLogins { get; }
}
