using System.ComponentModel.DataAnnotations;

namespace Balance.Sockets;

public sealed class SocketOptions
{
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan AuthTimeout { get; set; } = TimeSpan.FromSeconds(10);
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(10);
    // WebSocket-level pings for every socket (guide protocol included): a peer that does not answer one within
    // KeepAliveTimeout is dropped, so a phone that lost its signal does not keep its place under MaxSocketsPerPlayer.
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(15);
    [Range(1, int.MaxValue)]
    public int MaxSocketsPerPlayer { get; set; } = 10;
    [Range(1, int.MaxValue)]
    public int MaxUnauthenticatedPerIp { get; set; } = 200;
    [Range(0.001, double.MaxValue)]
    public double MessagesPerSecond { get; set; } = 5;
    [Range(1, int.MaxValue)]
    public int MessageBurst { get; set; } = 20;
    public string[] AllowedOrigins { get; set; } = [];
    // Opening a socket costs a token check and a database read (the snapshot): a client reconnecting in a tight loop
    // is slowed down first, per address (HTTP 429 + Retry-After on the upgrade) and per player (429 with header auth;
    // close 4004 after the auth message, before the snapshot read). Token buckets: a burst, then a steady rate.
    [Range(1, int.MaxValue)]
    public int ConnectBurstPerAddress { get; set; } = 200;
    [Range(0.001, 1_000_000)]
    public double ConnectsPerSecondPerAddress { get; set; } = 50;
    [Range(1, int.MaxValue)]
    public int ConnectBurstPerPlayer { get; set; } = 20;
    [Range(0.001, 1_000_000)]
    public double ConnectsPerSecondPerPlayer { get; set; } = 2;

    // A browser origin other than the service's own that may open a socket: configured ones, and in Development any
    // loopback one (the rule CORS uses too, with its own list: Api/CorsOrigins).
    public bool AllowsCrossOrigin(string origin, bool development) => Api.CorsOrigins.Allows(AllowedOrigins, origin, development);
}
