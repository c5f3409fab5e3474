using System.Diagnostics;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// The client as a frontend team gets it: wwwroot/ is the npm package @balance/client (its package.json picks
// the client modules, not the demo page). Packed, installed into a small React app, bundled by Vite, run.
[Collection(BrowserCollection.Name)]
public sealed class BrowserPackageTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static readonly string App = Path.Combine(BrowserKit.Root, "app");

    [Fact]
    public async Task ThePackedPackageTypeChecksInstallsBuildsWithViteAndRunsAgainstTheService()
    {
        string tarballs = Directory.CreateTempSubdirectory("balance-pack-").FullName;
        try
        {
            string tarball = await Packaging.PackAsync(output, tarballs);

            // What publishing tools check, on the tarball as published: types resolving in every mode TypeScript has
            // (node10 included, through typesVersions; an ESM-only package is import-only from CommonJS, which
            // attw reports as cjs-resolves-to-esm and is stated in the README), and package.json's fields.
            await Tool.RunAsync(output, BrowserKit.Root, "node", Path.Combine(BrowserKit.Root, "node_modules", "@arethetypeswrong", "cli", "dist", "index.js"),
                tarball, "--ignore-rules", "cjs-resolves-to-esm", "--format", "ascii");
            string unpacked = Path.Combine(tarballs, "unpacked");
            Directory.CreateDirectory(unpacked);
            await Tool.RunAsync(output, tarballs, "tar", "xzf", tarball, "-C", unpacked);
            string publint = await Tool.RunAsync(output, BrowserKit.Root, "node", Path.Combine(BrowserKit.Root, "node_modules", "publint", "src", "cli.js"),
                Path.Combine(unpacked, "package"), "--strict", "--pack", "false");
            Assert.Contains("All good!", publint);
            using (var manifest = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(unpacked, "package", "package.json"))))
            {
                var root = manifest.RootElement;
                Assert.Equal(">=18", root.GetProperty("engines").GetProperty("node").GetString());
                Assert.False(string.IsNullOrEmpty(root.GetProperty("license").GetString()));
                Assert.NotEmpty(root.GetProperty("browserslist").EnumerateArray());
            }

            // A clean install each time, so the app never runs a package left over from an earlier build.
            foreach (var dir in new[] { "node_modules", "code", "dist" })
                if (Directory.Exists(Path.Combine(App, dir))) Directory.Delete(Path.Combine(App, dir), recursive: true);
            await Tool.RunAsync(output, App, "npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error", tarball);
            string installed = Path.Combine(App, "node_modules", "@balance", "client");
            Assert.Equal(["CHANGELOG.md", "LICENSE", "README.md", "balance-client.d.ts", "balance-client.js", "balance-react.d.ts", "balance-react.js", "balance-vue.d.ts", "balance-vue.js", "package.json"],
                Directory.GetFiles(installed).Select(Path.GetFileName).Order(StringComparer.Ordinal));

            // tsc: the shipped declarations against the shipped code (copied without its .d.ts, so its types are
            // inferred from the JavaScript), and the documented usage against the declarations.
            Directory.CreateDirectory(Path.Combine(App, "code"));
            foreach (var js in Directory.GetFiles(installed, "*.js")) File.Copy(js, Path.Combine(App, "code", Path.GetFileName(js)));
            await Tool.RunAsync(output, App, "node", Path.Combine(BrowserKit.Root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json");

            await Tool.RunAsync(output, App, "node", Path.Combine(BrowserKit.Root, "node_modules", "vite", "bin", "vite.js"),
                "build", "--base", "./", "--outDir", "dist", "--emptyOutDir", "--logLevel", "warn");
            Assert.True(File.Exists(Path.Combine(App, "dist", "index.html")));
        }
        finally
        {
            Directory.Delete(tarballs, recursive: true);
        }

        await using var app = new BalanceApplication();
        var alice = await app.LoginAsync("alice");
        var op = await app.LoginAsync("operator");
        var page = await BrowserKit.OpenPageAsync(chromium.Browser, app.BaseAddress, output);
        await using var pageContext = page.Context;
        var served = new List<string>();
        page.Request += (_, request) => { lock (served) served.Add(new Uri(request.Url).AbsolutePath); };
        await page.GotoAsync("/__test/app/dist/index.html");
        await page.WaitForAsync("() => window.appReady");
        await page.EvaluateAsync("token => startApp(token)", alice.AccessToken);
        await page.WaitForAsync("() => document.querySelector('#balance')?.textContent === '100.00' && document.querySelector('#status').textContent === 'connected'");
        await app.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "12.25", currency = "USD" });
        await page.WaitForAsync("() => document.querySelector('#balance').textContent === '87.75'");

        // The client came inside Vite's bundle, not from the service's copy.
        lock (served) Assert.DoesNotContain(served, p => p.StartsWith("/balance-", StringComparison.Ordinal));
    }
}

public static class Packaging
{
    private static readonly string Package = Path.GetFullPath(Path.Combine(BrowserKit.Root, "..", "..", "wwwroot"));

    // npm pack wwwroot into destination; the tarball's full path.
    public static async Task<string> PackAsync(ITestOutputHelper output, string destination)
    {
        string packed = (await Tool.RunAsync(output, Package, "npm", "pack", "--pack-destination", destination, "--silent")).Trim().Split('\n')[^1];
        string tarball = Path.Combine(destination, packed);
        Assert.True(File.Exists(tarball), $"npm pack made no {tarball}");
        return tarball;
    }
}

// Node tools the tests drive (npm, tsc, vite, the AsyncAPI parser), from Balance.Tests/browser/node_modules.
public static class Tool
{
    public static async Task<string> RunAsync(ITestOutputHelper output, string directory, string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        start.Environment["NO_COLOR"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"{file} {string.Join(' ', args)} did not finish within 2 minutes");
        }
        string text = await stdout, errors = await stderr;
        output.WriteLine($"$ {Path.GetFileName(file)} {string.Join(' ', args.Select(Path.GetFileName))}\n{text}{errors}");
        Assert.True(process.ExitCode == 0, $"{Path.GetFileName(file)} {string.Join(' ', args)} exited {process.ExitCode}:\n{text}\n{errors}");
        return text;
    }
}
