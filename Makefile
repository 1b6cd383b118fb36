# The two commands a new user runs: `make dev` and `make test`.
.PHONY: dev test build setup token bench-engine bench-outbox bench-gateway bench-api bench-perf bench-profile

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

# What the outbox costs a like: likes/s through the gateway with the outbox off
# and on in one run (release build), Redis time per like, memory per event.
bench-outbox:
	bash scripts/bench-outbox.sh

# REST gateway throughput: EVALSHA through tally-gateway vs redis-benchmark direct
# vs the npm @humanwhocodes/upstash-redis-server, 64 connections, one run.
bench-gateway:
	bash scripts/bench-gateway.sh

# Worker API in one run: the Rust worker vs a JavaScript worker (bench/js-worker)
# vs a minimal one-fetch worker (bench/minimal-worker), per route: req/s at 32
# connections, workerd CPU ms per request (medians of interleaved slices), cold
# start, wasm size, and the goals.
bench-api:
	bash scripts/bench-api.sh

# The same run with `perf record` on each loaded workerd: CPU per request per
# route and worker, split by the code that ran it (JIT, V8, workerd, kernel).
bench-perf:
	bash scripts/bench-api.sh --perf

# Where the Rust worker's CPU goes, per route: V8 CPU profiles through workerd's
# inspector (build/profile/rust/*.cpuprofile) and a summary of the suspects.
bench-profile:
	bash scripts/bench-api.sh --profile
