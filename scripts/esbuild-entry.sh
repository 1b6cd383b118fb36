#!/usr/bin/env bash
# esbuild for worker-build (scripts/build.sh sets ESBUILD_BIN to this file).
# worker-build bundles its entry shim, ./shim.js, with wasm-bindgen's index.js
# in its staging directory; this bundles the worker's own entry instead,
# src/edge/entry.js (why: see that file). Any other call passes through.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
args=()
entry=""
for arg in "$@"; do
  if [ "$arg" = ./shim.js ] && [ -f shim.js ]; then
    entry=./tally-entry.js
    cp "$root/src/edge/entry.js" "$entry"
    arg="$entry"
  fi
  args+=("$arg")
done
status=0
"$root/node_modules/.bin/esbuild" "${args[@]}" || status=$?
[ -z "$entry" ] || rm -f "$entry"
exit "$status"
