namespace Balance;

// What this node is: the engine it stores in (Balance:Store) and its name (Balance:NodeId: on the operations page,
// and the application_name of its PostgreSQL change feed). Bound by AddStorage; the defaults are set here only.
public sealed class NodeOptions
{
    // The service's own section; its other top-level keys belong to LedgerOptions (MaxBatch) and SqliteOptions.
    public const string Section = "Balance";

    // Sqlite (the default, one node, nothing to set up) or Postgres (N nodes on one database).
    public string Store { get; set; } = "Sqlite";

    // Unset or empty: <host>-<pid>.
    public string NodeId { get; set; } = "";

    public bool IsPostgres => Store.Equals("Postgres", StringComparison.OrdinalIgnoreCase);

    /// Empty settings take their defaults; an engine other than the two is refused.
    public static void Complete(NodeOptions o)
    {
        if (string.IsNullOrEmpty(o.Store)) o.Store = "Sqlite";
        if (!o.Store.Equals("Sqlite", StringComparison.OrdinalIgnoreCase) && !o.IsPostgres)
            throw new InvalidOperationException($"Balance:Store must be Sqlite or Postgres, not '{o.Store}'.");
        if (string.IsNullOrEmpty(o.NodeId)) o.NodeId = $"{Environment.MachineName}-{Environment.ProcessId}";
    }

    /// The same binding, read while services are registered: the engine decides which services exist.
    public static NodeOptions Read(IConfiguration config)
    {
        var o = config.GetSection(Section).Get<NodeOptions>() ?? new NodeOptions();
        Complete(o);
        return o;
    }
}
