using System.Diagnostics.Metrics;

namespace Balance.Storage;

// An engine's own numbers on the service's meter (SQLite's pragmas and WAL; PostgreSQL's change feed).
public interface IStorageInstruments
{
    void Create(Meter meter);
}
