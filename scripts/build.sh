#!/usr/bin/env bash
# Builds the worker bundle (build/index.js, build/index_bg.wasm) offline: the
# CLIs worker-build would download come from cargo and npm instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
# The bundle's entry is the worker's own src/edge/entry.js, not worker-build's
# shim (scripts/esbuild-entry.sh).
export ESBUILD_BIN="$PWD/scripts/esbuild-entry.sh"

# build/: the whole worker (one Worker, or the RECORD Worker of two).
# build/edge/: the edge build, without the system of record, for the Worker
# in front when the record runs apart (README, "Two Workers").
worker-build --release
worker-build --release --out-dir build/edge --no-default-features
for bundle in build/index.js build/edge/index.js; do
  if grep -q WorkerEntrypoint "$bundle"; then
    echo "$bundle still has worker-build's shim: scripts/esbuild-entry.sh was not used" >&2
    exit 1
  fi
done
bash scripts/size.sh build/index_bg.wasm build/edge/index_bg.wasm
