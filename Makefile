# The two commands a new user runs: `make dev` and `make test`.
.PHONY: dev test build setup token bench-engine bench-gateway bench-api

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

build:
	bash scripts/setup.sh
	bash scripts/build.sh

setup:
	bash scripts/setup.sh --test

# An identity token for SUB signed with the local worker's secret, for curl:
# make token SUB=user-42 [TTL=3600]
token:
	@node scripts/token.mjs

# Redis memory per like (Set vs Bitmap) and REST round trips per engine operation.
bench-engine:
	bash scripts/bench-engine.sh

# REST gateway throughput: EVALSHA through tally-gateway vs redis-benchmark direct
# vs the npm @humanwhocodes/upstash-redis-server, 64 connections, one run.
bench-gateway:
	bash scripts/bench-gateway.sh

# Worker API throughput: /healthz (baseline), likes and reads at 32 connections,
# the built bundle under Miniflare (no inspector) and under wrangler dev, one run.
bench-api:
	bash scripts/bench-api.sh
