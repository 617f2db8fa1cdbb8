#!/usr/bin/env bash
# make loadtest SCENARIO=<name>: run one k6 scenario of loadtest/k6/ against
# make dev's stack (or any other: ORDER_URL, INVENTORY_URL, PAYMENT_URL and
# ADMIN_TOKEN from the environment; defaults are make dev's ports). The
# scenario's own variables (DURATION, RATE, …) pass through too. The JSON
# summary lands in loadtest/results/<scenario>.json (git-ignored).
# Installs the pinned k6 into bin/ when it is missing.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

K6_VERSION=v1.8.1
SCENARIO=${SCENARIO:-${1:-smoke}}
script=loadtest/k6/$SCENARIO.js
[ -f "$script" ] && [ "$SCENARIO" != lib ] && [ "$SCENARIO" != bench ] ||
  die "unknown scenario '$SCENARIO': one of $(ls loadtest/k6 | sed -n 's/\.js$//p' | grep -vx 'lib\|bench' | tr '\n' ' ')"

# ensure_k6: bin/k6 at the pinned version, built from the Go module proxy.
ensure_k6() {
  if [ -x bin/k6 ] && bin/k6 version 2>/dev/null | grep -q "k6 $K6_VERSION "; then
    return 0
  fi
  say "installing k6 $K6_VERSION into bin/ (go install, about a minute)"
  mkdir -p bin
  GOBIN="$ROOT/bin" go install "go.k6.io/k6@$K6_VERSION"
}
ensure_k6

export ORDER_URL=${ORDER_URL:-http://127.0.0.1:${ORDER_PORT:-8080}}
export INVENTORY_URL=${INVENTORY_URL:-http://127.0.0.1:${INVENTORY_PORT:-8081}}
export PAYMENT_URL=${PAYMENT_URL:-http://127.0.0.1:${PAYMENT_PORT:-8082}}
export ADMIN_TOKEN=${ADMIN_TOKEN:-dev-admin-token}
export RESULTS_DIR=${RESULTS_DIR:-$ROOT/loadtest/results}
mkdir -p "$RESULTS_DIR"

for u in "$ORDER_URL" "$INVENTORY_URL"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$u/readyz" || true)" = 200 ] ||
    die "$u/readyz does not answer 200: start the stack with make dev (or set ORDER_URL/INVENTORY_URL)"
done

say "k6 $SCENARIO against $ORDER_URL (order) and $INVENTORY_URL (inventory)"
exec bin/k6 run --no-color "$script"
