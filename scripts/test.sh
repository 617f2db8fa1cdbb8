#!/usr/bin/env bash
# make test: starts the components the tests talk to (PostgreSQL, Redis,
# fauxqs) when they are not running, installs HAProxy when it is missing
# (its config is checked with haproxy -c), and Prometheus and Alertmanager
# (promtool checks the alert rules and runs their unit tests, and lints each
# service's /metrics; amtool checks the Alertmanager configs), builds Ory
# Hydra once, then runs every test with the race detector. What it started,
# it stops again.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
had_fauxqs=0
port_open 127.0.0.1 $SQS_PORT && had_fauxqs=1
"$ROOT/scripts/deps.sh"
need_cmd haproxy haproxy
need_cmd shellcheck shellcheck # scripts/chaos_test.go lints scripts/chaos.sh
# Ory Hydra, the OpenID Connect provider the auth tests start (built once).
if [ -z "${HYDRA_BIN:-}" ]; then HYDRA_BIN=$(hydra_bin) || exit 1; fi
export HYDRA_BIN
status=0
# The alert rules (deploy/prometheus/rules): syntax, then the promtool unit
# tests that make each alert fire and keep it silent. A few seconds.
need_cmd promtool prometheus
need_cmd amtool prometheus-alertmanager
say "checking the alert rules and the Prometheus and Alertmanager configs"
rules=$(ls deploy/prometheus/rules/*.yml | grep -v '_test\.yml$')
promtool check rules $rules || status=$?
promtool check config deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-compose.yml || status=$?
(cd deploy/prometheus/rules && promtool test rules *_test.yml) || status=$?
amtool check-config deploy/alertmanager/alertmanager.yml deploy/alertmanager/alertmanager-compose.yml >/dev/null || status=$?
go test -race -count=1 -timeout 20m "$@" ./... || status=$?
[ $had_fauxqs = 1 ] || stop_pid fauxqs
exit $status
