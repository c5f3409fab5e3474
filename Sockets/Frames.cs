using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Balance.Postings;

namespace Balance.Sockets;

// Every frame the socket writes, serialized through one source-generated JSON context (SocketJson): the balance,
// balance.v2's auth_ok, ping and error frames.
public static class Frames
{
    public static readonly byte[] Ping = JsonSerializer.SerializeToUtf8Bytes(new PingFrame("ping"), SocketJson.Default.PingFrame);

    public static byte[] Balance(BalanceChange change) => JsonSerializer.SerializeToUtf8Bytes(BalanceMessage.From(change), SocketJson.Default.BalanceMessage);

    public static byte[] AuthOk(Guid userId, long expiresTicks) => JsonSerializer.SerializeToUtf8Bytes(
        new AuthOkFrame("auth_ok", userId, new DateTime(expiresTicks, DateTimeKind.Utc).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)),
        SocketJson.Default.AuthOkFrame);

    /// The error frame a balance.v2 client gets before the close; none for a reason without an error code.
    public static byte[] Error(CloseReason reason) => reason.ErrorCode is null
        ? []
        : JsonSerializer.SerializeToUtf8Bytes(new ErrorFrame("error", reason.ErrorCode, reason.Message ?? reason.ErrorCode), SocketJson.Default.ErrorFrame);
}

public sealed record PingFrame(string Type);
public sealed record AuthOkFrame(string Type, Guid UserId, string ExpiresAt);
public sealed record ErrorFrame(string Type, string Code, string Message);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(BalanceMessage))]
[JsonSerializable(typeof(PingFrame))]
[JsonSerializable(typeof(AuthOkFrame))]
[JsonSerializable(typeof(ErrorFrame))]
public sealed partial class SocketJson : JsonSerializerContext;
