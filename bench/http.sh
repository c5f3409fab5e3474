#!/usr/bin/env bash
# HTTP throughput through a light generator: wrk (Debian's), one thread, against the service in Production on a
# fresh database. In the same run it measures the no-op ceiling (GET /healthz) and durable postings
# (POST /api/transactions: 0.01 USD deposits, a unique Idempotency-Key each, players round-robin), RUNS times each,
# alternating, and prints the generator's CPU beside the server's: a generator that costs more than a third of the
# server's CPU is flagged, because then it hides the server.
#   bench/http.sh [--duration 10] [--connections 64] [--runs 3] [--players 50]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10; CONNECTIONS=64; RUNS=3; PLAYERS=50
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --players) PLAYERS=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
source bench/lib.sh
ensure_wrk
PORT=${SERVICE_PORT:-18180}
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d /tmp/balance-http.XXXXXX)
SERVICE_PID=""
trap stop_service EXIT

echo "== building (Release)"
dotnet build -c Release Balance.csproj -nologo -v q -clp:ErrorsOnly

# Production, as deployed, with the per-address login limit raised (setup creates and logs in from one address).
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning \
  Auth__SigningKey="base64:$(head -c 48 /dev/urandom | base64 -w0)" \
  Auth__BootstrapOperator__Username=operator Auth__BootstrapOperator__Password="$PASSWORD" \
  Auth__LoginAttemptsPerMinutePerIp=1000000 Auth__AccessTokenLifetime=01:00:00 \
  ConnectionStrings__Balance="Data Source=$WORK/balance.db" \
  dotnet bin/Release/net10.0/Balance.dll --urls "$BASE" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 120); do curl -sf "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -sf "$BASE/healthz" >/dev/null || { echo "service did not start:"; cat "$WORK/service.log"; exit 1; }

TOKEN=$(curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"operator\",\"password\":\"$PASSWORD\"}" "$BASE/api/auth/login" | json access_token)
IDS=()
for i in $(seq 1 "$PLAYERS"); do
  IDS+=("$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    -d "{\"username\":\"wrk$i\",\"password\":\"wrk-player-password\",\"role\":\"player\"}" "$BASE/api/users" | json user_id)")
done
export BENCH_TOKEN="$TOKEN"
BENCH_PLAYERS=$(IFS=,; echo "${IDS[*]}")
export BENCH_PLAYERS

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ROWS="$WORK/rows"
: >"$ROWS"
measure() { # phase script path
  local s0 s1 line
  s0=$(cpu_ticks "$SERVICE_PID")
  { TIMEFORMAT='%U %S'; time wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$2" "$BASE$3" >"$WORK/wrk.out"; } 2>"$WORK/wrk.time"
  s1=$(cpu_ticks "$SERVICE_PID")
  line=$(grep '^WRK ' "$WORK/wrk.out")
  echo "$1 $line server_cpu=$(awk -v a="$s0" -v b="$s1" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t}') generator_cpu=$(awk 'END{printf "%.2f", $1+$2}' "$WORK/wrk.time")" >>"$ROWS"
}
echo "== $RUNS runs of ${DURATION}s each, $CONNECTIONS connections, $PLAYERS players ($(nproc) cores, generator on the same box)"
for run in $(seq 1 "$RUNS"); do
  measure noop bench/wrk/noop.lua /healthz
  measure post bench/wrk/post.lua /api/transactions
done
node - "$ROWS" <<'JS'
const fs = require("fs");
const rows = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map(l => {
  const [phase, , ...kv] = l.split(" ");
  const o = Object.fromEntries(kv.map(p => p.split("=")).map(([k, v]) => [k, Number(v)]));
  return { phase, ...o, rate: o.requests / o.seconds };
});
const pad = (s, n) => String(s).padStart(n);
console.log(`${"phase".padEnd(22)}${pad("req/s", 10)}${pad("p50 ms", 9)}${pad("p99 ms", 9)}${pad("non-2xx", 9)}${pad("server CPU s", 14)}${pad("generator CPU s", 17)}  note`);
for (const r of rows) {
  const heavy = r.generator_cpu > r.server_cpu / 3 ? "generator > 1/3 of server CPU" : "";
  const name = r.phase === "noop" ? "GET /healthz (ceiling)" : "POST /api/transactions";
  console.log(`${name.padEnd(22)}${pad(r.rate.toFixed(0), 10)}${pad(r.p50_ms.toFixed(2), 9)}${pad(r.p99_ms.toFixed(2), 9)}${pad(r.non2xx + r.socket_errors, 9)}${pad(r.server_cpu.toFixed(2), 14)}${pad(r.generator_cpu.toFixed(2), 17)}  ${heavy}`);
}
const noop = rows.filter(r => r.phase === "noop"), post = rows.filter(r => r.phase === "post");
const ratios = post.map((p, i) => p.rate / noop[i].rate);
const spread = a => `${Math.min(...a).toFixed(0)}–${Math.max(...a).toFixed(0)}`;
console.log(`\ndurable tx/s ${spread(post.map(r => r.rate))}, ceiling ${spread(noop.map(r => r.rate))} req/s, ratio ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} (per run: posting rate / the ceiling measured just before it)`);
if (post.some(r => r.non2xx + r.socket_errors > 0)) { console.log("some postings were not 201: see the table"); process.exitCode = 1; }
JS
