#!/usr/bin/env bash
# make bench: the whole benchmark in one go — baselines, read path, orders end
# to end and the floor of one order, seed 000 (patterns off vs on), provider
# outage, the cost of trust (the TLS gateway vs direct, the token decision
# cache vs none), the remote-database profile (Toxiproxy, +1 ms each way in
# front of PostgreSQL) — on this machine, and the report: docs/benchmarks.md,
# docs/benchmarks.json, docs/img/bench-*.svg; a full run also appends its
# figures to docs/bench-history.jsonl (make bench-compare prints two runs).
# Everything runs on loopback on free ports with scratch databases and is
# stopped and dropped at the end; the run is bounded (BENCH_DEADLINE, 20m;
# about 14 min here). Phases (for -only): pgbench, reads, seed000, orders,
# floor, breaker, trust, remotedb.
# Needs PostgreSQL and Redis (make deps), the pgbench binary (Debian:
# postgresql-contrib; PostgreSQL 15 ships it in postgresql-client), haproxy
# and openssl (the gateway and its certificate, scripts/tls.sh) and the Node
# tools (make deps installs them: fauxqs and maildev are started on free
# ports when needed). Installs the pinned k6 into bin/ when it is missing and
# builds Ory Hydra once: the bench starts its own, and the load signs in 100
# customers there (every call carries a real access token).
#
# BENCH_DURATION (20s) is the length of each k6 measurement, BENCH_VUS (16)
# the concurrency of the closed-model runs; extra arguments go to loadtest/bench.
# One phase again, merged into the report (the others' figures are kept):
#   scripts/bench.sh -only trust -duration 10s
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

K6_VERSION=v1.8.1
port_open $PG_HOST $PG_PORT || die "PostgreSQL is not running on $PG_HOST:$PG_PORT (start it with make deps)"
port_open 127.0.0.1 $REDIS_PORT || die "Redis is not running on 127.0.0.1:$REDIS_PORT (start it with make deps)"
command -v pgbench >/dev/null || die "pgbench is missing (apt-get install postgresql-contrib, or postgresql-client-15)"
command -v psql >/dev/null || die "psql is missing (apt-get install postgresql-client)"
command -v haproxy >/dev/null || die "haproxy is missing (apt-get install haproxy): the trust phase runs the gateway"
command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl): scripts/tls.sh makes the gateway's certificate"
if ! [ -x bin/k6 ] || ! bin/k6 version 2>/dev/null | grep -q "k6 $K6_VERSION "; then
  say "installing k6 $K6_VERSION into bin/ (go install, about a minute)"
  mkdir -p bin
  GOBIN="$ROOT/bin" go install "go.k6.io/k6@$K6_VERSION"
fi
[ -x tools/node_modules/.bin/fauxqs ] || (cd tools && npm ci --no-audit --no-fund --loglevel=error)
if [ -z "${HYDRA_BIN:-}" ]; then HYDRA_BIN=$(hydra_bin) || exit 1; fi
export HYDRA_BIN

# A hard stop a minute after the program's own deadline, in case a child hangs.
exec timeout --kill-after=30s 21m go run ./loadtest/bench -k6 bin/k6 \
  -duration "${BENCH_DURATION:-20s}" -vus "${BENCH_VUS:-16}" -deadline "${BENCH_DEADLINE:-20m}" "$@"
