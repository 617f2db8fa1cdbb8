#!/usr/bin/env bash
# make dev: the whole system natively, in the background. Starts the
# components, creates and migrates the four databases, seeds the demo
# catalogue, builds and starts the services and the payment provider, waits
# for every /readyz and prints where to look. Running it twice is harmless.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export ADMIN_TOKEN=${ADMIN_TOKEN:-dev-admin-token}
ORDER_PORT=${ORDER_PORT:-8080} INVENTORY_PORT=${INVENTORY_PORT:-8081}
PAYMENT_PORT=${PAYMENT_PORT:-8082} NOTIFICATION_PORT=${NOTIFICATION_PORT:-8083} PROVIDER_PORT=${PROVIDER_PORT:-8090}
PG_URL=${PG_URL:-postgres://postgres@$PG_HOST:$PG_PORT}

"$ROOT/scripts/deps.sh" --mail

say "creating databases"
for db in orders inventory payments notifications; do
  psql "$PG_URL/postgres?sslmode=disable" -v ON_ERROR_STOP=1 -qtAc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    psql "$PG_URL/postgres?sslmode=disable" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
done

say "building the services"
mkdir -p bin
go build -o bin/ ./services/order ./services/inventory ./services/payment ./services/payment/provider ./services/notification

export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_ENDPOINT_URL_SQS=${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}

# start NAME PORT [VAR=VALUE...]: (re)start one binary with its environment.
start() {
  local name=$1 port=$2; shift 2
  stop_pid "$name"
  port_open 127.0.0.1 "$port" && die "port $port is taken by another process: stop it, or set ${name^^}_PORT"
  : >"$RUN_DIR/logs/$name.log"
  start_bg "$name" env "$@" "bin/${name%-[0-9]}"  # order-2 runs bin/order
}

# OBSERVE=1 also starts Prometheus and Jaeger (make observe); traces go to
# whatever listens on the OTLP port.
[ "${OBSERVE:-0}" = 1 ] && "$ROOT/scripts/observability.sh" start
port_open 127.0.0.1 4318 && export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4318}

say "starting the services (logs in .dev/logs/)"
REPLICAS=${REPLICAS:-1}
[[ $REPLICAS =~ ^[1-9]$ ]] || die "REPLICAS must be 1..9"
# Behind HAProxy (checks every 1s, out after 2 failures) a replica keeps
# serving 3s after SIGTERM with /readyz failing, so a restart fails nothing.
drain=0s
if [ "$REPLICAS" -gt 1 ]; then drain=${SHUTDOWN_DRAIN:-3s}; fi
# Stop whatever an earlier run started, single or replicated.
for f in "$RUN_DIR"/pids/order-*.pid "$RUN_DIR"/pids/inventory-*.pid "$RUN_DIR"/pids/haproxy.pid; do
  [ -e "$f" ] && stop_pid "$(basename "$f" .pid)"
done
start provider $PROVIDER_PORT PROVIDER_ADDR=127.0.0.1:$PROVIDER_PORT
start payment $PAYMENT_PORT PAYMENT_ADDR=127.0.0.1:$PAYMENT_PORT \
  PAYMENT_DATABASE_URL="$PG_URL/payments?sslmode=disable" PAYMENT_PROVIDER_URL=http://127.0.0.1:$PROVIDER_PORT
start notification $NOTIFICATION_PORT NOTIFICATION_ADDR=127.0.0.1:$NOTIFICATION_PORT \
  NOTIFICATION_DATABASE_URL="$PG_URL/notifications?sslmode=disable" NOTIFICATION_SMTP_ADDR=127.0.0.1:$SMTP_PORT

# start_inventory NAME PORT / start_order NAME PORT: one replica each.
start_inventory() {
  start "$1" "$2" INVENTORY_ADDR=127.0.0.1:$2 INVENTORY_DATABASE_URL="$PG_URL/inventory?sslmode=disable" \
    INVENTORY_SEED_PRODUCTS=${INVENTORY_SEED_PRODUCTS:-10000} SHUTDOWN_DRAIN=$drain
}
start_order() {
  start "$1" "$2" ORDER_ADDR=127.0.0.1:$2 ORDER_DATABASE_URL="$PG_URL/orders?sslmode=disable" \
    ORDER_INVENTORY_URL=http://127.0.0.1:$INVENTORY_PORT ORDER_PAYMENT_URL=http://127.0.0.1:$PAYMENT_PORT \
    SHUTDOWN_DRAIN=$drain
}

services="provider:$PROVIDER_PORT payment:$PAYMENT_PORT notification:$NOTIFICATION_PORT"
if [ "$REPLICAS" = 1 ]; then
  start_inventory inventory $INVENTORY_PORT
  start_order order $ORDER_PORT
  services="$services inventory:$INVENTORY_PORT order:$ORDER_PORT"
else
  # N order and N inventory replicas on ports 18081.. and 18181.., behind
  # HAProxy on the usual ports (least connections, health checks on /readyz).
  need_cmd haproxy haproxy
  stop_pid inventory; stop_pid order
  cfg="$RUN_DIR/haproxy.cfg"
  cp deploy/haproxy/haproxy.cfg "$cfg"
  for i in $(seq 1 "$REPLICAS"); do
    start_inventory inventory-$i $((18180 + i))
    services="$services inventory-$i:$((18180 + i))"
    sed -i "s|# servers: inventory|server inventory-$i 127.0.0.1:$((18180 + i)) check\n    # servers: inventory|" "$cfg"
  done
  wait_http inventory-1 "http://127.0.0.1:18181/readyz" 90 # seeds and migrates once, first
  for i in $(seq 1 "$REPLICAS"); do
    start_order order-$i $((18080 + i))
    services="$services order-$i:$((18080 + i))"
    sed -i "s|# servers: order|server order-$i 127.0.0.1:$((18080 + i)) check\n    # servers: order|" "$cfg"
  done
  port_open 127.0.0.1 $ORDER_PORT && die "port $ORDER_PORT is taken by another process"
  ORDER_PORT=$ORDER_PORT INVENTORY_PORT=$INVENTORY_PORT haproxy -c -q -f "$cfg" || die "invalid HAProxy config $cfg"
  : >"$RUN_DIR/logs/haproxy.log"
  ORDER_PORT=$ORDER_PORT INVENTORY_PORT=$INVENTORY_PORT start_bg haproxy haproxy -db -f "$cfg"
  services="$services haproxy:$ORDER_PORT haproxy:$INVENTORY_PORT"
fi

for s in $services; do
  name=${s%%:*}
  wait_http "$name" "http://127.0.0.1:${s##*:}/readyz" 90
done

cat <<MSG

Orderflow is up.
  order         http://127.0.0.1:$ORDER_PORT
  inventory     http://127.0.0.1:$INVENTORY_PORT   (10,000 products SKU-00001 … SKU-10000)
  payment       http://127.0.0.1:$PAYMENT_PORT   (provider on :$PROVIDER_PORT)
  notification  http://127.0.0.1:$NOTIFICATION_PORT
  e-mails       http://127.0.0.1:$MAILDEV_WEB_PORT   (maildev; SMTP on :$SMTP_PORT)
  SQS           $AWS_ENDPOINT_URL_SQS   (fauxqs)
  metrics       http://127.0.0.1:$ORDER_PORT/metrics (every service)$(port_open 127.0.0.1 9090 && echo "; Prometheus http://127.0.0.1:9090")
  traces        $(port_open 127.0.0.1 16686 && echo "Jaeger http://127.0.0.1:16686" || echo "start Jaeger with: make observe (then make dev again)")
  logs          .dev/logs/        admin token: $ADMIN_TOKEN
  replicas      $REPLICAS order and $REPLICAS inventory$( [ "$REPLICAS" -gt 1 ] && echo " behind HAProxy (stats: http://127.0.0.1:8404)")

Place an order:
  curl -s -X POST http://127.0.0.1:$ORDER_PORT/v1/orders \\
    -H 'Content-Type: application/json' -H "Idempotency-Key: \$(date +%s%N)" \\
    -d '{"customer_id":"cus_1","email":"a@example.com","items":[{"sku":"SKU-00001","quantity":2}],"payment_method":"pm_card_ok"}'

Stop everything with: make down
MSG
