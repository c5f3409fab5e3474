#!/usr/bin/env bash
# Runs every test: the xunit suite (real Kestrel, real SQLite, real PostgreSQL, real sockets) and the browser tests
# in Debian's Chromium; this script installs Chromium and PostgreSQL from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Chromium from Debian (needed by the browser tests)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# The PostgreSQL tests start their own throwaway cluster from these binaries (Balance.Tests/Postgres/PostgresServer.cs).
# The package may also create and start the system cluster on port 5432; the tests never use it.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "Installing PostgreSQL from Debian (needed by the PostgreSQL tests)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
# npm packages for the browser tests, pinned by the committed lock file: React and Vue for the test pages,
# TypeScript and Vite for the package test, the AsyncAPI parser. Installed again only when the lock file changed.
if ! cmp -s Balance.Tests/browser/package-lock.json Balance.Tests/browser/node_modules/.installed-lock.json; then
  (cd Balance.Tests/browser && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json)
fi
# Redocly, openapi-typescript, openapi-fetch and tsc for the OpenAPI client test, and the npm releases of the
# vendored uPlot and Redoc, pinned by their lock file; again when the lock file changed since the last install.
if [ ! -d Balance.Tests/tools/node_modules ] || [ Balance.Tests/tools/package-lock.json -nt Balance.Tests/tools/node_modules/.package-lock.json ]; then
  (cd Balance.Tests/tools && npm ci --no-audit --no-fund --loglevel=error)
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test Balance.slnx --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line for whoever reads the end of the log.
passed=$(grep -E '^\s+Passed: [0-9]+$' "$log" | awk '{s+=$2} END {print s+0}' || true)
failed=$(grep -E '^\s+Failed: [0-9]+$' "$log" | awk '{s+=$2} END {print s+0}' || true)
# A failed test's name and message are repeated here, where a log cut to its tail (as CI shows it) still has them.
if [ "${failed:-0}" != "0" ]; then
  awk '/^  Failed [A-Za-z_][A-Za-z0-9_.]*/ { n = 30; print "----"; }
       n > 0 && /^  (Passed|Skipped) / { n = 0 }
       n > 0 { print; n-- }' "$log"
  echo "----"
fi
echo "$passed passed, $failed failed"
exit "$status"
