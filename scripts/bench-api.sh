#!/usr/bin/env bash
# Benchmarks the worker's API against a JavaScript worker and a minimal
# one-fetch worker, in one run, on one fresh redis-server and tally-gateway on
# loopback (docs/benchmarks.md):
#   rust     the built bundle (build/index.js + build/index_bg.wasm), or
#            BENCH_RUST_BUNDLE (another build's index.js);
#   base     with BENCH_BASELINE_BUNDLE (another build's index.js) only: a
#            second Rust build, in the same turns, for an A/B of a change;
#   js       bench/js-worker: the same routes with @upstash/redis and Web Crypto;
#   minimal  bench/minimal-worker: one EVALSHA through fetch per /v1/ request.
# All three are served at once by workerd through Miniflare's API, no inspector
# (scripts/serve-bundle.mjs), and driven one at a time by examples/load_api.rs
# at 32 keep-alive connections through the phases notfound (404), like, unlike,
# view, read and batch (20 ids). Each phase runs BENCH_ROUNDS times (default 3)
# per worker, the workers taking turns (rust js minimal, then minimal js rust,
# ...), so a busy moment of this shared machine falls on all three alike: per
# slice, requests/s and CPU ms per request of the loaded workerd process tree
# over the same window; per route, the median of each worker's slices and the
# median of the per-round ratios (with their range). Then cold starts (a fresh
# workerd's first answer to a read), Redis scripts per request from INFO
# commandstats, the gzipped size of both wasm builds (build/ and build/edge/),
# and PASS/MISS per goal of issue 11. A
# MISS does not fail the run; a failed request, an unexpected status, a server
# that closes more than 1 in 1,000 connections under load, or a JS answer whose
# JSON shape differs from the Rust worker's does. Bounded: BENCH_SECONDS
# (default 3) per slice plus a one-second warm-up; about six minutes plus builds.
# BENCH_ROUTES picks phases (unlike needs like before it).
# `bench-api.sh --perf` (`make bench-perf`): the same run with `perf record`
# on each loaded workerd (no inspector, so wasm runs as it does unprofiled),
# then, per route and worker, workerd's CPU per request split by the code that
# ran it: the JIT's (wasm and optimised JavaScript), V8's builtins and
# interpreter, V8's C++, workerd's, the allocator's, the kernel's.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

connections="${BENCH_CONNECTIONS:-32}"
seconds="${BENCH_SECONDS:-3}"
cold_runs="${BENCH_COLD_RUNS:-3}"
# Slices per route and worker; their medians resist a busy machine.
rounds="${BENCH_ROUNDS:-3}"
token="bench-gateway-token"
secret="bench-jwt-secret"
read -r -a routes <<<"${BENCH_ROUTES:-notfound like unlike view read batch}"
perf=""
if [ "${1:-}" = --perf ]; then
  perf=1
  command -v perf >/dev/null || { echo "bench-perf needs perf (linux-tools): not found" >&2; exit 1; }
fi
workers=(rust js minimal)
# The workers served and loaded: with a baseline build, a fourth.
served=(rust js minimal)
[ -n "${BENCH_BASELINE_BUNDLE:-}" ] && served+=(base)

cargo build --release --quiet -p tally-gateway --bin tally-gateway
cargo build --release --quiet -p tally --example load_api
# BENCH_RUST_BUNDLE measures another build of the Rust worker (its .wasm is
# found beside it); by default build/, rebuilt when older than its sources.
rust_bundle="${BENCH_RUST_BUNDLE:-$PWD/build/index.js}"
if [ -z "${BENCH_RUST_BUNDLE:-}" ] && { [ ! -f build/index.js ] ||
  [ -n "$(find src assets Cargo.toml Cargo.lock .cargo -newer build/index.js -print -quit)" ]; }; then
  bash scripts/build.sh
fi
rust_wasm="$(find "$(dirname "$rust_bundle")" -maxdepth 1 -name '*.wasm' | head -1)"
# The edge build beside it (build/edge/: the Worker in front when the system of
# record runs in a Worker of its own, README "Two Workers"), when there is one.
edge_wasm="$(dirname "$rust_bundle")/edge/index_bg.wasm"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (at most 30 s) until something answers HTTP on the port.
wait_http() {
  local deadline=$((SECONDS + 30))
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

# The JavaScript workers, bundled as wrangler would (esbuild, ES module); the
# JS worker takes the Rust worker's Lua scripts as text.
esbuild_flags=(--bundle --format=esm --platform=neutral --main-fields=module,main
  --conditions=workerd,worker,browser --loader:.lua=text --log-level=warning)
node_modules/.bin/esbuild bench/js-worker/src/index.js "${esbuild_flags[@]}" --outfile="$dir/js.js"
node_modules/.bin/esbuild bench/minimal-worker/src/index.js "${esbuild_flags[@]}" --outfile="$dir/minimal.js"
declare -A bundle=([rust]="$rust_bundle" [js]="$dir/js.js" [minimal]="$dir/minimal.js"
  [base]="${BENCH_BASELINE_BUNDLE:-}")

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$dir" --loglevel warning >/dev/null &
pids+=($!)

gateway_port="$(free_port)"
target/release/tally-gateway --listen "127.0.0.1:$gateway_port" \
  --redis-url "redis://127.0.0.1:$redis_port" --token "$token" 2>"$dir/gateway.log" &
pids+=($!)
wait_http "$gateway_port"

# The minimal worker's script, loaded once; it only ever sends EVALSHA.
script_sha="$(jq -Rs '["SCRIPT", "LOAD", .]' gateway/examples/bench_like.lua |
  curl -sf -H "Authorization: Bearer $token" --data-binary @- "http://127.0.0.1:$gateway_port/" |
  jq -r .result)"

date="$(sed -nE 's/^compatibility_date *= *"([^"]+)".*/\1/p' wrangler.toml)"
cat >"$dir/vars" <<EOF
UPSTASH_REDIS_REST_URL=http://127.0.0.1:$gateway_port
UPSTASH_REDIS_REST_TOKEN=$token
TALLY_JWT_SECRET=$secret
TALLY_API_KEY=bench-api-key
RATE_LIMIT_PER_MINUTE=1000000000
SCRIPT_SHA=$script_sha
EOF

# `bench-api.sh --profile`: CPU profiles of one worker (BENCH_WORKER, default
# rust) through workerd's inspector instead of the comparison (bench/profile.mjs).
if [ "${1:-}" = --profile ]; then
  node --experimental-websocket bench/profile.mjs "${bundle[${BENCH_WORKER:-rust}]}" "$dir/vars" \
    "$date" "$PWD/build/profile/${BENCH_WORKER:-rust}" target/release/examples/load_api "$secret" \
    "$connections" "$seconds" ${BENCH_PHASES:-notfound like view read batch}
  exit
fi

# Scripts Redis ran for clients (EVAL/EVALSHA in any form; a pipeline of 20
# counts 20): what Upstash bills, besides the commands inside them.
scripts_run() {
  redis-cli -p "$redis_port" INFO commandstats |
    awk -F'[:=,]' '/^cmdstat_eval(sha)?(_ro)?:/ { n += $3 } END { print n + 0 }'
}

# Starts WORKER's bundle; sets port[WORKER] (the URL's) and workerd[WORKER]
# (its process id). An idle workerd spends no CPU, so the three can stay up.
declare -A port workerd
start() {
  local log="$dir/serve.$1.log" found=""
  node scripts/serve-bundle.mjs "${bundle[$1]}" 0 "$date" "$dir/vars" >"$log" 2>&1 </dev/null &
  pids+=($!)
  for _ in $(seq 300); do # 60 s at most
    found="$(sed -nE 's|^serving .* at http://127\.0\.0\.1:([0-9]+)/$|\1|p' "$log")"
    [ -n "$found" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  [ -n "$found" ] || { cat "$log" >&2; exit 1; }
  port[$1]="$found"
  workerd[$1]="$(pgrep -g "${pids[-1]}" -x workerd | head -1 || true)"
  [ -n "${workerd[$1]}" ] || { echo "no workerd process under $1's server" >&2; exit 1; }
}

# An HS256 token for SUB, for the shape check.
sign() {
  node -e '
    const { createHmac } = require("node:crypto");
    const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const input = part({ alg: "HS256", typ: "JWT" }) + "." + part({ sub: process.argv[2], exp: Math.floor(Date.now() / 1000) + 600 });
    console.log(input + "." + createHmac("sha256", process.argv[1]).update(input).digest("base64url"));
  ' "$secret" "$1"
}

# Writes, per route, the status and the JSON shape (every path and its type,
# sorted: key order is not compared) of one answer from WORKER's server.
shapes() {
  local auth="Authorization: Bearer $(sign "shape-$1")" out="$dir/shape.$1"
  local base="http://127.0.0.1:${port[$1]}" item="shape-$1"
  : >"$out"
  shape() {
    local name="$1"
    shift
    curl -s --max-time 10 -o "$dir/body" -w '%{http_code}' "$@" | sed "s/^/$name /" >>"$out"
    printf ' %s\n' "$(jq -c '[paths as $p | ($p | map(tostring) | join(".")) + ":" + (getpath($p) | type)] | sort' "$dir/body" 2>/dev/null || echo not-json)" >>"$out"
  }
  shape notfound "$base/bench/unknown"
  shape like -X PUT -H "$auth" "$base/v1/items/$item/like"
  shape unlike -X DELETE -H "$auth" "$base/v1/items/$item/like"
  shape like_no_token -X PUT "$base/v1/items/$item/like"
  shape view -X POST -H "$auth" "$base/v1/items/$item/views"
  shape view_anonymous -X POST "$base/v1/items/$item/views"
  shape read "$base/v1/items/$item"
  shape read_with_token -H "$auth" "$base/v1/items/$item"
  shape batch "$base/v1/items?ids=$item,shape-other"
  shape bad_item "$base/v1/items/a%20b"
  shape wrong_method -X POST "$base/v1/items/$item"
}

echo "Worker API: ${served[*]}; $connections connections, ${seconds}s per slice after a 1s warm-up, $rounds slice(s) per route and worker, loopback"
# The machine's load, so a reader can tell a quiet run from a busy one.
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
: >"$dir/results"
for worker in "${served[@]}"; do start "$worker"; done
# Redis, the gateway, the machine and each isolate warm up on their first
# traffic (in early runs the first measured worker read and viewed 20-90% more
# slowly than later): first an unmeasured second of every phase on each.
for worker in "${served[@]}"; do
  for route in "${routes[@]}"; do
    timeout 60 target/release/examples/load_api "http://127.0.0.1:${port[$worker]}" "$route" \
      "$connections" 1 "$secret" "warm-$worker" >/dev/null 2>&1 || true
  done
  case "$worker" in rust | js) shapes "$worker" ;; esac
done

for route in "${routes[@]}"; do
  printf '%-9s' "$route"
  for round in $(seq "$rounds"); do
    # Turns alternate: rust js minimal (base), then (base) minimal js rust.
    order=("${served[@]}")
    [ $((round % 2)) -eq 0 ] && for ((i = ${#served[@]} - 1, j = 0; i >= 0; i--, j++)); do order[j]="${served[i]}"; done
    for worker in "${order[@]}"; do
      before="$(scripts_run)"
      status=0
      recorder=""
      if [ -n "$perf" ]; then
        perf record -q -F 997 -p "${workerd[$worker]}" -o "$dir/perf.$worker.$route.$round" \
          >>"$dir/perf.log" 2>&1 &
        recorder=$!
      fi
      line="$(timeout 60 target/release/examples/load_api "http://127.0.0.1:${port[$worker]}" "$route" \
        "$connections" "$seconds" "$secret" "$worker$round" "${workerd[$worker]}")" || status=$?
      if [ -n "$recorder" ]; then
        kill -INT "$recorder" 2>/dev/null || true
        wait "$recorder" 2>/dev/null || true
      fi
      after="$(scripts_run)"
      [ -n "$line" ] || line="requests=0 seconds=0 rps=0 failed=1 closed=0 marked=0 total=0 cpu_ms=0 first_status=0"
      echo "worker=$worker round=$round route=$route scripts=$((after - before)) exit=$status $line" >>"$dir/results"
      printf ' %s %s' "${worker:0:1}" "$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "%s/%.2f", f["rps"], (f["requests"] > 0 ? f["cpu_ms"] / f["requests"] : 0) }' <<<"$line")"
    done
  done
  printf '  (req/s / CPU ms per request, per slice)\n'
done
# Stops the workers' servers (each in its own process group) before the cold starts.
for pid in "${pids[@]:2}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
for pid in "${pids[@]:2}"; do wait "$pid" 2>/dev/null || true; done

echo "Cold start: a fresh workerd's first answer to GET /v1/items/cold-N (reads Redis), $cold_runs runs each"
for run in $(seq "$cold_runs"); do
  for worker in "${workers[@]}"; do
    line="$(timeout 60 node scripts/serve-bundle.mjs "${bundle[$worker]}" 0 "$date" "$dir/vars" \
      --cold "/v1/items/cold-$run" </dev/null 2>&1 | tail -1 || true)"
    echo "worker=$worker run=$run $line" >>"$dir/cold"
    printf '  %-8s %s\n' "$worker" "$line"
  done
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
wasm_raw="$(wc -c <"$rust_wasm")"
wasm_gzip="$(gzip -9 -n -c "$rust_wasm" | wc -c)"
edge_raw=0
edge_gzip=0
if [ -f "$edge_wasm" ]; then
  edge_raw="$(wc -c <"$edge_wasm")"
  edge_gzip="$(gzip -9 -n -c "$edge_wasm" | wc -c)"
fi
js_raw="$(wc -c <"$dir/js.js")"
js_gzip="$(gzip -9 -n -c "$dir/js.js" | wc -c)"

# The awk function both reports read a results line with: field(name) is the
# value of its name=value pair ("" when it has none).
field_awk='
function field(name,   i, kv) {
  for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
  return ""
}
'
echo
awk -v wasm_raw="$wasm_raw" -v wasm_gzip="$wasm_gzip" -v edge_raw="$edge_raw" -v edge_gzip="$edge_gzip" -v js_raw="$js_raw" -v js_gzip="$js_gzip" \
  -v route_list="${routes[*]}" -v rounds="$rounds" -v cold_file="$dir/cold" -v shape_rust="$dir/shape.rust" -v shape_js="$dir/shape.js" "$field_awk"'
function ratio(a, b) { return b > 0 ? a / b : 0 }
function verdict(ok) { return ok ? "PASS" : "MISS" }
# The verdict of a goal on ROUTE, or "----" when this run left the route out (BENCH_ROUTES).
function judged(route, ok) { return (route in ran) ? verdict(ok) : "----" }
# The median of x[1..n] (mawk has no asort): an insertion sort first; of an
# even count, the mean of the middle two.
function median(x, n,   i, j, t) {
  for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
  return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
}
# Fills out[1..rounds] with of[kx, round] / of[ky, round]: the ratio of two
# workers, slice by slice, round by round (of: rps_of or ms_of).
function paired(of, kx, ky, out,   i) {
  for (i = 1; i <= rounds; i++) out[i] = ratio(of[kx, i], of[ky, i])
}
# The smallest and largest of x[1..n], as "min-max".
function spread(x, n,   i, lo, hi) {
  lo = hi = x[1]
  for (i = 2; i <= n; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i] }
  return sprintf("%.2f-%.2f", lo, hi)
}
{
  w = field("worker"); route = field("route"); round = field("round")
  k = w SUBSEP route
  rps_of[k, round] = field("rps"); ms_of[k, round] = ratio(field("cpu_ms"), field("requests"))
  marked[k] += field("total_marked"); total[k] += field("total"); scripts[k] += field("scripts")
  closed[k] += field("closed")
  if (field("failed") > 0 || field("exit") != 0 || field("total") == 0) errors = errors sprintf("  %s %s round %s: %s failed, %s closed unanswered, %s answered, first unexpected status %s, exit %s\n", w, route, round, field("failed"), field("closed"), field("total"), field("first_status"), field("exit"))
}
END {
  nroutes = split(route_list, routes, " ")
  split("rust js minimal", workers, " ")
  printf "Medians of %d slice(s); ratios are medians of the per-round pairs, their range in brackets\n", rounds
  printf "%-9s %6s %6s %6s | %6s %6s %6s | %-18s %-18s | %s\n", "route", "rust", "js", "min", "rust", "js", "min", "rust/js", "rust CPU/", "scripts/request"
  printf "%-9s %6s %6s %6s | %6s %6s %6s | %-18s %-18s | %s\n", "", "req/s", "req/s", "req/s", "CPU ms", "CPU ms", "CPU ms", "req/s", "min CPU", "rust js min; writes"
  for (r = 1; r <= nroutes; r++) {
    route = routes[r]
    for (w = 1; w <= 3; w++) {
      k = workers[w] SUBSEP route
      for (i = 1; i <= rounds; i++) { a[i] = rps_of[k, i]; b[i] = ms_of[k, i] }
      rps[workers[w]] = median(a, rounds); ms[workers[w]] = median(b, rounds)
      per[workers[w]] = ratio(scripts[k], total[k])
    }
    kr = "rust" SUBSEP route; kj = "js" SUBSEP route; km = "minimal" SUBSEP route
    paired(rps_of, kr, kj, a); paired(ms_of, kr, km, b)
    speed_range = spread(a, rounds); cpu_range = spread(b, rounds)
    speed[route] = median(a, rounds); cpu_vs_min[route] = median(b, rounds); ran[route] = 1
    paired(rps_of, km, kj, a)
    ceiling[route] = median(a, rounds)
    writes = ""
    if (route == "like" || route == "unlike" || route == "view")
      writes = sprintf("; %.0f%% %.0f%% wrote", 100 * ratio(marked[kr], total[kr]), 100 * ratio(marked[kj], total[kj]))
    printf "%-9s %6.0f %6.0f %6.0f | %6.3f %6.3f %6.3f | %5.2fx %-12s %5.2fx %-12s | %.2f %.2f %.2f%s\n", route,
      rps["rust"], rps["js"], rps["minimal"], ms["rust"], ms["js"], ms["minimal"],
      speed[route], "[" speed_range "]", cpu_vs_min[route], "[" cpu_range "]",
      per["rust"], per["js"], per["minimal"], writes
    if (route == "view") { view_scripts = ratio(scripts[kr], marked[kr]); js_view_scripts = ratio(scripts[kj], marked[kj]) }
  }
  if (("base" SUBSEP routes[1]) in marked) {
    print ""
    print "rust against base (BENCH_BASELINE_BUNDLE), medians of the per-round ratios, their range in brackets:"
    printf "  %-9s %-22s %s\n", "route", "rust req/s / base", "rust CPU / base CPU"
    for (r = 1; r <= nroutes; r++) {
      route = routes[r]; kr = "rust" SUBSEP route; kb = "base" SUBSEP route
      paired(rps_of, kr, kb, a); paired(ms_of, kr, kb, b)
      speed_range = spread(a, rounds); cpu_range = spread(b, rounds)
      printf "  %-9s %5.2fx %-15s %5.2fx %s\n", route, median(a, rounds), "[" speed_range "]", median(b, rounds), "[" cpu_range "]"
    }
  }
  for (k in closed) if (closed[k] > 0) { split(k, wr, SUBSEP); printf "  %s %s: the server closed %d connection(s) before answering (opened again)\n", wr[1], wr[2], closed[k] }
  while ((getline line < cold_file) > 0) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
    if (v["first_ms"] == "") { errors = errors "  cold start of " v["worker"] ": " line "\n"; continue }
    cold[v["worker"], ++runs[v["worker"]]] = v["ready_ms"] + v["first_ms"]
    first[v["worker"], runs[v["worker"]]] = v["first_ms"]
    delete v
  }
  print ""
  print "Cold start (median): spawn to first answer = workerd ready + first request"
  for (w = 1; w <= 3; w++) {
    name = workers[w]; n = runs[name]
    if (n == 0) continue
    for (i = 1; i <= n; i++) { a[i] = cold[name, i]; b[i] = first[name, i] }
    median_total[name] = median(a, n); median_first[name] = median(b, n)
    printf "  %-8s %7.0f ms   (first request after ready: %.0f ms)\n", name, median_total[name], median_first[name]
  }
  printf "wasm: %d bytes raw, %d bytes gzipped (%.0f KiB); JS worker bundle: %d bytes raw, %d gzipped\n", wasm_raw, wasm_gzip, wasm_gzip / 1024, js_raw, js_gzip
  if (edge_gzip > 0)
    printf "edge wasm (two Workers: the one in front, no system of record): %d bytes raw, %d bytes gzipped\n", edge_raw, edge_gzip

  print ""
  print "Goals (issue 11), the median ratios above:"
  split("like unlike view read batch", redis_routes, " ")
  for (r = 1; r <= 5; r++)
    printf "  %s  %-6s rust req/s / js req/s      %5.2fx (goal >= 1.2x)\n", judged(redis_routes[r], speed[redis_routes[r]] >= 1.2), redis_routes[r], speed[redis_routes[r]]
  # The minimal worker does less than any Tally worker can (one fetch, nothing
  # checked): its req/s over the JS worker is what the goal above could reach
  # in expectation; single runs scatter around it.
  for (r = 1; r <= 5; r++)
    if (redis_routes[r] in ran)
      printf "  info  %-6s minimal req/s / js req/s   %5.2fx (a worker doing one fetch and nothing else)\n", redis_routes[r], ceiling[redis_routes[r]]
  printf "  %s  like   rust CPU / minimal CPU    %5.2fx (goal <= 1.25x)\n", judged("like", cpu_vs_min["like"] > 0 && cpu_vs_min["like"] <= 1.25), cpu_vs_min["like"]
  printf "  %s  view   rust CPU / minimal CPU    %5.2fx (goal <= 1.25x)\n", judged("view", cpu_vs_min["view"] > 0 && cpu_vs_min["view"] <= 1.25), cpu_vs_min["view"]
  printf "  %s  404    rust CPU / minimal CPU    %5.2fx (goal <= 1.1x)\n", judged("notfound", cpu_vs_min["notfound"] > 0 && cpu_vs_min["notfound"] <= 1.1), cpu_vs_min["notfound"]
  # 150 KB as the issue counts it (its 320 KB were 320,053 bytes).
  if (edge_gzip > 0)
    printf "  %s  %-32s %d B (goal <= 150000 B)\n", verdict(edge_gzip <= 150000), "wasm gzipped, edge of two Workers", edge_gzip
  printf "  %s  %-32s %d B (goal <= 150000 B)\n", (edge_gzip > 0) ? "info" : verdict(wasm_gzip <= 150000), "wasm gzipped, one Worker", wasm_gzip
  printf "  %s  scripts per counted view (rust) %5.2f (goal 1)\n", judged("view", view_scripts > 0 && view_scripts <= 1.01), view_scripts
  printf "  info  scripts per counted view (js)   %5.2f\n", js_view_scripts
  printf "  info  cold start rust / js          %5.2fx (%.0f ms vs %.0f ms)\n", ratio(median_total["rust"], median_total["js"]), median_total["rust"], median_total["js"]

  while ((getline line < shape_rust) > 0) rust_shape[++nr] = line
  while ((getline line < shape_js) > 0) js_shape[++nj] = line
  for (i = 1; i <= nr || i <= nj; i++)
    if (rust_shape[i] != js_shape[i]) errors = errors "  JSON shape differs:\n    rust " rust_shape[i] "\n    js   " js_shape[i] "\n"
  if (nr == 0) errors = errors "  no shape check ran\n"
  if (errors != "") { printf "\nFAILED: the figures above mean nothing:\n%s", errors > "/dev/stderr"; exit 1 }
}' "$dir/results"

# --perf: workerd's CPU per request, split by the code that ran it. Each slice's
# samples are sorted by symbol and place: JIT code (no symbol: wasm, and
# JavaScript that V8 optimised), V8's builtins (Builtins_*, which include the
# bytecode interpreter), V8's C++, workerd's own C++ (workerd::, kj::,
# capnp::), the allocator (tcmalloc), the kernel, the rest (libc, ...). The
# shares, over every slice of a route and worker, times that route and
# worker's CPU per request over the same slices, give microseconds per request.
if [ -n "$perf" ]; then
  if ! compgen -G "$dir/perf.*.*.*" >/dev/null; then
    echo "perf recorded nothing (may this user profile its processes? kernel.perf_event_paranoid):" >&2
    cat "$dir/perf.log" >&2
    exit 1
  fi
  for file in "$dir"/perf.*.*.*; do
    perf script -i "$file" -F ip,sym,dso 2>/dev/null | awk -v slice="${file#"$dir"/perf.}" '
      {
        c = "other"
        if ($0 ~ /\[JIT\]|perf-[0-9]+\.map/) c = "jit"
        else if ($0 ~ /\[kernel|kallsyms/) c = "kernel"
        else if ($0 ~ / Builtins_/) c = "builtins"
        else if ($0 ~ /tcmalloc|TCMalloc/) c = "alloc"
        else if ($0 ~ /v8::/) c = "v8"
        else if ($0 ~ /workerd::|kj::|capnp::/) c = "workerd"
        n[c]++
      }
      END { split(slice, s, "."); for (c in n) print s[1], s[2], c, n[c] }'
  done >"$dir/perf.samples"
  echo
  echo "Where workerd's CPU goes (perf record at 997 Hz on the loaded workerd, no inspector), us per request:"
  echo "the CPU per request of a route's slices, split as the samples of those slices fall"
  awk -v route_list="${routes[*]}" -v workers="${served[*]}" "$field_awk"'
    FNR == NR {
      k = field("worker") SUBSEP field("route")
      cpu[k] += field("cpu_ms"); requests[k] += field("requests"); seconds[k] += field("seconds")
      next
    }
    { samples[$1, $2, $3] += $4; total[$1, $2] += $4 }
    END {
      split("jit builtins v8 workerd alloc kernel other", cats, " ")
      printf "%-9s %-8s %7s | %8s %8s %8s %8s %8s %8s %8s | %s\n", "route", "worker", "total", "JIT", "builtins", "V8 C++", "workerd", "alloc", "kernel", "other", "samples"
      nroutes = split(route_list, routes, " "); nworkers = split(workers, names, " ")
      for (r = 1; r <= nroutes; r++) {
        route = routes[r]
        for (w = 1; w <= nworkers; w++) {
          k = names[w] SUBSEP route
          if (total[k] == 0 || requests[k] == 0) continue
          us[names[w]] = 1000 * cpu[k] / requests[k]
          printf "%-9s %-8s %7.1f |", route, names[w], us[names[w]]
          for (c = 1; c <= 7; c++) {
            part = us[names[w]] * samples[names[w], route, cats[c]] / total[k]
            printf " %8.1f", part
            if (cats[c] == "jit") jit[names[w]] = part
          }
          printf " | %d\n", total[k]
          if (samples[names[w], route, "other"] > total[k] / 2) unnamed = 1
        }
        # workerd runs a worker on one thread: while the load keeps it busy
        # (about 1,000 ms of CPU per second), requests/s goes as 1 / CPU per
        # request, and were the JIT code of the Rust worker free, this is the most
        # rust/js requests/s could be. Less busy, something else (Redis, the
        # gateway) bounds requests/s too, and the figure speaks for CPU only.
        if (route != "notfound" && us["rust"] > jit["rust"] && us["js"] > 0) {
          printf "%-9s rust/js req/s with the Rust worker'\''s JIT code at zero: at most %.2fx (now %.2fx by CPU)", "", us["js"] / (us["rust"] - jit["rust"]), us["js"] / us["rust"]
          busy_rust = seconds["rust", route] > 0 ? cpu["rust", route] / seconds["rust", route] : 0
          busy_js = seconds["js", route] > 0 ? cpu["js", route] / seconds["js", route] : 0
          if (busy_rust < 900 || busy_js < 900)
            printf "; workerd busy only %.0f (rust) and %.0f (js) ms/s: not CPU alone", busy_rust, busy_js
          printf "\n"
        }
        delete us; delete jit
      }
      if (unnamed) print "  (over half the samples fell in no known place: is workerd'\''s binary stripped of its symbols?)"
    }' "$dir/results" "$dir/perf.samples"
fi
