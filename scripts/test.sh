#!/usr/bin/env bash
# Runs every check Tally has: formatting, clippy for the host and for wasm32,
# the deployable bundle (with its size), the unit and end-to-end tests against
# a real redis-server, the gateway and the worker under wrangler dev, and a
# bounded Schemathesis run against that worker.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; "$@"; }

step bash scripts/setup.sh --test
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets --locked -- -D warnings
step cargo clippy -p tally --target wasm32-unknown-unknown --all-targets --locked -- -D warnings
# The edge build (no `record` feature; build/edge/, README "Two Workers").
step cargo clippy -p tally --target wasm32-unknown-unknown --all-targets --locked --no-default-features -- -D warnings
# The exact bundle `wrangler deploy` would upload (its [build] runs scripts/build.sh).
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
rm -rf target/deploy
step node_modules/.bin/wrangler deploy --dry-run --outdir target/deploy
step bash scripts/size.sh target/deploy/*.wasm target/deploy/index.js
# The same for two Workers (README, "Two Workers"): the edge Worker and the record Worker.
rm -rf target/deploy-edge target/deploy-record
step node_modules/.bin/wrangler deploy --dry-run -c wrangler.edge.toml --outdir target/deploy-edge
step node_modules/.bin/wrangler deploy --dry-run -c wrangler.record.toml --outdir target/deploy-record
step bash scripts/size.sh target/deploy-edge/*.wasm target/deploy-record/*.wasm
mkdir -p target
step cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.log
# Schemathesis against the real worker, from its own /openapi.json (bounded).
step bash scripts/schemathesis.sh

# One closing line for every cargo test binary together (the last binary's own
# line is only the gateway's doc-tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i - 1); if ($(i) ~ /^failed;?$/) f += $(i - 1) } }
     END { printf "\ncargo tests: %d passed, %d failed\n", p, f }' target/test-output.log
