using System.Net;
using System.Net.Sockets;

namespace Balance.Auth;

// What the per-address limits count by. An IPv6 client is usually given a whole /64 (SLAAC, privacy addresses): it
// can change the low 64 bits at will, so a /64 is one address. IPv4-mapped IPv6 is its IPv4 address.
public static class ClientAddress
{
    public static string Key(IPAddress? ip)
    {
        if (ip is null) return "unknown";
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        if (ip.AddressFamily != AddressFamily.InterNetworkV6) return ip.ToString();
        byte[] bytes = ip.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new IPAddress(bytes) + "/64";
    }

    public static string Key(HttpContext http) => Key(http.Connection.RemoteIpAddress);
}
