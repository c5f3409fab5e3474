#!/usr/bin/env bash
# The benchmark in one command:   bench/run.sh [harness options, e.g. --sockets 500 --duration 10]
# Builds Release, starts the service, the SignalR peer (fresh temp databases) and the Socket.IO peer (Node), runs the
# harness (bench/Balance.Bench), prints the table, writes bench/results/latest.json and its charts (bench/charts.mjs),
# stops everything. The harness restarts the service once (bench/run.sh's restart command) for the reconnect storm.
#   bench/run.sh --store sqlite|postgres|all --nodes 1|2 [...]   past one node: bench/nodes.sh (see there)
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --store "*|*" --nodes "*) exec bench/nodes.sh "$@" ;; esac
SERVICE_PORT=${SERVICE_PORT:-18080}
PEER_PORT=${PEER_PORT:-18090}
SOCKETIO_PORT=${SOCKETIO_PORT:-18095}
# SERVICE_ENV / PEER_ENV: extra VAR=value settings for the servers (experiments, e.g. SERVICE_ENV="DOTNET_gcServer=0").
WORK=$(mktemp -d /tmp/balance-bench.XXXXXX)
PIDS=()

cleanup() {
  # the service's pid after the harness restarted it
  if [ -f "$WORK/service.pid" ]; then PIDS+=("$(cat "$WORK/service.pid")"); fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_healthy() { # url, pid
  for _ in $(seq 1 120); do
    if curl -sf "$1/healthz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "server $1 died; log:"; cat "$WORK"/*.log; return 1; }
    sleep 0.5
  done
  echo "server $1 not healthy after 60 s"; return 1
}

echo "== building (Release)"
dotnet build -c Release Balance.slnx -nologo -v q -clp:ErrorsOnly

if ! cmp -s bench/SocketIOPeer/package-lock.json bench/SocketIOPeer/node_modules/.installed-lock.json; then
  (cd bench/SocketIOPeer && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json)
fi

echo "== starting the service on :$SERVICE_PORT, the SignalR peer on :$PEER_PORT, the Socket.IO peer on :$SOCKETIO_PORT (temp dir $WORK)"
# Production, as deployed: a signing key and a bootstrap operator from configuration (fresh for each run, the same
# across the storm's restart). Limits raised for the benchmark only: sockets per player, unauthenticated sockets and
# socket opens per source address (thousands of sockets come from a few 127.0.0.x addresses), login attempts per
# address (setup logs in every player).
OPERATOR_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
SIGNING_KEY="base64:$(head -c 48 /dev/urandom | base64 -w0)"
cat >"$WORK/service.sh" <<SH
#!/usr/bin/env bash
exec env ${SERVICE_ENV:-} ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning \\
  Auth__SigningKey="$SIGNING_KEY" \\
  Auth__BootstrapOperator__Username=operator Auth__BootstrapOperator__Password="$OPERATOR_PASSWORD" \\
  ConnectionStrings__Balance="Data Source=$WORK/balance.db" \\
  Balance__Socket__MaxSocketsPerPlayer=64 Balance__Socket__MaxUnauthenticatedPerIp=100000 \\
  Balance__Socket__ConnectBurstPerAddress=100000 Balance__Socket__ConnectBurstPerPlayer=1000 \\
  Auth__LoginAttemptsPerMinutePerIp=1000000 Auth__AccessTokenLifetime=01:00:00 \\
  dotnet $PWD/bin/Release/net10.0/Balance.dll --urls "http://127.0.0.1:$SERVICE_PORT"
SH
# The storm's deploy: stop the service (SIGTERM, its graceful shutdown), start it again, print the new pid once healthy.
cat >"$WORK/restart.sh" <<SH
#!/usr/bin/env bash
set -eu
old=\$(cat "$WORK/service.pid")
kill -TERM "\$old"
for _ in \$(seq 1 300); do kill -0 "\$old" 2>/dev/null || break; sleep 0.1; done
kill -KILL "\$old" 2>/dev/null || true
"$WORK/service.sh" >>"$WORK/service.log" 2>&1 &
echo \$! >"$WORK/service.pid"
for _ in \$(seq 1 120); do curl -sf "http://127.0.0.1:$SERVICE_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$SERVICE_PORT/healthz" >/dev/null
echo \$!
SH
chmod +x "$WORK/service.sh" "$WORK/restart.sh"
"$WORK/service.sh" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!; echo "$SERVICE_PID" >"$WORK/service.pid"
env ${PEER_ENV:-} ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning \
  ConnectionStrings__Balance="Data Source=$WORK/peer.db" \
  dotnet bench/SignalRPeer/bin/Release/net10.0/SignalRPeer.dll --urls "http://127.0.0.1:$PEER_PORT" >"$WORK/peer.log" 2>&1 &
PIDS+=($!); PEER_PID=$!
node bench/SocketIOPeer/server.mjs --port "$SOCKETIO_PORT" >"$WORK/socketio.log" 2>&1 &
PIDS+=($!); SOCKETIO_PID=$!
wait_healthy "http://127.0.0.1:$SERVICE_PORT" "$SERVICE_PID"
wait_healthy "http://127.0.0.1:$PEER_PORT" "$PEER_PID"
wait_healthy "http://127.0.0.1:$SOCKETIO_PORT" "$SOCKETIO_PID"

echo "== running the harness"
timeout 3600 bench/Balance.Bench/bin/Release/net10.0/Balance.Bench \
  --service "http://127.0.0.1:$SERVICE_PORT" --service-pid "$SERVICE_PID" \
  --peer "http://127.0.0.1:$PEER_PORT" --peer-pid "$PEER_PID" \
  --socketio "http://127.0.0.1:$SOCKETIO_PORT" --socketio-pid "$SOCKETIO_PID" --restart-command "$WORK/restart.sh" \
  --operator operator --password "$OPERATOR_PASSWORD" \
  --work-dir "$WORK/harness" --out bench/results/latest.json "$@"
# Charts of this run beside its JSON (bench/results/latest-latency.svg, latest-rss.svg); no packages needed.
node bench/charts.mjs --out bench/results bench/results/latest.json
echo "== service log tail"; tail -n 5 "$WORK/service.log" || true
