#!/usr/bin/env bash
# Fuzzes the worker from its own OpenAPI document with Schemathesis: a bounded
# number of generated requests per operation (TALLY_FUZZ_EXAMPLES, default 50),
# failing on any 5xx, any response whose status, content type, headers or body
# the document does not allow, invalid input that is not refused with a 4xx,
# an unlisted method that is not a 405, and a secured route that answers
# without its credentials.
#
#   bash scripts/schemathesis.sh              # starts redis-server, the gateway and
#                                             # `wrangler dev` on free ports, then stops them
#   bash scripts/schemathesis.sh URL API_KEY  # fuzzes a worker that is already running
#
# Needs the built bundle in build/ (scripts/build.sh) and `schemathesis` from pip
# (scripts/setup.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

examples="${TALLY_FUZZ_EXAMPLES:-50}"
say() { printf '\033[1mschemathesis:\033[0m %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
  for _ in $(seq 1 $(($2 * 5))); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.2
  done
  return 1
}

work=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

if [ $# -ge 2 ]; then
  base="$1"
  api_key="$2"
else
  [ -f build/index.js ] || { echo "build/index.js is missing: run scripts/build.sh first" >&2; exit 1; }

  redis_port=$(free_port)
  gateway_port=$(free_port)
  worker_port=$(free_port)
  gateway_token="fuzz-gateway-token"
  api_key="fuzz-api-key"

  cargo build -q -p tally-gateway
  setsid redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$work" --loglevel warning >/dev/null &
  pids+=($!)
  setsid target/debug/tally-gateway --listen "127.0.0.1:$gateway_port" \
    --redis-url "redis://127.0.0.1:$redis_port" --token "$gateway_token" >"$work/gateway.log" 2>&1 &
  pids+=($!)

  # A wrangler config of its own, so the developer's .dev.vars is never read.
  mkdir -p "$work/worker"
  {
    echo 'name = "tally-fuzz"'
    echo "main = \"$PWD/build/index.js\""
    grep '^compatibility_date' wrangler.toml
    # The static files (/openapi.json among them), served as deployed.
    printf '[assets]\ndirectory = "%s"\nbinding = "ASSETS"\n' "$PWD/assets"
    # The system of record, a local D1 with the migrations applied below.
    printf '[[d1_databases]]\nbinding = "DB"\ndatabase_name = "tally"\n'
    printf 'database_id = "00000000-0000-4000-8000-000000000000"\nmigrations_dir = "%s"\n' "$PWD/migrations"
  } >"$work/worker/wrangler.toml"
  cat >"$work/worker/.dev.vars" <<VARS
UPSTASH_REDIS_REST_URL=http://127.0.0.1:$gateway_port
UPSTASH_REDIS_REST_TOKEN=$gateway_token
TALLY_JWT_SECRET=fuzz-jwt-secret
TALLY_API_KEY=$api_key
RATE_LIMIT_PER_MINUTE=100000
VARS
  (
    cd "$work/worker"
    WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false XDG_CONFIG_HOME="$work" \
      "$OLDPWD/node_modules/.bin/wrangler" d1 migrations apply DB --local \
      --persist-to "$work/d1" </dev/null >"$work/migrations.log" 2>&1
  ) || { cat "$work/migrations.log" >&2; exit 1; }
  (
    cd "$work/worker"
    WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false XDG_CONFIG_HOME="$work" \
      exec setsid "$OLDPWD/node_modules/.bin/wrangler" dev --ip 127.0.0.1 --port "$worker_port" \
      --inspector-port "$(free_port)" --persist-to "$work/d1" --log-level warn \
      </dev/null >"$work/wrangler.log" 2>&1
  ) &
  pids+=($!)
  base="http://127.0.0.1:$worker_port"
  if ! wait_http "$base/healthz" 90; then
    cat "$work/wrangler.log" >&2
    exit 1
  fi
fi

# A real anonymous identity for the operations that need a token.
token=$(curl -sf -X POST "$base/v1/visitors" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
export TALLY_FUZZ_TOKEN="$token" TALLY_FUZZ_API_KEY="$api_key"

say "$examples examples per operation against $base"
root="$PWD"
# Run from the scratch folder: Schemathesis keeps failures in ./.schemathesis
# and replays them first, and every run here should be the same fixed-seed run.
cd "$work"

# Every check but one: `positive_data_acceptance` expects any schema-valid
# request to succeed, but a series may span at most 1440 buckets, a limit across
# two parameters that a schema cannot state (documented, answered 400).
# The preflights' path parameters are free-form (a preflight checks no path),
# which makes Hypothesis discard many drawn values: its filter_too_much health
# check is a warning about generation speed, not about the API.
schemathesis --config-file "$root/scripts/schemathesis.toml" run "$base/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed 20261127 \
  --workers 1 \
  --request-timeout 10 \
  --no-shrink \
  --suppress-health-check filter_too_much \
  --warnings off
