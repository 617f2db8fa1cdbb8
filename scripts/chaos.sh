#!/usr/bin/env bash
# make chaos FAULT=<fault>: switches one fault on in make dev's running
# stack, or every fault off, and says what to watch. The switches are
# Toxiproxy's HTTP API (127.0.0.1:8474), whose proxies make dev puts between
# the four services and PostgreSQL, Redis and the SQS endpoint, payment's
# admin route PUT /admin/provider (with an orderflow-admin token from make
# dev's Hydra), and SIGKILL. Faults add up; off heals them all.
# docs/game-days.md says what each one showed in a real run.
#
#   scripts/chaos.sh start     (make dev) start Toxiproxy and create the proxies
#   scripts/chaos.sh           the state of the proxies and of the provider
#   scripts/chaos.sh list      the fault names, one a line
#   scripts/chaos.sh watch F   what to watch during fault F, switching nothing
#   scripts/chaos.sh F         switch fault F on (off: everything off)
#
# Identity, the provider and Hydra reach PostgreSQL and Redis directly, so
# tokens (make token, the admin token off needs) keep working in every fault.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

FAULTS="db-latency db-down redis-down sqs-down provider-outage provider-latency inventory-kill off"
DB_LATENCY_MS=${DB_LATENCY_MS:-500}
# Longer than payment's per-attempt provider timeout (PAYMENT_PROVIDER_TIMEOUT,
# 1 s): below it an order only gets as slow as the provider, within the 1 s
# latency SLO, and nothing fires (docs/game-days.md).
PROVIDER_LATENCY_MS=${PROVIDER_LATENCY_MS:-2000}
PAYMENT_PORT=${PAYMENT_PORT:-8082}
API=http://127.0.0.1:$TOXIPROXY_PORT
# inventory-kill keeps each killed process's command and environment here,
# so off starts it again exactly as make dev did.
KILLED_DIR=$RUN_DIR/chaos

# toxi METHOD PATH [BODY]: one call of Toxiproxy's API; prints the answer.
toxi() {
  local args=(-sS --fail-with-body --max-time 5 -X "$1" "$API$2")
  [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${args[@]}" || die "Toxiproxy answered $1 $2 with an error (is make dev up? log: $RUN_DIR/logs/toxiproxy.log)"
}

need_toxiproxy() {
  curl -sf --max-time 3 -o /dev/null "$API/version" ||
    die "no Toxiproxy on $API: start the stack with make dev"
}

# start: (re)starts Toxiproxy and creates the three proxies, all enabled and
# without toxics. make dev calls it before it starts the services.
start() {
  local bin
  bin=$(toxiproxy_bin) || exit 1
  stop_pid toxiproxy
  for port in "$TOXIPROXY_PORT" "$TOXI_PG_PORT" "$TOXI_REDIS_PORT" "$TOXI_SQS_PORT"; do
    port_open 127.0.0.1 "$port" && die "port $port is taken by another process: stop it, or set TOXIPROXY_PORT, TOXI_PG_PORT, TOXI_REDIS_PORT, TOXI_SQS_PORT"
  done
  : >"$RUN_DIR/logs/toxiproxy.log"
  start_bg toxiproxy "$bin" -host 127.0.0.1 -port "$TOXIPROXY_PORT"
  wait_port toxiproxy 127.0.0.1 "$TOXIPROXY_PORT" 15
  toxi POST /populate "[
    {\"name\":\"postgres\",\"listen\":\"127.0.0.1:$TOXI_PG_PORT\",\"upstream\":\"$PG_HOST:$PG_PORT\",\"enabled\":true},
    {\"name\":\"redis\",\"listen\":\"127.0.0.1:$TOXI_REDIS_PORT\",\"upstream\":\"127.0.0.1:$REDIS_PORT\",\"enabled\":true},
    {\"name\":\"sqs\",\"listen\":\"127.0.0.1:$TOXI_SQS_PORT\",\"upstream\":\"127.0.0.1:$SQS_PORT\",\"enabled\":true}]" >/dev/null
  rm -rf "$KILLED_DIR"
}

# admin_token: an orderflow-admin client-credentials token from make dev's
# Hydra. The secret goes to curl on stdin, not on its command line.
admin_token() {
  local secret token
  secret=$(sed -n 's/^ADMIN_CLIENT_SECRET=//p' "$RUN_DIR/secrets.env" 2>/dev/null)
  [ -n "$secret" ] || die "no ADMIN_CLIENT_SECRET in $RUN_DIR/secrets.env: start the stack with make dev"
  token=$(printf 'user = "orderflow-admin:%s"\n' "$secret" |
    curl -sf -K - --max-time 10 -d grant_type=client_credentials -d scope=orderflow.admin -d audience=orderflow \
      "http://127.0.0.1:$HYDRA_PUBLIC_PORT/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || die "could not get an admin token from Hydra on :$HYDRA_PUBLIC_PORT (client orderflow-admin)"
  echo "$token"
}

# provider [BODY]: GET (no body) or PUT payment's /admin/provider; prints
# the provider's settings as it answered them.
provider() {
  local token args=(-sS --max-time 10 -o "$RUN_DIR/chaos-provider.json" -w '%{http_code}')
  token=$(admin_token) || exit 1
  [ $# = 0 ] || args+=(-X PUT -H 'Content-Type: application/json' --data-binary "$1")
  local code
  code=$(printf 'header = "Authorization: Bearer %s"\n' "$token" |
    curl -K - "${args[@]}" "http://127.0.0.1:$PAYMENT_PORT/admin/provider") || code=000
  [ "$code" = 200 ] || die "payment's /admin/provider answered $code: $(cat "$RUN_DIR/chaos-provider.json" 2>/dev/null)"
  cat "$RUN_DIR/chaos-provider.json"
  [ -z "$(tail -c1 "$RUN_DIR/chaos-provider.json")" ] || echo
}

# running PID: true while the process lives; a killed one not yet reaped
# (a zombie) counts as gone.
running() {
  kill -0 "$1" 2>/dev/null && [ "$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# kill_inventory: SIGKILLs every inventory process make dev started (one, or
# REPLICAS of them), keeping its command line and environment first.
kill_inventory() {
  local f name pid i killed=0
  mkdir -p "$KILLED_DIR" && chmod 700 "$KILLED_DIR"
  for f in "$RUN_DIR"/pids/inventory.pid "$RUN_DIR"/pids/inventory-[0-9].pid; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .pid) pid=$(cat "$f")
    running "$pid" || continue
    cp "/proc/$pid/environ" "$KILLED_DIR/$name.environ"
    cp "/proc/$pid/cmdline" "$KILLED_DIR/$name.cmdline"
    kill -KILL "$pid"
    for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
    echo "SIGKILLed $name (pid $pid)"
    killed=$((killed + 1))
  done
  [ $killed -gt 0 ] || die "no running inventory process in $RUN_DIR/pids: start the stack with make dev"
}

# restart_inventory: starts every killed inventory process again, with the
# command and environment make dev gave it, and waits for its /readyz.
restart_inventory() {
  local f name pid addr
  for f in "$KILLED_DIR"/*.cmdline; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .cmdline)
    pid=$(cat "$RUN_DIR/pids/$name.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && running "$pid"; then
      echo "$name runs again already (pid $pid)"
    else
      local -a argv envv
      mapfile -d '' -t argv <"$f"
      mapfile -d '' -t envv <"$KILLED_DIR/$name.environ"
      echo "--- restarted by make chaos FAULT=off" >>"$RUN_DIR/logs/$name.log"
      start_bg "$name" env -i "${envv[@]}" "${argv[@]}"
      addr=$(tr '\0' '\n' <"$KILLED_DIR/$name.environ" | sed -n 's/^INVENTORY_ADDR=//p')
      wait_http "$name" "http://$addr/readyz" 90
      echo "restarted $name (pid $(cat "$RUN_DIR/pids/$name.pid")), ready on $addr"
    fi
    rm -f "$f" "$KILLED_DIR/$name.environ"
  done
}

# watch FAULT: what to look at while FAULT is on. The alert names are those
# of deploy/prometheus/rules/ (scripts/chaos_test.go checks them).
watch() {
  case $1 in
  db-latency) cat <<'EOF'
watch:   dashboard "P99 latency by service and route" (POST /v1/orders: 10-15 s), "DB query latency (P95)" (1-4 s),
         "Circuit breaker state" (order -> inventory opens: reservations outlast ORDER_CALL_TIMEOUT),
         "Error rate (5xx share)"; most orders answer 503
alerts:  DatabaseSlow, OrderErrorBudgetFastBurn, OrderLatencyBudgetFastBurn, CircuitBreakerOpen
EOF
    ;;
  db-down) cat <<'EOF'
watch:   dashboard "Error rate (5xx share)", "Orders by final status" (all failed), "Throughput"; orders answer
         503 within milliseconds; product reads come from Redis until their 30 s TTL ends, then 503
alerts:  OrderErrorBudgetFastBurn
EOF
    ;;
  redis-down) cat <<'EOF'
watch:   dashboard "Cache hit ratio" (0: every product read goes to PostgreSQL), "Rate-limit rejections" (the
         fail-open line, order and inventory); orders and product reads keep succeeding
alerts:  RateLimitFailOpen, CacheHitRatioCollapse
EOF
    ;;
  sqs-down) cat <<'EOF'
watch:   dashboard "Outbox lag" (grows a second per second, unsent events pile up), "Messages processed" (0),
         "Queue depth" (no data: notification cannot read it); orders still confirm; after off the backlog
         drains within ~30 s
alerts:  OutboxLag
EOF
    ;;
  provider-outage) cat <<'EOF'
watch:   dashboard "Circuit breaker state" (payment -> provider and order -> payment open within 15 s),
         "Error rate (5xx share)", "Orders by final status" (all failed); orders answer 503 + Retry-After fast
alerts:  CircuitBreakerOpen, OrderErrorBudgetFastBurn
EOF
    ;;
  provider-latency) cat <<'EOF'
watch:   dashboard "Circuit breaker state" (payment -> provider, then order -> payment), "Error rate (5xx
         share)", "P99 latency by service and route" (POST /v1/orders: ~1 in 10 waits out payment's 1 s
         attempt); payment answers 504 provider_timeout, then 503 breaker_open; orders answer 503
alerts:  CircuitBreakerOpen, OrderErrorBudgetFastBurn, OrderLatencyBudgetFastBurn
EOF
    ;;
  inventory-kill) cat <<'EOF'
watch:   dashboard "Circuit breaker state" (order -> inventory), "Error rate (5xx share)", "Throughput"
         (inventory's lines stop: nothing serves its /metrics); orders answer 503 fast; nothing restarts
         inventory until make chaos FAULT=off
alerts:  ServiceDown, CircuitBreakerOpen, OrderErrorBudgetFastBurn
EOF
    ;;
  off) cat <<'EOF'
watch:   orders confirm again within ~30 s, breakers close, the outbox and the queues drain; the cause
         alerts resolve within 1-2 minutes, OrderErrorBudgetFastBurn only after up to 30 minutes (the
         30 m short window of its 6x pair)
alerts:  none: off switches no alert on
EOF
    ;;
  *) die "unknown fault '$1': one of ${FAULTS// /, }" ;;
  esac
}

# status: the proxies with their toxics, and the provider's settings.
status() {
  need_toxiproxy
  echo "Toxiproxy $API:"
  # One line a proxy; GET /proxies is one JSON object, name -> proxy.
  toxi GET /proxies | grep -Eo '"name":"[^"]*","listen":"[^"]*","upstream":"[^"]*","enabled":[a-z]*,[^[]*"toxics":\[[^]]*\]' |
    sed -E 's/"name":"([^"]*)","listen":"([^"]*)","upstream":"([^"]*)","enabled":([a-z]*),[^[]*"toxics":/  \1 \2 -> \3 enabled=\4 toxics=/'
  printf 'provider (GET /admin/provider): '
  provider
  local f
  for f in "$KILLED_DIR"/*.cmdline; do
    [ -f "$f" ] && echo "killed by make chaos, not restarted yet: $(basename "$f" .cmdline)"
  done
  echo "faults: ${FAULTS// /, } (make chaos FAULT=…)"
}

fault() {
  [[ " $FAULTS " == *" $1 "* ]] || die "unknown fault '$1': one of ${FAULTS// /, }"
  need_toxiproxy
  case $1 in
  db-latency)
    local toxic="{\"name\":\"db-latency\",\"type\":\"latency\",\"stream\":\"downstream\",\"toxicity\":1,\"attributes\":{\"latency\":$DB_LATENCY_MS,\"jitter\":0}}"
    if toxi GET /proxies/postgres/toxics | grep -q '"name":"db-latency"'; then
      toxi POST /proxies/postgres/toxics/db-latency "$toxic" >/dev/null
    else
      toxi POST /proxies/postgres/toxics "$toxic" >/dev/null
    fi
    echo "did:     a $DB_LATENCY_MS ms latency toxic on every answer from PostgreSQL to order, inventory, payment and notification (proxy postgres, :$TOXI_PG_PORT)"
    ;;
  db-down | redis-down | sqs-down)
    local name=${1%-down}
    [ "$name" = db ] && name=postgres
    toxi POST "/proxies/$name" '{"enabled":false}' >/dev/null
    echo "did:     disabled the Toxiproxy proxy $name: its connections are closed and new ones refused"
    ;;
  provider-outage)
    provider '{"latency_ms":0,"error_rate":0,"outage":true}' | sed 's/^/provider now: /'
    echo "did:     the simulated payment provider answers every call with 503 (PUT /admin/provider outage=true)"
    ;;
  provider-latency)
    provider "{\"latency_ms\":$PROVIDER_LATENCY_MS,\"error_rate\":0,\"outage\":false}" | sed 's/^/provider now: /'
    echo "did:     the simulated payment provider waits $PROVIDER_LATENCY_MS ms before each answer (payment gives each attempt 1 s)"
    ;;
  inventory-kill)
    kill_inventory
    echo "did:     SIGKILLed inventory; nothing restarts it until make chaos FAULT=off (or make dev)"
    ;;
  off)
    toxi POST /reset >/dev/null
    echo "did:     removed every toxic and enabled every proxy (postgres, redis, sqs)"
    restart_inventory
    provider '{"latency_ms":0,"error_rate":0,"outage":false}' | sed 's/^/provider now: /'
    echo "did:     healed the provider"
    ;;
  *) die "unknown fault '$1': one of ${FAULTS// /, }" ;;
  esac
  watch "$1"
}

case ${1:-status} in
start) start ;;
status) status ;;
list) tr ' ' '\n' <<<"$FAULTS" ;;
watch) watch "${2:?watch needs a fault name}" ;;
*) fault "$1" ;;
esac
