#!/usr/bin/env bash
# make dev: the whole system natively, in the background. Starts the
# components, creates and migrates the databases, seeds the demo catalogue,
# starts Ory Hydra (the OpenID Connect provider) with Orderflow's clients,
# builds and starts the services, the identity app and the payment provider,
# puts the HAProxy gateway (TLS 1.3) in front, creates the demo customer,
# waits for every /readyz and prints where to look. Running it twice is
# harmless.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ORDER_PORT=${ORDER_PORT:-8080} INVENTORY_PORT=${INVENTORY_PORT:-8081}
PAYMENT_PORT=${PAYMENT_PORT:-8082} NOTIFICATION_PORT=${NOTIFICATION_PORT:-8083} PROVIDER_PORT=${PROVIDER_PORT:-8090}
export IDENTITY_PORT=${IDENTITY_PORT:-8084}
GATEWAY_PORT=${GATEWAY_PORT:-8443}

# The secrets of this machine's stack, made once and kept in
# .dev/secrets.env (git-ignored); a variable already set wins. Nothing
# outside make dev ships or accepts a default secret.
secrets="$RUN_DIR/secrets.env"
touch "$secrets" && chmod 600 "$secrets"
for name in HYDRA_SECRETS_SYSTEM ADMIN_CLIENT_SECRET ORDER_CLIENT_SECRET IDENTITY_CSRF_KEY PROVIDER_API_KEY DEMO_PASSWORD; do
  if [ -n "${!name:-}" ]; then
    sed -i "/^$name=/d" "$secrets"; printf '%s=%q\n' "$name" "${!name}" >>"$secrets"
  elif ! grep -q "^$name=" "$secrets"; then
    printf '%s=%q\n' "$name" "$(openssl rand -hex 24)" >>"$secrets"
    new_secrets="${new_secrets:-} $name"
  fi
done
# Read, not exported: each secret is passed only to the process that needs it.
source "$secrets"

"$ROOT/scripts/deps.sh" --mail

say "creating databases"
for db in orders inventory payments notifications identity hydra provider; do create_db "$db"; done

say "building the services"
mkdir -p bin
go build -o bin/ ./services/order ./services/inventory ./services/payment ./services/payment/provider \
  ./services/notification ./services/identity ./tools/token
HYDRA_SECRETS_SYSTEM=$HYDRA_SECRETS_SYSTEM ADMIN_CLIENT_SECRET=$ADMIN_CLIENT_SECRET ORDER_CLIENT_SECRET=$ORDER_CLIENT_SECRET \
  "$ROOT/scripts/hydra.sh" start

export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
# Toxiproxy between the four services and PostgreSQL, Redis and SQS, for
# make chaos (scripts/chaos.sh). Creating the databases, Hydra, identity and
# the provider go direct, so tokens keep working in every fault.
"$ROOT/scripts/chaos.sh" start
CHAOS_PG_URL=${PG_URL/@$PG_HOST:$PG_PORT/@127.0.0.1:$TOXI_PG_PORT} CHAOS_REDIS_URL=redis://127.0.0.1:$TOXI_REDIS_PORT/0
export AWS_ENDPOINT_URL_SQS=${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$TOXI_SQS_PORT}

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
# Every service checks tokens against Hydra's keys; the gateway is the
# proxy whose X-Forwarded-For they believe. It connects from 127.0.0.2
# (GATEWAY_SOURCE): every other local process comes from 127.0.0.1, so it
# cannot pick the address it is rate limited by.
GATEWAY_SOURCE=${GATEWAY_SOURCE:-127.0.0.2}
export AUTH_ISSUER=http://127.0.0.1:$HYDRA_PUBLIC_PORT/ TRUSTED_PROXIES=${TRUSTED_PROXIES:-$GATEWAY_SOURCE}
start provider $PROVIDER_PORT PROVIDER_ADDR=127.0.0.1:$PROVIDER_PORT PROVIDER_API_KEY="$PROVIDER_API_KEY" \
  PROVIDER_DATABASE_URL="$PG_URL/provider?sslmode=disable"
start payment $PAYMENT_PORT PAYMENT_ADDR=127.0.0.1:$PAYMENT_PORT \
  PAYMENT_DATABASE_URL="$CHAOS_PG_URL/payments?sslmode=disable" PAYMENT_PROVIDER_URL=http://127.0.0.1:$PROVIDER_PORT \
  PAYMENT_PROVIDER_API_KEY="$PROVIDER_API_KEY"
start notification $NOTIFICATION_PORT NOTIFICATION_ADDR=127.0.0.1:$NOTIFICATION_PORT \
  NOTIFICATION_DATABASE_URL="$CHAOS_PG_URL/notifications?sslmode=disable" NOTIFICATION_SMTP_ADDR=127.0.0.1:$SMTP_PORT
start identity $IDENTITY_PORT IDENTITY_ADDR=127.0.0.1:$IDENTITY_PORT \
  IDENTITY_DATABASE_URL="$PG_URL/identity?sslmode=disable" IDENTITY_HYDRA_ADMIN_URL=http://127.0.0.1:$HYDRA_ADMIN_PORT \
  IDENTITY_CSRF_KEY="$IDENTITY_CSRF_KEY"

# start_inventory NAME PORT / start_order NAME PORT: one replica each.
start_inventory() {
  start "$1" "$2" INVENTORY_ADDR=127.0.0.1:$2 INVENTORY_DATABASE_URL="$CHAOS_PG_URL/inventory?sslmode=disable" INVENTORY_REDIS_URL=$CHAOS_REDIS_URL \
    INVENTORY_SEED_PRODUCTS=${INVENTORY_SEED_PRODUCTS:-10000} SHUTDOWN_DRAIN=$drain
}
start_order() {
  start "$1" "$2" ORDER_ADDR=127.0.0.1:$2 ORDER_DATABASE_URL="$CHAOS_PG_URL/orders?sslmode=disable" ORDER_REDIS_URL=$CHAOS_REDIS_URL \
    ORDER_INVENTORY_URL=http://127.0.0.1:$INVENTORY_PORT ORDER_PAYMENT_URL=http://127.0.0.1:$PAYMENT_PORT \
    ORDER_CLIENT_SECRET="$ORDER_CLIENT_SECRET" SHUTDOWN_DRAIN=$drain
}

services="provider:$PROVIDER_PORT payment:$PAYMENT_PORT notification:$NOTIFICATION_PORT identity:$IDENTITY_PORT"
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

# The gateway: the only public entry, TLS 1.3 with a local CA.
need_cmd haproxy haproxy
"$ROOT/scripts/tls.sh" "$RUN_DIR/tls" >/dev/null
stop_pid gateway
port_open 127.0.0.1 "$GATEWAY_PORT" && die "port $GATEWAY_PORT is taken by another process (set GATEWAY_PORT)"
gw_env=(GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT GATEWAY_CERT="$RUN_DIR/tls/server.pem" GATEWAY_SOURCE=$GATEWAY_SOURCE
  ORDER_UPSTREAM=127.0.0.1:$ORDER_PORT INVENTORY_UPSTREAM=127.0.0.1:$INVENTORY_PORT
  NOTIFICATION_UPSTREAM=127.0.0.1:$NOTIFICATION_PORT IDENTITY_UPSTREAM=127.0.0.1:$IDENTITY_PORT
  HYDRA_UPSTREAM=127.0.0.1:$HYDRA_PUBLIC_PORT)
env "${gw_env[@]}" haproxy -c -q -f deploy/gateway/haproxy.cfg || die "invalid gateway config deploy/gateway/haproxy.cfg"
: >"$RUN_DIR/logs/gateway.log"
start_bg gateway env "${gw_env[@]}" haproxy -db -f deploy/gateway/haproxy.cfg
wait_port gateway 127.0.0.1 "$GATEWAY_PORT" 15

# The demo customer: 201 the first time, 409 email_taken after. When it
# exists with another password (another checkout on this machine made it),
# it is made again with this one.
[[ $DEMO_PASSWORD =~ ^[[:print:]]{10,}$ && $DEMO_PASSWORD != *[\"\\]* ]] ||
  die "DEMO_PASSWORD must be 10+ printable characters without \" or \\"
# The body on stdin: the password never appears in a command line.
demo_customer() {
  curl -s -o "$RUN_DIR/logs/demo-customer.json" -w '%{http_code}' -X POST "http://127.0.0.1:$IDENTITY_PORT/v1/customers" \
    -H 'Content-Type: application/json' --data-binary @- \
    <<<"{\"email\":\"demo@orderflow.local\",\"password\":\"$DEMO_PASSWORD\",\"name\":\"Demo Customer\"}"
}
code=$(demo_customer)
if [ "$code" = 409 ] && ! EMAIL=demo@orderflow.local PASSWORD=$DEMO_PASSWORD bin/token >/dev/null 2>&1; then
  psql "$PG_URL/identity?sslmode=disable" -qc "DELETE FROM customers WHERE email = 'demo@orderflow.local'"
  code=$(demo_customer)
fi
[ "$code" = 201 ] || [ "$code" = 409 ] || die "creating the demo customer answered $code: $(cat "$RUN_DIR/logs/demo-customer.json")"

cat <<MSG

Orderflow is up.
  gateway       https://127.0.0.1:$GATEWAY_PORT   (the public API, TLS 1.3; CA: .dev/tls/ca.pem)
  order         http://127.0.0.1:$ORDER_PORT
  inventory     http://127.0.0.1:$INVENTORY_PORT   (10,000 products SKU-00001 … SKU-10000)
  payment       http://127.0.0.1:$PAYMENT_PORT   (provider on :$PROVIDER_PORT)
  notification  http://127.0.0.1:$NOTIFICATION_PORT
  identity      http://127.0.0.1:$IDENTITY_PORT   (sign-up, login and consent)
  OIDC issuer   http://127.0.0.1:$HYDRA_PUBLIC_PORT/   (Ory Hydra; admin API :$HYDRA_ADMIN_PORT)
  e-mails       http://127.0.0.1:$MAILDEV_WEB_PORT   (maildev; SMTP on :$SMTP_PORT)
  SQS           http://127.0.0.1:$SQS_PORT   (fauxqs; the services use $AWS_ENDPOINT_URL_SQS)
  faults        Toxiproxy http://127.0.0.1:$TOXIPROXY_PORT (Postgres :$TOXI_PG_PORT, Redis :$TOXI_REDIS_PORT, SQS :$TOXI_SQS_PORT)
                make chaos FAULT=db-latency|db-down|redis-down|sqs-down|provider-outage|provider-latency|inventory-kill|off
  metrics       http://127.0.0.1:$ORDER_PORT/metrics (every service)$(port_open 127.0.0.1 9090 && echo "; Prometheus http://127.0.0.1:9090")
  traces        $(port_open 127.0.0.1 16686 && echo "Jaeger http://127.0.0.1:16686" || echo "start Jaeger with: make observe (then make dev again)")
  logs          .dev/logs/        secrets: .dev/secrets.env
  replicas      $REPLICAS order and $REPLICAS inventory$( [ "$REPLICAS" -gt 1 ] && echo " behind HAProxy (stats: http://127.0.0.1:8404)")

Demo customer: demo@orderflow.local, password $DEMO_PASSWORD
  its access token (15 min):   TOKEN=\$(make -s token | tail -n1)
Admin client: orderflow-admin, secret $ADMIN_CLIENT_SECRET (ADMIN_CLIENT_SECRET)
  an admin token:   curl -s -u orderflow-admin:$ADMIN_CLIENT_SECRET -d grant_type=client_credentials \\
                      -d scope=orderflow.admin -d audience=orderflow http://127.0.0.1:$HYDRA_PUBLIC_PORT/oauth2/token

Place an order through the gateway:
  TOKEN=\$(make -s token | tail -n1)
  curl -s --cacert .dev/tls/ca.pem -X POST https://127.0.0.1:$GATEWAY_PORT/v1/orders \\
    -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -H "Idempotency-Key: \$(date +%s%N)" \\
    -d '{"email":"a@example.com","items":[{"sku":"SKU-00001","quantity":2}],"payment_method":"pm_card_ok"}'

Stop everything with: make down
MSG
