using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Balance.Tests.Browser;

// docs/client.md's quickstarts, taken from the file itself (each code block after a <!-- file: path --> line), so the
// docs cannot rot: installed against the packed package, type-checked strictly (tsc: React, Next.js, TanStack Query;
// vue-tsc: the Vue component with its template, Nuxt), built with Vite (React, Vue), and the React one run in
// Chromium against the service.
[Collection(BrowserCollection.Name)]
public sealed partial class BrowserQuickstartTests(ChromiumFixture chromium, ITestOutputHelper output)
{
    private static readonly string Dir = Path.Combine(BrowserKit.Root, "quickstarts");
    private static readonly string Docs = Path.GetFullPath(Path.Combine(BrowserKit.Root, "..", "..", "docs", "client.md"));

    [GeneratedRegex(@"<!-- file: (?<path>\S+) -->\s*\n```\w*\n(?<code>.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex FileBlock();

    private Task<string> NodeToolAsync(string tool, params string[] args) =>
        Tool.RunAsync(output, Dir, "node", [Path.Combine(BrowserKit.Root, "node_modules", tool), .. args]);

    [Fact]
    public async Task EveryQuickstartInTheDocsTypeChecksBuildsAndTheReactOneShowsLiveBalances()
    {
        if (Directory.Exists(Dir)) Directory.Delete(Dir, recursive: true);
        Directory.CreateDirectory(Dir);
        var files = FileBlock().Matches(await File.ReadAllTextAsync(Docs)).ToDictionary(m => m.Groups["path"].Value, m => m.Groups["code"].Value + "\n");
        Assert.Subset(files.Keys.ToHashSet(), new HashSet<string> { "balance-auth.ts", "react/Wallet.tsx", "react/main.tsx", "react/index.html",
            "vue/Wallet.vue", "vue/main.ts", "vue/index.html", "next/app/wallet/LiveBalance.tsx", "nuxt/plugins/balance.client.ts", "tanstack/useLiveBalance.ts" });
        foreach (var (path, code) in files)
        {
            string file = Path.Combine(Dir, path);
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            await File.WriteAllTextAsync(file, code);
        }

        // The package as an app installs it; React, Vue, TanStack Query and the tools come from Balance.Tests/browser.
        await File.WriteAllTextAsync(Path.Combine(Dir, "package.json"), """{ "name": "quickstarts", "private": true, "type": "module" }""");
        string tarball = await Packaging.PackAsync(output, Dir);
        await Tool.RunAsync(output, Dir, "npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error", tarball);

        // Nuxt itself is not installed (it is large): its auto-imported defineNuxtPlugin is declared with Nuxt's shape.
        await File.WriteAllTextAsync(Path.Combine(Dir, "nuxt-env.d.ts"),
            "declare function defineNuxtPlugin<T extends Record<string, unknown> | void>(plugin: (nuxtApp: unknown) => T | Promise<T>): unknown;\n");
        await File.WriteAllTextAsync(Path.Combine(Dir, "tsconfig.json"), """
            {
              "compilerOptions": {
                "target": "ES2022", "module": "ESNext", "moduleResolution": "Bundler", "lib": ["ES2022", "DOM", "DOM.Iterable"],
                "jsx": "react-jsx", "strict": true, "noEmit": true, "skipLibCheck": true, "types": []
              },
              "include": ["balance-auth.ts", "react/**/*.tsx", "next/**/*.tsx", "tanstack/**/*.ts"]
            }
            """);
        await NodeToolAsync(Path.Combine("typescript", "bin", "tsc"), "-p", "tsconfig.json");
        // Vue's single-file component, template included, and the Nuxt plugin: vue-tsc.
        await File.WriteAllTextAsync(Path.Combine(Dir, "tsconfig.vue.json"), """
            {
              "compilerOptions": {
                "target": "ES2022", "module": "ESNext", "moduleResolution": "Bundler", "lib": ["ES2022", "DOM", "DOM.Iterable"],
                "strict": true, "noEmit": true, "skipLibCheck": true, "types": []
              },
              "include": ["balance-auth.ts", "vue/**/*.ts", "vue/**/*.vue", "nuxt/**/*.ts", "nuxt-env.d.ts"]
            }
            """);
        await NodeToolAsync(Path.Combine("vue-tsc", "bin", "vue-tsc.js"), "-p", "tsconfig.vue.json");

        await File.WriteAllTextAsync(Path.Combine(Dir, "vite.react.mjs"), "export default { esbuild: { jsx: 'automatic' }, logLevel: 'warn' };\n");
        await File.WriteAllTextAsync(Path.Combine(Dir, "vite.vue.mjs"), "import vue from '@vitejs/plugin-vue';\nexport default { plugins: [vue()], logLevel: 'warn' };\n");
        foreach (var app in new[] { "react", "vue" })
        {
            await NodeToolAsync(Path.Combine("vite", "bin", "vite.js"), "build", app, "--config", $"vite.{app}.mjs", "--base", "./",
                "--outDir", Path.Combine(Dir, app, "dist"), "--emptyOutDir");
            Assert.True(File.Exists(Path.Combine(Dir, app, "dist", "index.html")));
        }

        // The React quickstart, as built, against the service: tokens from a login, live balances.
        await using var service = new BalanceApplication();
        var alice = await service.LoginAsync("alice");
        var op = await service.LoginAsync("operator");
        await using var context = await BrowserKit.OpenContextAsync(chromium.Browser, service.BaseAddress);
        await context.AddInitScriptAsync($"localStorage.setItem('balance.access_token', '{alice.AccessToken}'); localStorage.setItem('balance.refresh_token', '{alice.RefreshToken}');");
        var page = await BrowserKit.NewPageAsync(context, output, "/__test/quickstarts/react/dist/index.html");
        await page.WaitForAsync("() => document.querySelector('#balance')?.textContent === '100.00 USD' && document.querySelector('#status').textContent === 'connected'");
        await service.PostOkAsync(op.AccessToken, new { user_id = alice.UserId, type = "bet", amount = "12.25", currency = "USD" });
        await page.WaitForAsync("() => document.querySelector('#balance').textContent === '87.75 USD'");
    }
}
