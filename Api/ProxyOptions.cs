

namespace Balance.Api;

// Behind a proxy or load balancer: X-Forwarded-For / -Proto / -Host are honoured only from these peers (addresses and
// CIDR networks), so a client cannot name its own address to dodge a per-address limit. Both empty by default.
public sealed class ProxyOptions : System.ComponentModel.DataAnnotations.IValidatableObject
{
    public string[] KnownProxies { get; set; } = [];
    public string[] KnownNetworks { get; set; } = [];

    public bool AnyConfigured => KnownProxies.Length > 0 || KnownNetworks.Length > 0;

    public bool IsValid(out string error)
    {
        string? bad = KnownProxies.FirstOrDefault(p => !System.Net.IPAddress.TryParse(p, out _));
        bad ??= KnownNetworks.FirstOrDefault(n => !System.Net.IPNetwork.TryParse(n, out _));
        error = bad is null ? "" : $"ForwardedHeaders: '{bad}' is not an IP address (KnownProxies) or a CIDR network such as 10.0.0.0/8 (KnownNetworks).";
        return bad is null;
    }

    public IEnumerable<System.ComponentModel.DataAnnotations.ValidationResult> Validate(System.ComponentModel.DataAnnotations.ValidationContext context)
    {
        if (!IsValid(out string error)) yield return new(error, [nameof(KnownProxies), nameof(KnownNetworks)]);
    }

    public void ApplyTo(Microsoft.AspNetCore.Builder.ForwardedHeadersOptions o)
    {
        o.ForwardedHeaders = Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders.XForwardedFor
            | Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders.XForwardedProto
            | Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders.XForwardedHost;
        o.KnownProxies.Clear(); // the framework trusts loopback by default: a local client could then spoof any address
        o.KnownIPNetworks.Clear();
        foreach (string p in KnownProxies) o.KnownProxies.Add(System.Net.IPAddress.Parse(p));
        foreach (string n in KnownNetworks) o.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(n));
        o.ForwardLimit = null; // a chain of known proxies is walked back to the first address that is not one
    }
}
