namespace Balance.Tests.Browser;

public sealed class VendoredFileTests
{
    // The page loads uPlot from /vendor/uplot, never a CDN; the copy must be npm's own release, licence included.
    [Theory]
    [InlineData("dist/uPlot.iife.min.js", "uPlot.iife.min.js")]
    [InlineData("dist/uPlot.min.css", "uPlot.min.css")]
    [InlineData("LICENSE", "LICENSE")]
    public void TheVendoredUPlotIsTheNpmPackagesOwnFile(string inPackage, string vendored)
    {
        string wwwroot = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Tools.Root))!, "wwwroot", "vendor", "uplot");
        Assert.Equal(File.ReadAllBytes(Path.Combine(Tools.Root, "node_modules", "uplot", inPackage)), File.ReadAllBytes(Path.Combine(wwwroot, vendored)));
    }

    // The reference page's Redoc, likewise.
    [Theory]
    [InlineData("bundles/redoc.standalone.js", "redoc.standalone.js")]
    [InlineData("bundles/redoc.standalone.js.LICENSE.txt", "redoc.standalone.js.LICENSE.txt")]
    [InlineData("LICENSE", "LICENSE")]
    public void TheVendoredRedocIsTheNpmPackagesOwnFile(string inPackage, string vendored)
    {
        string reference = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Tools.Root))!, "reference");
        Assert.Equal(File.ReadAllBytes(Path.Combine(Tools.Root, "node_modules", "redoc", inPackage)), File.ReadAllBytes(Path.Combine(reference, vendored)));
    }
}
