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
