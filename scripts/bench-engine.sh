#!/usr/bin/env bash
# Engine benchmark: Redis memory per like (Set vs Bitmap, 1,000,000 likes each)
# and REST round trips per operation. Starts its own redis-server and gateway on
# loopback ports and stops them when done; needs redis-server and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --test engine_bench -- --ignored --nocapture --test-threads 1 "$@"
