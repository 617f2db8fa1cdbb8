#!/usr/bin/env bash
# make observe: the native observability stack next to `make dev`.
#   Prometheus  Debian's `prometheus` package (installed when missing), run as
#               our own background process with deploy/prometheus/prometheus.yml
#               and its rules (deploy/prometheus/rules: SLO and cause alerts),
#               data in .dev/prometheus, UI/API on 127.0.0.1:$PROMETHEUS_PORT (9090).
#   Alertmanager  Debian's `prometheus-alertmanager` (installed when missing)
#               with deploy/alertmanager/alertmanager.yml: every alert is
#               e-mailed to maildev on 127.0.0.1:1025 (`make deps` starts it;
#               the mails show on http://127.0.0.1:1080). Data in
#               .dev/alertmanager, UI/API on 127.0.0.1:$ALERTMANAGER_PORT (9093).
#   Jaeger      v1.76.0 built from the Go module cache into bin/jaeger (the
#               first build takes several minutes; `go install` refuses the
#               module because of its replace directives, so it is built inside
#               a copy of the module source), all-in-one with in-memory storage:
#               OTLP/HTTP on 127.0.0.1:4318, UI and query API on 127.0.0.1:16686.
# Usage: scripts/observability.sh [start|stop|status]   (default start)
# Then start the services with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-9093}
JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}
JAEGER_BIN=${JAEGER_BIN:-$ROOT/bin/jaeger}

build_jaeger() {
  [ -x "$JAEGER_BIN" ] && return 0
  say "building Jaeger $JAEGER_VERSION into $JAEGER_BIN (first time only; several minutes)"
  local dir src
  dir=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download of jaeger@$JAEGER_VERSION failed"
  src=$(mktemp -d)
  trap 'rm -rf "$src"; trap - RETURN' RETURN
  cp -r "$dir/." "$src" && chmod -R u+w "$src"
  mkdir -p "$(dirname "$JAEGER_BIN")"
  (cd "$src" && GOFLAGS=-mod=mod go build -o "$JAEGER_BIN" ./cmd/jaeger) >"$RUN_DIR/logs/jaeger-build.log" 2>&1 ||
    { tail -20 "$RUN_DIR/logs/jaeger-build.log" >&2; die "building Jaeger failed (log: $RUN_DIR/logs/jaeger-build.log)"; }
}

# reload NAME: an instance this script started re-reads its configuration
# (and Prometheus its rules) on SIGHUP.
reload() {
  local f="$RUN_DIR/pids/$1.pid"
  [ -f "$f" ] && kill -HUP "$(cat "$f")" 2>/dev/null && say "$1: already running; reloaded its configuration"
  return 0
}

start() {
  local smtp
  smtp=$(sed -n 's/^  smtp_smarthost: "\(.*\)"$/\1/p' "$ROOT/deploy/alertmanager/alertmanager.yml")
  need_cmd prometheus prometheus
  need_cmd prometheus-alertmanager prometheus-alertmanager
  # Debian's packages also install system services on the same ports; on a
  # machine that started them, `systemctl disable --now prometheus
  # prometheus-alertmanager` leaves the ports to these.
  if port_open 127.0.0.1 "$ALERTMANAGER_PORT"; then
    say "Alertmanager: 127.0.0.1:$ALERTMANAGER_PORT is already taken; assuming it is ours"
    reload alertmanager
  else
    say "starting Alertmanager on 127.0.0.1:$ALERTMANAGER_PORT (mail to $smtp)"
    mkdir -p "$RUN_DIR/alertmanager"
    : >"$RUN_DIR/logs/alertmanager.log"
    # --cluster.listen-address= : a single instance, no gossip port.
    start_bg alertmanager prometheus-alertmanager --config.file="$ROOT/deploy/alertmanager/alertmanager.yml" \
      --storage.path="$RUN_DIR/alertmanager" --cluster.listen-address= \
      --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" --web.external-url="http://127.0.0.1:$ALERTMANAGER_PORT"
  fi
  if port_open 127.0.0.1 "$PROMETHEUS_PORT"; then
    say "Prometheus: 127.0.0.1:$PROMETHEUS_PORT is already taken; assuming it is ours"
    reload prometheus
  else
    say "starting Prometheus on 127.0.0.1:$PROMETHEUS_PORT"
    mkdir -p "$RUN_DIR/prometheus"
    : >"$RUN_DIR/logs/prometheus.log"
    # 4 days: the slowest SLO alert reads a 3-day window.
    start_bg prometheus prometheus --config.file="$ROOT/deploy/prometheus/prometheus.yml" \
      --storage.tsdb.path="$RUN_DIR/prometheus" --storage.tsdb.retention.time=4d \
      --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.external-url="http://127.0.0.1:$PROMETHEUS_PORT"
  fi
  port_open "${smtp%:*}" "${smtp##*:}" ||
    say "note: nothing listens for SMTP on $smtp; start maildev with make deps to receive the alert mails"

  build_jaeger
  if port_open 127.0.0.1 16686; then
    say "Jaeger: 127.0.0.1:16686 is already taken; assuming it is ours"
  else
    say "starting Jaeger (OTLP/HTTP 127.0.0.1:4318, UI 127.0.0.1:16686)"
    : >"$RUN_DIR/logs/jaeger.log"
    # No --config: Jaeger v2 runs its built-in all-in-one configuration
    # (memory storage), every port on localhost.
    start_bg jaeger env JAEGER_LISTEN_HOST=127.0.0.1 "$JAEGER_BIN"
  fi
  wait_http prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" 60
  wait_http alertmanager "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready" 60
  wait_http jaeger "http://127.0.0.1:16686/api/services" 60
  cat <<MSG

Observability is up.
  Prometheus    http://127.0.0.1:$PROMETHEUS_PORT   (targets: /targets, alerts: /alerts)
  Alertmanager  http://127.0.0.1:$ALERTMANAGER_PORT   (mails alerts to maildev: http://127.0.0.1:$MAILDEV_WEB_PORT)
  Jaeger        http://127.0.0.1:16686   (OTLP/HTTP on 127.0.0.1:4318)
Start the services with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to send traces.
Render the dashboard with: scripts/render-dashboard.sh
Runbooks of the alerts: docs/operations.md, "Alerts and runbooks".
MSG
}

case ${1:-start} in
start) start ;;
stop)
  for name in jaeger prometheus alertmanager; do
    [ -f "$RUN_DIR/pids/$name.pid" ] && { say "stopping $name"; stop_pid "$name"; }
  done
  exit 0 ;;
status)
  for name in prometheus alertmanager jaeger; do
    if [ -f "$RUN_DIR/pids/$name.pid" ] && kill -0 "$(cat "$RUN_DIR/pids/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$RUN_DIR/pids/$name.pid"))"
    else
      echo "$name: stopped"
    fi
  done ;;
*) die "usage: $0 [start|stop|status]" ;;
esac
