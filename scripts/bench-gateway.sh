#!/usr/bin/env bash
# Benchmarks the REST gateway in one run, against one fresh redis-server on
# loopback: EVALSHA of a like-sized script (gateway/examples/bench_like.lua)
# at 64 concurrent keep-alive connections
#   1. straight at Redis with redis-benchmark,
#   2. through tally-gateway (release build), driven by gateway/examples/load.rs,
#      then the same script with Upstash's `#!lua flags=allow-key-locking` line,
#      called by the flagged body's SHA1 (the gateway maps it to the stripped one),
#   3. through the npm @humanwhocodes/upstash-redis-server, driven the same way,
# then prints the three figures and the ratios. Bounded: a few seconds per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

connections="${BENCH_CONNECTIONS:-64}"
seconds="${BENCH_SECONDS:-5}"
direct_requests="${BENCH_DIRECT_REQUESTS:-300000}"
token="bench-token"

cargo build --release --quiet -p tally-gateway --bin tally-gateway --example load
[ -d node_modules/@humanwhocodes/upstash-redis-server ] || npm ci --no-audit --no-fund

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
dir="$(mktemp -d)"
trap cleanup EXIT

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$dir" --loglevel warning >/dev/null &
pids+=($!)
wait_port "$redis_port"
sha="$(redis-cli -p "$redis_port" SCRIPT LOAD "$(cat gateway/examples/bench_like.lua)")"

# KEYS: rate, stats, likers; ARGV: now, limit, window, who, op (see the script).
args=(3 "bench:r:__rand_int__" "bench:s:__rand_int__" "bench:l:__rand_int__" 1700000000 1000000000 60 "user:__rand_int__" 1)
body="[\"EVALSHA\",\"$sha\""
for a in "${args[@]}"; do body+=",\"$a\""; done
body+="]"

echo "EVALSHA of a like-sized script, $connections connections, loopback"

echo "1/3 redis-benchmark straight at Redis ($direct_requests requests)"
direct="$(timeout 120 redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$connections" -n "$direct_requests" \
  -r 10000 --csv EVALSHA "$sha" "${args[@]}" | awk -F'"' 'NR == 2 { print $4 }')"
direct="${direct%.*}"

echo "2/3 tally-gateway (${seconds}s after 1s warm-up)"
gateway_port="$(free_port)"
target/release/tally-gateway --listen "127.0.0.1:$gateway_port" \
  --redis-url "redis://127.0.0.1:$redis_port" --token "$token" 2>/dev/null &
pids+=($!)
wait_port "$gateway_port"
gateway_line="$(timeout 60 target/release/examples/load "http://127.0.0.1:$gateway_port/" "$token" "$connections" "$seconds" "$body")"
echo "   $gateway_line"
gateway="${gateway_line%% *}"

echo "2b/3 tally-gateway, the script flagged allow-key-locking (${seconds}s after 1s warm-up)"
flagged_sha="$(python3 -c '
import json, sys, urllib.request
body = "#!lua flags=allow-key-locking\n" + open("gateway/examples/bench_like.lua").read()
request = urllib.request.Request(sys.argv[1], data=json.dumps(["SCRIPT", "LOAD", body]).encode(),
                                 headers={"Authorization": "Bearer " + sys.argv[2]})
print(json.load(urllib.request.urlopen(request))["result"])
' "http://127.0.0.1:$gateway_port/" "$token")"
flagged_body="${body/$sha/$flagged_sha}"
flagged_line="$(timeout 60 target/release/examples/load "http://127.0.0.1:$gateway_port/" "$token" "$connections" "$seconds" "$flagged_body")"
echo "   $flagged_line"
flagged="${flagged_line%% *}"

echo "3/3 @humanwhocodes/upstash-redis-server (${seconds}s after 1s warm-up)"
npm_port="$(free_port)"
URS_TOKEN="$token" PORT="$npm_port" REDIS_URL="redis://127.0.0.1:$redis_port" \
  node node_modules/@humanwhocodes/upstash-redis-server/dist/server.js >/dev/null 2>&1 &
pids+=($!)
wait_port "$npm_port"
npm_line="$(timeout 60 target/release/examples/load "http://127.0.0.1:$npm_port/" "$token" "$connections" "$seconds" "$body")"
echo "   $npm_line"
npm="${npm_line%% *}"

echo
printf '%-42s %8s req/s\n' "redis-benchmark, direct:" "$direct"
printf '%-42s %8s req/s\n' "tally-gateway:" "$gateway"
printf '%-42s %8s req/s\n' "tally-gateway, allow-key-locking script:" "$flagged"
printf '%-42s %8s req/s\n' "@humanwhocodes/upstash-redis-server:" "$npm"
awk -v g="$gateway" -v n="$npm" -v d="$direct" 'BEGIN {
  printf "gateway / npm server: %.2fx (goal >= 2x)\n", g / n
  printf "gateway / direct:     %.0f%% (goal >= 40%%)\n", 100 * g / d
}'
awk -v g="$gateway" -v f="$flagged" 'BEGIN {
  printf "flagged / plain:      %.2fx (the SHA1 mapping of allow-key-locking scripts)\n", f / g
}'
