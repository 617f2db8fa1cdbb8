#!/usr/bin/env bash
# bench-read: the read path side by side, in one run on this machine.
# Closed model (BENCH_CONCURRENCY keep-alive workers, back to back: how much
# each serves), measured in interleaved BENCH_SLICE slices so background
# load on the machine hits every target alike:
#   1. uncached product GET  (inventory, INVENTORY_CACHE_ENABLED=false: Postgres)
#   2. cached product GET    (inventory, cache on: Redis)
#   3. 304 revalidation      (inventory, cache on, If-None-Match)
#   4. cached, traced        (the same with every request traced and logged)
#   5. ceiling               (loadtest/baseline/redisget: net/http + one go-redis GET)
#   6. bare pgx handler      (loadtest/baseline/pgxget: net/http + one PK SELECT)
#   7. bare JSON handler     (loadtest/baseline/httpjson: net/http, no I/O)
# Then an open model at the same load for both (80% of the uncached peak,
# requests on a fixed schedule): the p95 a client sees from each.
# 1-3 run as make bench runs the services: LOG_LEVEL=warn, tracing off
# (OTEL_SDK_DISABLED=true); 4 shows what tracing every request and logging
# it at info cost. Rate limiting is off (limit 0). Product reads are
# anonymous: no token, and no Ory Hydra, is needed (inventory fetches the
# issuer's keys only when a token arrives). Needs PostgreSQL and Redis
# (make deps). Everything it starts, it stops.
source "$(dirname "$0")/lib.sh"

CONC=${BENCH_CONCURRENCY:-32}
DUR=${BENCH_DURATION:-10s}
HOT=${BENCH_HOT_SKUS:-1000}
SLICE=${BENCH_SLICE:-2s}
DB=orderflow_bench
DB_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB?sslmode=disable"
BENCH_DIR=$(mktemp -d)
PREFIX="bench-$$:"
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  redis-cli -p "$REDIS_PORT" --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r redis-cli -p "$REDIS_PORT" del >/dev/null 2>&1 || true
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

port_open $PG_HOST $PG_PORT || die "PostgreSQL is not running on $PG_HOST:$PG_PORT (start it with make deps)"
port_open 127.0.0.1 $REDIS_PORT || die "Redis is not running on 127.0.0.1:$REDIS_PORT (start it with make deps)"

# free_port: a port nothing listens on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    port_open 127.0.0.1 "$p" || { echo "$p"; return; }
  done
}

# start NAME CMD...: run CMD in the background, remember its pid, log to the bench dir.
start() {
  local name=$1; shift
  "$@" >"$BENCH_DIR/$name.log" 2>&1 &
  PIDS+=($!)
}

# stop_last: stop the most recently started process.
wait_ready() { # NAME URL
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2" || true)" = 200 ] && return 0
    sleep 0.2
  done
  tail -20 "$BENCH_DIR/$1.log" >&2
  die "$1 did not become ready at $2"
}

say "building"
go build -o "$BENCH_DIR/" ./services/inventory ./loadtest/baseline/redisget ./loadtest/baseline/pgxget \
  ./loadtest/baseline/httpjson ./loadtest/readbench

say "database $DB (10000 products)"
psql -q -h $PG_HOST -p $PG_PORT -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
  -c "CREATE DATABASE $DB" >/dev/null

inventory() { # NAME PORT CACHE_ENABLED LOG_LEVEL OTEL_SDK_DISABLED
  start "$1" env INVENTORY_ADDR="127.0.0.1:$2" INVENTORY_DATABASE_URL="$DB_URL" INVENTORY_SEED_PRODUCTS=10000 \
    INVENTORY_CACHE_ENABLED="$3" INVENTORY_CACHE_PREFIX="$PREFIX" INVENTORY_RATE_LIMIT=0 \
    INVENTORY_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" LOG_LEVEL="$4" OTEL_SDK_DISABLED="$5" \
    "$BENCH_DIR/inventory"
  wait_ready "$1" "http://127.0.0.1:$2/healthz"
}

baseline() { # NAME PORT ENV...
  local name=$1 port=$2; shift 2
  start "$name" env BASELINE_ADDR="127.0.0.1:$port" "$@" "$BENCH_DIR/$name"
  for ((i = 0; i < 100; i++)); do port_open 127.0.0.1 "$port" && return 0; sleep 0.1; done
  tail -20 "$BENCH_DIR/$name.log" >&2
  die "$name did not listen on $port"
}

say "starting inventory without cache, with cache, with cache traced, and the three bare baselines"
p_uncached=$(free_port)
inventory uncached "$p_uncached" false warn true
p_cached=$(free_port)
inventory cached "$p_cached" true warn true
p_traced=$(free_port)
inventory traced "$p_traced" true info false
p_ceiling=$(free_port)
baseline redisget "$p_ceiling" BASELINE_PREFIX="${PREFIX}baseline:" \
  BASELINE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" BASELINE_SEED_PRODUCTS=10000
p_pgx=$(free_port)
baseline pgxget "$p_pgx" BASELINE_DATABASE_URL="$DB_URL" BASELINE_DB_MAX_CONNS=20
p_json=$(free_port)
baseline httpjson "$p_json"

say "closed model, interleaved in ${SLICE} slices: $CONC workers, $DUR per measurement, $HOT hot skus"
"$BENCH_DIR/readbench" -c "$CONC" -d "$DUR" -slice "$SLICE" -skus "$HOT" \
  -t uncached="http://127.0.0.1:$p_uncached" \
  -t cached="http://127.0.0.1:$p_cached" \
  -t revalidate="304+http://127.0.0.1:$p_cached" \
  -t traced="http://127.0.0.1:$p_traced" \
  -t ceiling="http://127.0.0.1:$p_ceiling" \
  -t pgx="http://127.0.0.1:$p_pgx" \
  -t json="http://127.0.0.1:$p_json" | tee "$BENCH_DIR/results"

rate=$(awk '/^RESULT name=uncached /{for(i=2;i<=NF;i++){split($i,kv,"=");if(kv[1]=="rps")print int(kv[2]*0.8)}}' "$BENCH_DIR/results")
say "open model at the same load for both: $rate req/s (80% of the uncached peak), $DUR each"
"$BENCH_DIR/readbench" -c $((CONC * 2)) -rate "$rate" -d "$DUR" -slice "$SLICE" -skus "$HOT" \
  -t same_uncached="http://127.0.0.1:$p_uncached" \
  -t same_cached="http://127.0.0.1:$p_cached" | tee -a "$BENCH_DIR/results"

# The table: one row per measurement, then the ratios against the targets.
awk -v conc="$CONC" -v dur="$DUR" -v hot="$HOT" -v cpus="$(nproc)" -v rate="$rate" '
/^RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  n = v["name"]; names[++count] = n
  rps[n] = v["rps"]; p50[n] = v["p50_ms"]; p95[n] = v["p95_ms"]; p99[n] = v["p99_ms"]
  req[n] = v["requests"]; err[n] = v["errors"]; hits[n] = v["hits"]; late[n] = v["late"]
}
function verdict(ok) { return ok ? "ok" : "MISSED" }
END {
  printf "\nread benchmark: %d workers, %s each, %d hot skus, %d CPUs, load generator on the same machine\n\n", conc, dur, hot, cpus
  printf "| %-34s | %9s | %8s | %8s | %8s | %7s |\n", "measurement", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
  printf "|%s|%s|%s|%s|%s|%s|\n", "------------------------------------", "-----------", "----------", "----------", "----------", "---------"
  label["uncached"] = "uncached GET (Postgres)"; label["cached"] = "cached GET (Redis)"
  label["revalidate"] = "304 revalidation"; label["traced"] = "cached GET, traced + info logs"
  label["ceiling"] = "ceiling: bare go-redis handler"; label["pgx"] = "bare pgx PK SELECT handler"
  label["json"] = "bare JSON handler (no I/O)"
  label["same_uncached"] = "uncached at " rate " req/s (open)"; label["same_cached"] = "cached at " rate " req/s (open)"
  for (i = 1; i <= count; i++) { n = names[i]
    printf "| %-34s | %9.0f | %8.3f | %8.3f | %8.3f | %7d |\n", label[n], rps[n], p50[n], p95[n], p99[n], err[n] }
  r1 = rps["cached"] / rps["ceiling"]; r2 = rps["cached"] / rps["uncached"]
  cut = 1 - p95["cached"] / p95["uncached"]; same = 1 - p95["same_cached"] / p95["same_uncached"]
  hr = hits["cached"] / req["cached"]
  printf "\n| %-52s | %8s | %8s | %6s |\n", "ratio", "measured", "target", ""
  printf "|%s|%s|%s|%s|\n", "------------------------------------------------------", "----------", "----------", "--------"
  printf "| %-52s | %8.2f | %8s | %6s |\n", "cached / ceiling throughput", r1, ">= 0.70", verdict(r1 >= 0.7)
  printf "| %-52s | %7.2fx | %8s | %6s |\n", "cached / uncached throughput", r2, ">= 3x", verdict(r2 >= 3)
  printf "| %-52s | %7.1f%% | %8s | %6s |\n", "p95 cut vs uncached at the same load (open model)", same * 100, ">= 62%", verdict(same >= 0.62)
  printf "| %-52s | %7.1f%% | %8s | %6s |\n", "p95 cut vs uncached, each at its own peak (closed)", cut * 100, "", ""
  printf "| %-52s | %7.1f%% | %8s | %6s |\n", "cache hit ratio (cached run)", hr * 100, "", ""
  printf "| %-52s | %8.2f | %8s | %6s |\n", "304 / cached throughput", rps["revalidate"] / rps["cached"], "", ""
  printf "| %-52s | %8.2f | %8s | %6s |\n", "traced / cached throughput (cost of tracing)", rps["traced"] / rps["cached"], "", ""
  printf "| %-52s | %7.2fx | %8s | %6s |\n", "bound for a Redis cache: ceiling / bare pgx", rps["ceiling"] / rps["pgx"], "", ""
  printf "| %-52s | %7.2fx | %8s | %6s |\n", "bound for any cache: bare JSON / bare pgx", rps["json"] / rps["pgx"], "", ""
  printf "\nThe bounds: a handler that does nothing but one Redis GET (or no I/O at all)\n"
  printf "is the fastest any cached read can be; one that does nothing but one PK SELECT\n"
  printf "is the fastest an uncached one can be. Every line of product code costs both\n"
  printf "alike, so cached / uncached throughput cannot exceed these ratios on this machine.\n"
  if (r1 < 0.7 || r2 < 3 || same < 0.62) exit 3
}' "$BENCH_DIR/results"
