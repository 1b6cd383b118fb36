#!/usr/bin/env bash
# Starts Tally locally: redis-server (data in .tally/redis, AOF every second),
# the REST gateway in front of it, and the worker under `wrangler dev` with its
# local D1 database (the system of record, data in .tally/d1, migrations
# applied first). The cron pass does not run by itself under `wrangler dev`;
# run it by hand:
#   curl "http://127.0.0.1:8787/__scheduled?cron=*+*+*+*+*"
# or, with its report, POST /v1/admin/reconcile with the API key.
# TALLY_WORKERS=two runs the two Workers of README "Two Workers" instead (the
# edge build in front of the whole build, wrangler.edge.toml and
# wrangler.record.toml): then only POST /v1/admin/reconcile runs the pass.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

bash scripts/setup.sh
[ -f .dev.vars ] || cp .dev.vars.example .dev.vars
# shellcheck disable=SC1091
set -a; . ./.dev.vars; set +a

redis_port="${TALLY_REDIS_PORT:-6380}"
gateway_addr="${UPSTASH_REDIS_REST_URL#http://}"
worker_port="${TALLY_PORT:-8787}"

cargo build --release -p tally-gateway

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "tally: stopped"
}
trap stop INT TERM EXIT

mkdir -p .tally/redis
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$PWD/.tally/redis" \
  --appendonly yes --appendfsync everysec --save '' --loglevel warning &
pids+=($!)

target/release/tally-gateway --listen "$gateway_addr" \
  --redis-url "redis://127.0.0.1:$redis_port" --token "$UPSTASH_REDIS_REST_TOKEN" &
pids+=($!)

export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
configs=()
case "${TALLY_WORKERS:-one}" in
  one) ;;
  two) configs=(-c wrangler.edge.toml -c wrangler.record.toml) ;;
  *) echo "TALLY_WORKERS must be one or two" >&2; exit 2 ;;
esac
# The database is the record Worker's; with one Worker, wrangler.toml's.
node_modules/.bin/wrangler d1 migrations apply DB --local --persist-to .tally/d1 \
  ${configs[@]:+-c "${configs[-1]}"} </dev/null
node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "$worker_port" \
  "${configs[@]}" --persist-to .tally/d1 --test-scheduled </dev/null &
pids+=($!)

echo "tally: redis on 127.0.0.1:$redis_port, gateway on http://$gateway_addr"
echo "tally: open http://127.0.0.1:$worker_port once wrangler says Ready (Ctrl-C stops everything)"
if [ "${#configs[@]}" -eq 0 ]; then
  echo "tally: run the reconciliation pass with: curl \"http://127.0.0.1:$worker_port/__scheduled?cron=*+*+*+*+*\""
else
  echo "tally: two Workers; run the pass with: curl -X POST -H \"Authorization: Bearer \$TALLY_API_KEY\" http://127.0.0.1:$worker_port/v1/admin/reconcile"
fi
wait -n "${pids[@]}"
