#!/usr/bin/env bash
# The browser client's size as an app ships it: each entry (the client, the React hook, the Vue composable) bundled
# and minified by esbuild (React and Vue left out), raw and gzip -9. Deterministic: no spread, one run is the figure.
# Usage: bench/client-size.sh [git-rev ...]   (default: the working tree; e.g. bench/client-size.sh main HEAD)
# Needs Balance.Tests/browser/node_modules (./test.sh installs it; esbuild comes with Vite).
set -euo pipefail
cd "$(dirname "$0")/.."
esbuild="$PWD/Balance.Tests/browser/node_modules/esbuild/bin/esbuild"
files=(balance-client.js balance-react.js balance-vue.js)
measure() { # $1: label, $2: directory holding the three files
  local out; out=$(mktemp -d)
  "$esbuild" "${files[@]/#/$2/}" --bundle --minify --format=esm --external:react --external:vue --outdir="$out" --log-level=error
  printf '%-12s' "$1"
  for f in "${files[@]}"; do printf '  %s %6d B min, %5d B min+gz' "${f%.js}" "$(wc -c < "$out/$f")" "$(gzip -9c "$out/$f" | wc -c)"; done
  echo
  rm -rf "$out"
}
if [ $# -eq 0 ]; then measure "worktree" wwwroot; exit 0; fi
for rev in "$@"; do
  dir=$(mktemp -d)
  for f in "${files[@]}"; do git show "$rev:wwwroot/$f" > "$dir/$f"; done
  measure "$rev" "$dir"
  rm -rf "$dir"
done
