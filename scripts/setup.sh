#!/usr/bin/env bash
# Installs what building, running and testing Tally needs, and skips whatever
# is already there. `--test` adds the browser and tools only the tests use.
# Every piece comes from a package registry (apt, crates.io, npm); nothing is
# downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

with_test_tools=0
[ "${1:-}" = "--test" ] && with_test_tools=1

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# System packages: Redis always; Chromium and its driver for the browser tests,
# and Prometheus for the dashboard test.
packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
if [ "$with_test_tools" = 1 ]; then
  command -v chromium >/dev/null || packages+=(chromium)
  command -v chromedriver >/dev/null || packages+=(chromium-driver)
  # A real Prometheus evaluates the dashboard's queries (tests/prometheus.rs).
  command -v prometheus >/dev/null || packages+=(prometheus)
fi
if [ "${#packages[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  say "apt-get install ${packages[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# Python tools only the tests use: Schemathesis fuzzes the worker from its
# OpenAPI document, prometheus_client parses /metrics, openapi-spec-validator
# checks the document. Pinned, since their CLIs and parsers change.
if [ "$with_test_tools" = 1 ]; then
  if ! command -v schemathesis >/dev/null \
    || ! python3 -c 'import prometheus_client, openapi_spec_validator, jsonschema' 2>/dev/null; then
    say "pip install schemathesis prometheus-client openapi-spec-validator"
    python3 -m pip install --quiet --disable-pip-version-check \
      schemathesis==4.32.5 prometheus-client==0.26.0 openapi-spec-validator==0.9.0 jsonschema
  fi
  # PyJWT for the Python back-end example (examples/python), run by tests/examples.rs.
  if ! python3 -c 'import jwt' 2>/dev/null; then
    say "pip install PyJWT"
    python3 -m pip install --quiet --disable-pip-version-check PyJWT==2.15.1
  fi
fi

# The wasm target and the two CLIs worker-build drives.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

worker_build_version=0.8.7
if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" != "$worker_build_version" ]; then
  say "cargo install worker-build $worker_build_version"
  cargo install worker-build --version "$worker_build_version"
fi

# The wasm-bindgen CLI must equal the crate in Cargo.lock exactly. No --locked:
# one of its transitive pins is missing from the registry.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  say "cargo install wasm-bindgen-cli $bindgen_version"
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# wrangler and binaryen (wasm-opt), pinned in package-lock.json.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
