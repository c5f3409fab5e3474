using Balance.Bench;

// `Balance.Bench worker` is a socket worker started by the coordinator; anything else runs the benchmark.
if (args.Length > 0 && args[0] == "worker") return await Worker.RunAsync();
return await Coordinator.RunAsync(Options.Parse(args));
