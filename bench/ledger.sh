#!/usr/bin/env bash
# The ledger writer alone, no HTTP: the service's Ledger on the SQLite store (the log, schema 4) and on the store it
# replaced (schema 1, bench/Balance.Bench/ReferenceLedgerStore.cs), side by side, each run its own process on a copy
# of one pre-filled database, interleaved reference/log × --reps. Prints postings/s, KiB written to disk per posting
# (/proc/self/io write_bytes: WAL, checkpoints and a final full checkpoint), CPU µs per posting, the log's start-up
# time and memory, and checks every run's ledger (versions gapless, balances the sum of their postings, chains).
#   bench/ledger.sh [--rows 1000000] [--players 10000] [--batch 64] [--postings 300000] [--reps 3]
#                   [--variants reference,log] [--startup-only]
# The pre-filled databases are kept in LEDGER_PROBE_DIR (default /tmp/balance-ledger-probe; 1 M rows ≈ 0.8 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building (Release)"
dotnet build -c Release bench/Balance.Bench/Balance.Bench.csproj -nologo -v q -clp:ErrorsOnly
echo "== $(uptime)"
exec bench/Balance.Bench/bin/Release/net10.0/Balance.Bench ledger-probe --work "${LEDGER_PROBE_DIR:-/tmp/balance-ledger-probe}" "$@"
