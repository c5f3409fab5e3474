namespace Balance.Tests;

// The load-heavy proofs run alone, after the parallel tests: they would otherwise starve the timing-sensitive
// socket tests of CPU on a 2-core machine, and be starved by them.
[CollectionDefinition("Load", DisableParallelization = true)]
public sealed class LoadCollection;
