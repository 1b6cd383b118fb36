#!/usr/bin/env bash
# Benchmarks the worker's API in one run, against one fresh redis-server and
# tally-gateway on loopback. The built bundle (build/) is served two ways:
#   1. through Miniflare's API with no inspector (scripts/serve-bundle.mjs),
#   2. through `wrangler dev`, as in development and the end-to-end tests;
# each is driven by examples/load_api.rs at 32 keep-alive connections through
# four phases: GET /healthz (one PING round trip: the baseline), likes
# (PUT /v1/items/{item}/like, a token per connection) and reads
# (GET /v1/items/{item}), then /healthz again. Prints requests/s and failures
# per phase, and the ratios likes/baseline, reads/baseline (the baseline is the
# mean of the two /healthz runs) and wrangler dev/Miniflare. Any failed or
# non-2xx request makes the run fail. Bounded: a few seconds per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

connections="${BENCH_CONNECTIONS:-32}"
seconds="${BENCH_SECONDS:-5}"
token="bench-gateway-token"
secret="bench-jwt-secret"

cargo build --release --quiet -p tally-gateway --bin tally-gateway
cargo build --release --quiet -p tally --example load_api
# Rebuild the bundle only when it is missing or older than the sources.
if [ ! -f build/index.js ] || [ -n "$(find src -newer build/index.js -print -quit)" ]; then
  bash scripts/build.sh
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (at most 60 s) until something answers HTTP on the port; wrangler dev
# takes several seconds.
wait_http() {
  local deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/healthz" && return 0
    sleep 0.2
  done
  echo "nothing answers on port $1" >&2
  return 1
}

pids=()
cleanup() {
  # Each server runs in its own process group (set -m), so workerd goes too.
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
dir="$(mktemp -d)"
trap cleanup EXIT
set -m

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$dir" --loglevel warning >/dev/null &
pids+=($!)

gateway_port="$(free_port)"
target/release/tally-gateway --listen "127.0.0.1:$gateway_port" \
  --redis-url "redis://127.0.0.1:$redis_port" --token "$token" 2>"$dir/gateway.log" &
pids+=($!)
wait_http "$gateway_port"

# The bundle is served with the deployed compatibility date, as the tests do.
root="$PWD"
bundle="$root/build/index.js"
date="$(sed -nE 's/^compatibility_date *= *"([^"]+)".*/\1/p' wrangler.toml)"
printf 'name = "tally-bench"\nmain = "%s"\ncompatibility_date = "%s"\n' "$bundle" "$date" >"$dir/wrangler.toml"
cat >"$dir/.dev.vars" <<EOF
UPSTASH_REDIS_REST_URL=http://127.0.0.1:$gateway_port
UPSTASH_REDIS_REST_TOKEN=$token
TALLY_JWT_SECRET=$secret
TALLY_API_KEY=bench-api-key
RATE_LIMIT_PER_MINUTE=1000000000
EOF

echo "Worker API, $connections connections, ${seconds}s per phase after 1s warm-up, loopback"

# run_phases NAME PORT: prints one line per phase and keeps the figures. The
# baseline runs before and after the others; their mean is what they are
# compared with, so a machine that got busier or quieter meanwhile shows.
declare -A rps failed
run_phases() {
  local line name phase
  # A server that just started is still compiling and settling: a short,
  # unmeasured pass first.
  timeout 60 target/release/examples/load_api "http://127.0.0.1:$2" reads "$connections" 1 "$secret" \
    >/dev/null || true
  for name in healthz likes reads healthz_after; do
    phase="${name%_after}"
    line="$(timeout 60 target/release/examples/load_api "http://127.0.0.1:$2" "$phase" \
      "$connections" "$seconds" "$secret" || true)"
    [ -n "$line" ] || line="0 requests/s (no result, 1 failed)"
    printf '   %-14s %s\n' "$name" "$line"
    rps[$1.$name]="${line%% *}"
    failed[$1.$name]="$(sed -E 's/.*, ([0-9]+) failed.*/\1/' <<<"$line")"
  done
  rps[$1.baseline]=$(((${rps[$1.healthz]} + ${rps[$1.healthz_after]}) / 2))
}

# Stops one server (its whole process group) before the next starts, so the
# two never share the CPU.
stop_last() {
  local pid="${pids[-1]}"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

echo "1/2 Miniflare API, no inspector (scripts/serve-bundle.mjs)"
# Port 0: Miniflare binds a free port itself and prints it. The log exists
# before the server starts, so the loop below can read it at once.
: >"$dir/miniflare.log"
node scripts/serve-bundle.mjs "$bundle" 0 "$date" "$dir/.dev.vars" >"$dir/miniflare.log" 2>&1 </dev/null &
pids+=($!)
miniflare_port=""
for _ in $(seq 300); do # 60 s at most
  miniflare_port="$(sed -nE 's|^serving .* at http://127\.0\.0\.1:([0-9]+)/$|\1|p' "$dir/miniflare.log")"
  [ -n "$miniflare_port" ] && break
  kill -0 "${pids[-1]}" 2>/dev/null || break
  sleep 0.2
done
[ -n "$miniflare_port" ] || { cat "$dir/miniflare.log" >&2; exit 1; }
run_phases miniflare "$miniflare_port"
stop_last

echo "2/2 wrangler dev"
wrangler_port="$(free_port)"
(cd "$dir" && XDG_CONFIG_HOME="$dir" exec "$root/node_modules/.bin/wrangler" dev \
  --ip 127.0.0.1 --port "$wrangler_port" --inspector-port "$(free_port)" --log-level warn \
  >"$dir/wrangler.log" 2>&1 </dev/null) &
pids+=($!)
wait_http "$wrangler_port" || { cat "$dir/wrangler.log" >&2; exit 1; }
run_phases wrangler "$wrangler_port"
stop_last

echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
row='%-16s %16s %7s %19s %7s %25s\n'
printf "$row" phase "Miniflare req/s" failed "wrangler dev req/s" failed "wrangler dev / Miniflare"
total_failed=0
for name in healthz healthz_after baseline likes reads; do
  printf "$row" "$name" "${rps[miniflare.$name]}" "${failed[miniflare.$name]:-}" \
    "${rps[wrangler.$name]}" "${failed[wrangler.$name]:-}" \
    "$(ratio "${rps[wrangler.$name]}" "${rps[miniflare.$name]}")"
  total_failed=$((total_failed + ${failed[miniflare.$name]:-0} + ${failed[wrangler.$name]:-0}))
done
for name in likes reads; do
  printf '%-16s %16s %7s %19s\n' "$name / baseline" \
    "$(ratio "${rps[miniflare.$name]}" "${rps[miniflare.baseline]}")" "" \
    "$(ratio "${rps[wrangler.$name]}" "${rps[wrangler.baseline]}")"
done
if [ "$total_failed" -ne 0 ]; then
  echo "FAILED: $total_failed requests failed or were not 2xx; the figures above mean nothing" >&2
  exit 1
fi
