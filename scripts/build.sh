#!/usr/bin/env bash
# Builds the worker bundle (build/index.js, build/index_bg.wasm) offline: the
# CLIs worker-build would download come from cargo and npm instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

worker-build --release
bash scripts/size.sh build/index_bg.wasm
