#!/usr/bin/env bash
# make token [EMAIL=… PASSWORD=…]: signs a customer in through Hydra and the
# identity app (authorization code + PKCE, tools/token) and prints the
# access token alone on the last line. Without EMAIL and PASSWORD: the demo
# customer that make dev created.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
if [ -z "${EMAIL:-}" ] && [ -z "${PASSWORD:-}" ]; then
  [ -f "$RUN_DIR/secrets.env" ] || die "no demo customer yet: run make dev first (or pass EMAIL=… PASSWORD=…)"
  EMAIL=demo@orderflow.local
  PASSWORD=$(source "$RUN_DIR/secrets.env" && echo "$DEMO_PASSWORD")
fi
[ -n "${EMAIL:-}" ] && [ -n "${PASSWORD:-}" ] || die "give both EMAIL=… and PASSWORD=…"
bin="$ROOT/bin/token"
if [ ! -x "$bin" ] || [ -n "$(find "$ROOT/tools/token" -newer "$bin" -name '*.go' | head -1)" ]; then
  go build -o "$bin" ./tools/token
fi
EMAIL=$EMAIL PASSWORD=$PASSWORD exec "$bin" -issuer "http://127.0.0.1:$HYDRA_PUBLIC_PORT/"
