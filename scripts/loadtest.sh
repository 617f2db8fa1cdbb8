#!/usr/bin/env bash
# make loadtest SCENARIO=<name>: run one k6 scenario of loadtest/k6/ against
# make dev's stack (or any other: ORDER_URL, INVENTORY_URL, PAYMENT_URL from
# the environment; defaults are make dev's ports). The scenario's own
# variables (DURATION, RATE, …) pass through too. The JSON summary lands in
# loadtest/results/<scenario>.json (git-ignored).
# Installs the pinned k6 into bin/ when it is missing.
#
# Every call carries an access token from make dev's Hydra: ORDERFLOW_TOKEN,
# the demo customer's (tools/token signs in demo@orderflow.local with
# DEMO_PASSWORD from .dev/secrets.env), and for the breaker scenario's
# provider switch ORDERFLOW_ADMIN_TOKEN, a client-credentials token of
# orderflow-admin (ADMIN_CLIENT_SECRET). Either may be given instead
# (ORDERFLOW_TOKENS_FILE too: one customer token per line). Tokens live
# 15 minutes: a longer soak needs its own. One customer is one rate-limit
# allowance (make dev: ORDER_RATE_LIMIT 50/s, INVENTORY_RATE_LIMIT 100/s):
# stress and spike above it see 429s unless several customers' tokens are
# given in ORDERFLOW_TOKENS_FILE.
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
export RESULTS_DIR=${RESULTS_DIR:-$ROOT/loadtest/results}
mkdir -p "$RESULTS_DIR"

for u in "$ORDER_URL" "$INVENTORY_URL"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$u/readyz" || true)" = 200 ] ||
    die "$u/readyz does not answer 200: start the stack with make dev (or set ORDER_URL/INVENTORY_URL)"
done

# The tokens, from make dev's Hydra and the secrets make dev wrote. k6's
# open() resolves a relative path against the script's directory: pass it on
# absolute.
[ -z "${ORDERFLOW_TOKENS_FILE:-}" ] || ORDERFLOW_TOKENS_FILE=$(realpath -e "$ORDERFLOW_TOKENS_FILE") ||
  die "ORDERFLOW_TOKENS_FILE: no such file"
ISSUER=${OIDC_ISSUER:-http://127.0.0.1:$HYDRA_PUBLIC_PORT/}
need_admin=0 # only the breaker scenario makes admin calls
[ "$SCENARIO" = breaker ] && [ -z "${ORDERFLOW_ADMIN_TOKEN:-}" ] && need_admin=1
if [ -z "${ORDERFLOW_TOKEN:-}${ORDERFLOW_TOKENS_FILE:-}" ] || [ $need_admin = 1 ]; then
  [ -f "$RUN_DIR/secrets.env" ] ||
    die "no $RUN_DIR/secrets.env: start the stack with make dev (or set ORDERFLOW_TOKEN and ORDERFLOW_ADMIN_TOKEN)"
  # shellcheck source=/dev/null
  source "$RUN_DIR/secrets.env"
fi
if [ -z "${ORDERFLOW_TOKEN:-}${ORDERFLOW_TOKENS_FILE:-}" ]; then
  [ -n "${DEMO_PASSWORD:-}" ] || die "$RUN_DIR/secrets.env has no DEMO_PASSWORD: run make dev again"
  say "signing in the demo customer (demo@orderflow.local) at $ISSUER"
  # The password goes by environment, not on a command line others can read.
  ORDERFLOW_TOKEN=$(EMAIL=demo@orderflow.local PASSWORD=$DEMO_PASSWORD go run ./tools/token -issuer "$ISSUER" | tail -1) ||
    die "could not get the demo customer's token (is make dev's Hydra up on $ISSUER?)"
  export ORDERFLOW_TOKEN
fi
if [ $need_admin = 1 ]; then
  [ -n "${ADMIN_CLIENT_SECRET:-}" ] || die "$RUN_DIR/secrets.env has no ADMIN_CLIENT_SECRET: run make dev again"
  # HTTP Basic client authentication; curl reads the credentials from stdin
  # (-K -) so the secret is not in the process list.
  ORDERFLOW_ADMIN_TOKEN=$(printf 'user = "orderflow-admin:%s"\n' "$ADMIN_CLIENT_SECRET" |
    curl -sf -K - -d grant_type=client_credentials -d scope=orderflow.admin -d audience=orderflow \
      "${ISSUER%/}/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p') && [ -n "$ORDERFLOW_ADMIN_TOKEN" ] ||
    die "could not get an admin token from $ISSUER (client orderflow-admin)"
  export ORDERFLOW_ADMIN_TOKEN
fi

say "k6 $SCENARIO against $ORDER_URL (order) and $INVENTORY_URL (inventory)"
exec bin/k6 run --no-color "$script"
