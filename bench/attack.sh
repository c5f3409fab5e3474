#!/usr/bin/env bash
# Auth under hostile load (issue 19 §1): postings/s of 8 steady clients and the p99 of a probe posting every 20 ms,
# with no attack (baseline) and under each attack — a player's 8 logins spending their refresh tokens in a loop
# (refresh), 600 logins for unknown names from 20 loopback addresses within their per-address allowance (flood),
# login bodies that are not JSON in a closed loop from one address (garbage; not in the default modes) —
# interleaved none, refresh, none, flood, RUNS times, on one fresh service (SQLite, Development, as the issue).
# Prints a line per phase, then per mode the median and [min-max] over the runs and the ratio to the baseline.
#   bench/attack.sh [--runs 3] [--seconds 15] [--service-dir DIR] [--env Auth__Key=value ...] [--modes none,refresh,none,flood]
#   DIR: another checkout to build and measure (e.g. `git archive <commit> | tar -x -C DIR`: the code before);
#   --env: a setting for the service (repeatable), e.g. --env Auth__ThrottledAnswerDelay=00:00:00
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RUNS=3; SECONDS_PER_PHASE=15; SERVICE_DIR=$PWD; MODES=none,refresh,none,flood; SERVICE_ENV=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --service-dir) SERVICE_DIR=$(cd "$2" && pwd); shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --env) SERVICE_ENV+=("$2"); shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
PORT=${SERVICE_PORT:-18190}
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d /tmp/balance-attack.XXXXXX)
SERVICE_PID=""
trap stop_service EXIT

echo "== building (Release): $SERVICE_DIR and bench/Attack"
dotnet build -c Release "$SERVICE_DIR/Balance.csproj" -nologo -v q -clp:ErrorsOnly -o "$WORK/service"
dotnet build -c Release bench/Attack/Attack.csproj -nologo -v q -clp:ErrorsOnly -o "$WORK/attack"

env ASPNETCORE_ENVIRONMENT=Development Logging__LogLevel__Default=Warning \
  ConnectionStrings__Balance="Data Source=$WORK/balance.db" "${SERVICE_ENV[@]}" \
  dotnet "$WORK/service/Balance.dll" --urls "$BASE" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 120); do curl -sf "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -sf "$BASE/healthz" >/dev/null || { echo "service did not start:"; cat "$WORK/service.log"; exit 1; }

echo "== $(nproc) cores, $(uptime | sed 's/.*load/load/'); service: $SERVICE_DIR $(git -C "$SERVICE_DIR" rev-parse --short HEAD 2>/dev/null || echo '(not a git checkout)') ${SERVICE_ENV[*]}"
dotnet "$WORK/attack/Attack.dll" --url "$BASE" --runs "$RUNS" --seconds "$SECONDS_PER_PHASE" --modes "$MODES" --log "$WORK/service.log"
echo "== after: $(uptime | sed 's/.*load/load/')"
