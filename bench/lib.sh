# Shared by the benchmark scripts (sourced, not run).

# wrk from Debian, installed when missing: the light generator of bench/http.sh and bench/nodes.sh.
ensure_wrk() {
  command -v wrk >/dev/null 2>&1 && return 0
  echo "Installing wrk from Debian..."
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
}

# A JSON field of the document on stdin.
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]))' "$1"; }

# On exit of a script that started the service in the background: SIGTERM to $SERVICE_PID, SIGKILL after 10 s, then
# its work directory $WORK removed.
stop_service() {
  if [ -n "${SERVICE_PID:-}" ]; then
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVICE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
