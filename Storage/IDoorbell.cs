namespace Balance.Storage;

// Tells the other nodes' change feeds to look now rather than at their next poll, after something they must see was
// committed here (a ledger batch, an ended login). PostgreSQL's is Postgres/Doorbell.cs (one NOTIFY); with SQLite there
// are no other nodes and none is registered.
public interface IDoorbell
{
    void Ring();
}
