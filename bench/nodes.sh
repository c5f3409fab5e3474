#!/usr/bin/env bash
# Past one node: the service on SQLite (one node) or on PostgreSQL (one or two nodes on one database), in one run.
#   bench/run.sh --store sqlite|postgres --nodes 1|2 [--duration 10] [--runs 3] [--players 100] [--probes 20]
#   bench/run.sh --store all [...]     SQLite, PostgreSQL with one node and with two, in one run, side by side
# For each run:
#   1. max rate: durable postings through wrk (Debian's), one wrk per node at once, each one thread and 64/N
#      connections, unique Idempotency-Keys: tx/s summed over the nodes, response p50/p99 per node, and with
#      PostgreSQL the WAL bytes written per posting (pg_current_wal_lsn before and after);
#   2. about half that rate through wrk again (each connection paced), while a light probe — its own PROBES players,
#      each with a socket on every node, 100 deposits a second — times request sent → balance on the socket,
#      same-node and cross-node (bench/nodes/latency.mjs): an upper bound of commit → socket; with PostgreSQL also
#      commit → socket itself, from each transaction's commit timestamp (bench/nodes/commit-delay.mjs).
# Before the first run, WARMUP seconds (default 5) of wrk at the maximum rate, not measured.
# PostgreSQL runs from scripts/postgres.sh in a temp directory (fsync on), never the system's cluster. The generator
# runs on the same box and is included in every figure; its CPU is printed beside the servers'.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=sqlite; NODES=1; DURATION=10; RUNS=3; PLAYERS=100; PROBES=20
while [ $# -gt 0 ]; do
  case "$1" in
    --store) STORE=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --players) PLAYERS=$2; shift 2 ;;
    --probes) PROBES=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
if [ "$STORE" = all ]; then
  # SQLite, one PostgreSQL node and two, one after the other on the same box, and their figures side by side.
  OUT=$(mktemp -d /tmp/balance-nodes-all.XXXXXX)
  rest=(--duration "$DURATION" --runs "$RUNS" --players "$PLAYERS" --probes "$PROBES")
  for cfg in "sqlite 1" "postgres 1" "postgres 2"; do
    set -- $cfg
    "$0" --store "$1" --nodes "$2" "${rest[@]}" | tee "$OUT/$1-$2.out"
  done
  echo
  echo "== side by side (${DURATION}s phases, $RUNS runs each, $PLAYERS players, $PROBES of them probes)"
  for cfg in "sqlite 1" "postgres 1" "postgres 2"; do
    set -- $cfg
    printf '%-22s %s\n' "$1, $2 node(s):" "$(grep -E '^(durable|request|row stamp|commit)' "$OUT/$1-$2.out" | paste -sd ';' -)"
  done
  rm -rf "$OUT"
  exit 0
fi
case "$STORE/$NODES" in sqlite/1|postgres/1|postgres/2) ;; *) echo "--store sqlite takes --nodes 1; postgres takes 1 or 2 (or --store all)"; exit 2 ;; esac
source bench/lib.sh
ensure_wrk
WORK=$(mktemp -d /tmp/balance-nodes.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PG_PORT=${PG_PORT:-15433}
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [ "$STORE" = postgres ] && scripts/postgres.sh stop "$WORK/pg" >/dev/null 2>&1 || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (Release)"
dotnet build -c Release Balance.csproj -nologo -v q -clp:ErrorsOnly

if [ "$STORE" = postgres ]; then
  echo "== PostgreSQL in $WORK/pg on :$PG_PORT"
  # Commit timestamps on, for commit → socket measured from PostgreSQL's own commit time (a bench setting: it costs a
  # little per commit, and the service does not need it).
  CS=$(POSTGRES_SETTINGS="track_commit_timestamp = on" scripts/postgres.sh start "$WORK/pg" "$PG_PORT")
  psql_() { PGPASSWORD=balance psql -h 127.0.0.1 -p "$PG_PORT" -U balance -d balance -Atq "$@"; } # psql_ [-F SEP] -c SQL
else
  CS="Data Source=$WORK/balance.db"
fi

PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
KEY="base64:$(head -c 48 /dev/urandom | base64 -w0)"
BASES=()
for n in $(seq 1 "$NODES"); do
  port=$((18280 + n))
  # Production, as deployed, with the limits a load from one address needs raised (see bench/run.sh).
  ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning Balance__Store="$STORE" \
    ConnectionStrings__Balance="$CS" Balance__NodeId="node$n" \
    Auth__SigningKey="$KEY" Auth__BootstrapOperator__Username=operator Auth__BootstrapOperator__Password="$PASSWORD" \
    Auth__LoginAttemptsPerMinutePerIp=1000000 Auth__AccessTokenLifetime=01:00:00 \
    Balance__Socket__MaxSocketsPerPlayer=64 Balance__Socket__MaxUnauthenticatedPerIp=100000 \
    Balance__Socket__ConnectBurstPerAddress=100000 Balance__Socket__ConnectBurstPerPlayer=1000 \
    dotnet bin/Release/net10.0/Balance.dll --urls "http://127.0.0.1:$port" >"$WORK/node$n.log" 2>&1 &
  PIDS+=($!)
  BASES+=("http://127.0.0.1:$port")
done
for i in "${!BASES[@]}"; do
  for _ in $(seq 1 120); do curl -sf "${BASES[$i]}/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -sf "${BASES[$i]}/healthz" >/dev/null || { echo "node $((i + 1)) did not start:"; cat "$WORK/node$((i + 1)).log"; exit 1; }
done

B=${BASES[0]}
TOKEN=$(curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"operator\",\"password\":\"$PASSWORD\"}" "$B/api/auth/login" | json access_token)
echo "== $PLAYERS players"
PLAYERS_JSON="$WORK/players.json"
IDS=()
{
  echo "["
  for i in $(seq 1 "$PLAYERS"); do
    id=$(curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
      -d "{\"username\":\"bench$i\",\"password\":\"bench-player-password\",\"role\":\"player\"}" "$B/api/users" | json user_id)
    if [ "$i" -gt "$PROBES" ]; then IDS+=("$id"); continue; fi
    tok=$(curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"bench$i\",\"password\":\"bench-player-password\"}" "$B/api/auth/login" | json access_token)
    [ "$i" -gt 1 ] && echo ","
    echo "{\"id\":\"$id\",\"token\":\"$tok\"}"
  done
  echo "]"
} >"$PLAYERS_JSON"
export BENCH_TOKEN="$TOKEN"
BENCH_PLAYERS=$(IFS=,; echo "${IDS[*]}")
export BENCH_PLAYERS

TCK=$(getconf CLK_TCK)
server_ticks() { local t=0; for pid in "${PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$t"; }
pg_ticks() { # this cluster's postmaster and its backends only: the box may run other PostgreSQL servers
  [ "$STORE" = postgres ] || { echo 0; return; }
  local pm t=0; pm=$(head -n 1 "$WORK/pg/data/postmaster.pid")
  for pid in "$pm" $(pgrep -P "$pm"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
ROWS="$WORK/rows"
: >"$ROWS"
CONN=$((64 / NODES))
# wrk_nodes NAME SECONDS: one wrk per node at once (BENCH_DELAY_MS from the caller paces them), each writing
# $WORK/NAME<i>.out; returns when all are done.
wrk_nodes() {
  local gens=() i g
  for i in "${!BASES[@]}"; do wrk -t1 -c"$CONN" -d"$2s" -s bench/wrk/post.lua "${BASES[$i]}/api/transactions" >"$WORK/$1$i.out" & gens+=($!); done
  for g in "${gens[@]}"; do wait "$g"; done
}
echo "== $RUNS runs: ${DURATION}s at the maximum rate (wrk per node, $CONN connections each), then ${DURATION}s at about half of it with the probe's $((PROBES * NODES)) sockets over $NODES node(s) ($(nproc) cores, generator on the same box; load $(cut -d' ' -f1-3 /proc/loadavg))"
# Warm-up, not measured: the first seconds of a fresh process are spent compiling (tiered JIT) — the first measured run
# used ~1.5x the server CPU per posting of the later ones and came out 20-50 % lower.
wrk_nodes warmup "${WARMUP:-5}"
for run in $(seq 1 "$RUNS"); do
  lsn0=""; rows0=0
  if [ "$STORE" = postgres ]; then lsn0=$(psql_ -c "SELECT pg_current_wal_lsn()"); rows0=$(psql_ -c "SELECT count(*) FROM ledger"); fi
  s0=$(server_ticks); p0=$(pg_ticks)
  { TIMEFORMAT='%U %S'; time wrk_nodes wrk "$DURATION"; } 2>"$WORK/wrk.time"
  s1=$(server_ticks); p1=$(pg_ticks)
  wal=0; committed=0
  if [ "$STORE" = postgres ]; then
    wal=$(psql_ -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')")
    committed=$(( $(psql_ -c "SELECT count(*) FROM ledger") - rows0 ))
  fi
  req=0; secs=0; bad=0; lat=""
  for i in "${!BASES[@]}"; do
    line=$(grep '^WRK ' "$WORK/wrk$i.out")
    r=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line"); s=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$line")
    n2=$(sed -E 's/.*non2xx=([0-9]+) socket_errors=([0-9]+).*/\1+\2/' <<<"$line")
    req=$((req + r)); secs=$s; bad=$((bad + n2))
    lat="$lat node$((i + 1)):p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line"),p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")"
  done
  rate=$(awk -v r="$req" -v s="$secs" 'BEGIN{printf "%.0f", r/s}')
  echo "max run=$run rate=$rate non2xx=$bad server_cpu=$(awk -v a="$s0" -v b="$s1" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t}') postgres_cpu=$(awk -v a="$p0" -v b="$p1" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t}') generator_cpu=$(awk 'END{printf "%.2f", $1+$2}' "$WORK/wrk.time") wal_per_posting=$(awk -v w="$wal" -v c="$committed" 'BEGIN{printf "%.0f", (c > 0) ? w / c : 0}') latency=$lat" >>"$ROWS"
  # About half: each of the CONN connections per node pauses so that together they ask for half the rate measured.
  pause=$(awk -v c="$CONN" -v n="$NODES" -v r="$rate" 'BEGIN{printf "%d", (r > 0) ? c * n * 1000 / (r / 2) : 1000}')
  nodes_json=$(printf '"%s",' "${BASES[@]}"); nodes_json="[${nodes_json%,}]"
  cfg="{\"nodes\":$nodes_json,\"token\":\"$TOKEN\",\"players\":$(tr -d '\n' <"$PLAYERS_JSON"),\"rate\":100,\"seconds\":$DURATION,\"arrivals\":\"$WORK/arrivals.tsv\"}"
  s0=$(server_ticks)
  BENCH_DELAY_MS=$pause wrk_nodes half "$DURATION" &
  half=$!
  { TIMEFORMAT='%U %S'; time node --experimental-websocket --no-warnings bench/nodes/latency.mjs "$cfg" >"$WORK/lat.out"; } 2>"$WORK/lat.time"
  wait "$half"
  s1=$(server_ticks)
  commit=""
  if [ "$STORE" = postgres ]; then
    psql_ -F $'\t' -c \
      "SELECT transaction_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 FROM ledger WHERE idempotency_key LIKE 'lat-%'" >"$WORK/commits.tsv"
    commit="COMMIT $(node bench/nodes/commit-delay.mjs "$WORK/arrivals.tsv" "$WORK/commits.tsv")"
  fi
  hreq=0
  for i in "${!BASES[@]}"; do hreq=$((hreq + $(grep '^WRK ' "$WORK/half$i.out" | sed -E 's/.*requests=([0-9]+).*/\1/'))); done
  echo "half run=$run target=$((rate / 2)) wrk_rate=$((hreq / DURATION)) server_cpu=$(awk -v a="$s0" -v b="$s1" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t}') probe_cpu=$(awk 'END{printf "%.2f", $1+$2}' "$WORK/lat.time") $(grep '^LATENCY ' "$WORK/lat.out") $commit" >>"$ROWS"
done
echo
echo "store=$STORE nodes=$NODES"
cat "$ROWS"
node - "$ROWS" <<'JS'
const fs = require("fs");
const lines = fs.readFileSync(process.argv[2], "utf8").trim().split("\n");
const max = lines.filter(l => l.startsWith("max ")).map(l => Object.fromEntries(l.split(" ").slice(1).filter(p => p.includes("=") && !p.startsWith("latency")).map(p => p.split("=")).map(([k, v]) => [k, Number(v)])));
const json = (l, tag) => { const at = l.indexOf(tag + " "); if (at < 0) return {}; const end = l.indexOf(" COMMIT ", at + 1); return JSON.parse(l.slice(at + tag.length + 1, end > at ? end : undefined)); };
const half = lines.filter(l => l.startsWith("half ")).map(l => ({ ...json(l, "LATENCY"), ...json(l, "COMMIT") }));
const spread = a => a.length ? `${Math.min(...a).toFixed(1)}–${Math.max(...a).toFixed(1)}` : "n/a";
console.log(`\ndurable tx/s ${spread(max.map(r => r.rate))}; WAL bytes/posting ${spread(max.map(r => r.wal_per_posting))}`);
console.log(`request → socket p99, same node: ${spread(half.filter(h => h.same.count).map(h => h.same.p99_ms))} ms; cross node: ${spread(half.filter(h => h.cross.count).map(h => h.cross.p99_ms))} ms (p50 ${spread(half.filter(h => h.cross.count).map(h => h.cross.p50_ms))})`);
console.log(`row stamp → socket p99, same node: ${spread(half.filter(h => h.stamp_same.count).map(h => h.stamp_same.p99_ms))} ms; cross node: ${spread(half.filter(h => h.stamp_cross.count).map(h => h.stamp_cross.p99_ms))} ms (p50 ${spread(half.filter(h => h.stamp_cross.count).map(h => h.stamp_cross.p50_ms))})`);
if (half.some(h => h.commit_same)) console.log(`commit → socket p99 (PostgreSQL's commit timestamp), same node: ${spread(half.filter(h => h.commit_same?.count).map(h => h.commit_same.p99_ms))} ms (p50 ${spread(half.filter(h => h.commit_same?.count).map(h => h.commit_same.p50_ms))}); cross node: ${spread(half.filter(h => h.commit_cross?.count).map(h => h.commit_cross.p99_ms))} ms (p50 ${spread(half.filter(h => h.commit_cross?.count).map(h => h.commit_cross.p50_ms))})`);
if (max.some(r => r.non2xx > 0) || half.some(h => h.errors > 0)) { console.log("some postings were not 201: see the rows"); process.exitCode = 1; }
JS
