#!/usr/bin/env bash
# Ory Hydra v2.3.0, the OpenID Connect provider, natively.
#   scripts/hydra.sh build   build the pinned binary into bin/ (cached; 1-4 min the first time)
#   scripts/hydra.sh start   create and migrate the hydra database, start Hydra on
#                            127.0.0.1:4444 (public, the issuer) and :4445 (admin),
#                            register Orderflow's OAuth 2.0 clients
# The secrets come from the environment (make dev keeps them in .dev/secrets.env).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

case "${1:-}" in
build)
  hydra_bin >/dev/null
  ;;
start)
  bin=$(hydra_bin)
  : "${HYDRA_SECRETS_SYSTEM:?set HYDRA_SECRETS_SYSTEM (32+ random characters)}"
  : "${ADMIN_CLIENT_SECRET:?set ADMIN_CLIENT_SECRET}" "${ORDER_CLIENT_SECRET:?set ORDER_CLIENT_SECRET}"
  create_db hydra
  stop_pid hydra
  port_open 127.0.0.1 "$HYDRA_PUBLIC_PORT" && die "port $HYDRA_PUBLIC_PORT is taken by another process (set HYDRA_PUBLIC_PORT)"
  dsn="$PG_URL/hydra?sslmode=disable"
  serve() {
    DSN="$dsn" "$bin" migrate sql up -e --yes >>"$RUN_DIR/logs/hydra.log" 2>&1 ||
      die "hydra migrate failed (log: $RUN_DIR/logs/hydra.log)"
    say "starting Ory Hydra (issuer http://127.0.0.1:$HYDRA_PUBLIC_PORT/, admin :$HYDRA_ADMIN_PORT)"
    # --dev: plain HTTP on loopback (the gateway terminates TLS in front of it).
    DSN="$dsn" SECRETS_SYSTEM="$HYDRA_SECRETS_SYSTEM" \
      SERVE_PUBLIC_PORT=$HYDRA_PUBLIC_PORT SERVE_ADMIN_PORT=$HYDRA_ADMIN_PORT \
      URLS_SELF_ISSUER="http://127.0.0.1:$HYDRA_PUBLIC_PORT/" \
      URLS_LOGIN="http://127.0.0.1:${IDENTITY_PORT:-8084}/login" URLS_CONSENT="http://127.0.0.1:${IDENTITY_PORT:-8084}/consent" \
      start_bg hydra "$bin" serve all --dev -c "$ROOT/deploy/hydra/hydra.yml"
    wait_http hydra "http://127.0.0.1:$HYDRA_ADMIN_PORT/health/ready" 60
  }
  serve
  # Hydra encrypts its signing keys with HYDRA_SECRETS_SYSTEM. A database
  # written with another secret (another checkout on this machine, a
  # deleted .dev/secrets.env) cannot be read: on this dev server it holds
  # only Orderflow's clients and short-lived grants, so start it afresh.
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HYDRA_PUBLIC_PORT/.well-known/openid-configuration")
  if [ "$code" = 500 ]; then
    say "Hydra's database was made with another HYDRA_SECRETS_SYSTEM: starting it afresh"
    stop_pid hydra
    psql "$PG_URL/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS hydra WITH (FORCE)" -c "CREATE DATABASE hydra"
    serve
  fi
  HYDRA_ADMIN_URL="http://127.0.0.1:$HYDRA_ADMIN_PORT" HYDRA_WAIT_SECONDS=30 \
    ADMIN_CLIENT_SECRET="$ADMIN_CLIENT_SECRET" ORDER_CLIENT_SECRET="$ORDER_CLIENT_SECRET" \
    sh "$ROOT/deploy/hydra/register-clients.sh" >>"$RUN_DIR/logs/hydra.log" ||
    die "registering the OAuth clients failed (log: $RUN_DIR/logs/hydra.log)"
  ;;
*)
  die "usage: scripts/hydra.sh build|start"
  ;;
esac
