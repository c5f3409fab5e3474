using Balance.Bench;

// `Balance.Bench worker` is a socket worker started by the coordinator; anything else runs the benchmark.
if (args.Length > 0 && args[0] == "worker") return await Worker.RunAsync();
// `Balance.Bench ledger-probe [...]`: the ledger writer alone, today's store against the one before it (LedgerProbe.cs).
if (args.Length > 0 && args[0] == "ledger-probe") return await LedgerProbe.RunAsync(args);
if (args.Length > 0 && args[0] == "ledger-probe-run") return await LedgerProbe.RunOneAsync(args);
return await Coordinator.RunAsync(Options.Parse(args));
