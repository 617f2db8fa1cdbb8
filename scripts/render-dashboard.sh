#!/usr/bin/env bash
# Renders the Grafana dashboard's queries against the native Prometheus
# (`make observe`; PROMETHEUS_URL, default http://127.0.0.1:9090) into
# docs/dashboard.html, one chart per panel, and fails when a panel has no
# data. Put some load on the system first (a few minutes of `make dev` with
# orders and product reads). Extra arguments go to the renderer, e.g.
# -range 30m -out /tmp/dashboard.html.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
PROMETHEUS_URL=${PROMETHEUS_URL:-http://127.0.0.1:${PROMETHEUS_PORT:-9090}}
curl -fsS --max-time 3 "$PROMETHEUS_URL/-/ready" >/dev/null ||
  die "Prometheus does not answer at $PROMETHEUS_URL: start it with scripts/observability.sh (make observe)"
exec go run ./loadtest/dashboard -prometheus "$PROMETHEUS_URL" "$@"
