#!/usr/bin/env bash
# Outbox benchmark: what the outbox costs a like. Like throughput through the
# real gateway and redis-server with the outbox off and on (ABBA phases, one
# run), Redis time per like script, and Redis memory per stored event. Release
# build; starts its own redis-server and gateway on loopback ports and stops
# them when done; needs redis-server and redis-cli. About a minute plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --test outbox_bench -- --ignored --nocapture --test-threads 1 "$@"
