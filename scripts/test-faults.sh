#!/usr/bin/env bash
# make test-faults: the whole fault suite (test/faults, build tag `faults`),
# in two phases, each on a fresh stack:
#   1. TestFaults, the invariant suite: thirteen faults under a steady order
#      load, each held a few seconds, every invariant (money conservation
#      included) checked against the databases after each. Under 6 minutes.
#   2. TestFaultAlerts, the alert proof: the same faults with Debian's
#      Prometheus and Alertmanager beside the stack (the suite starts its
#      own, on free ports, scraping and evaluating the product's rules every
#      second, mailing to an SMTP server of the suite, and stops them at the
#      end). Each fault is held until its alert fires, which must happen
#      within the alert's for: plus two scrape intervals (of the fault's lead
#      time), reach Alertmanager and its e-mail, and resolve after the heal;
#      no unrelated cause alert may fire. About 16 minutes: the rules' for:
#      are 1-2 minutes, and are the product's.
# Starts the components it needs (PostgreSQL, Redis, fauxqs) when they are not
# running, installs Prometheus and Alertmanager when they are missing, builds
# Ory Hydra once (the suite starts its own, for the tokens every call
# carries); the suite builds the five binaries and Toxiproxy's server (the
# version go.mod pins). It fails on any broken invariant or alert.
# The tables are also written to $FAULTS_TABLE and $FAULTS_ALERT_TABLE
# (default .dev/faults-table.md and .dev/faults-alert-table.md).
# Nothing here restarts the machine's PostgreSQL, Redis or fauxqs: the suite
# disables Toxiproxy proxies in front of them or adds toxics.
# Extra arguments go to go test: -run '^TestFaults$' runs phase 1 alone.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
had_fauxqs=0
port_open 127.0.0.1 $SQS_PORT && had_fauxqs=1
"$ROOT/scripts/deps.sh"
if [ -z "${HYDRA_BIN:-}" ]; then HYDRA_BIN=$(hydra_bin) || exit 1; fi
export HYDRA_BIN
need_cmd prometheus prometheus
need_cmd prometheus-alertmanager prometheus-alertmanager
PROMETHEUS_BIN=$(command -v prometheus) ALERTMANAGER_BIN=$(command -v prometheus-alertmanager)
export PROMETHEUS_BIN ALERTMANAGER_BIN
export FAULTS_TABLE=${FAULTS_TABLE:-$RUN_DIR/faults-table.md}
export FAULTS_ALERT_TABLE=${FAULTS_ALERT_TABLE:-$RUN_DIR/faults-alert-table.md}
rm -f "$FAULTS_TABLE" "$FAULTS_ALERT_TABLE"
log="$RUN_DIR/logs/test-faults.log"
status=0
go test -tags faults -count=1 -timeout 45m -run '^(TestFaults|TestFaultAlerts)$' -v "$@" ./test/faults/ 2>&1 |
  grep -v '^        {' | tee "$log" || status=${PIPESTATUS[0]}
[ $had_fauxqs = 1 ] || stop_pid fauxqs
[ -f "$FAULTS_TABLE" ] && { say "phase 1, invariants: fault table ($FAULTS_TABLE)"; cat "$FAULTS_TABLE"; }
[ -f "$FAULTS_ALERT_TABLE" ] && { say "phase 2, alerts: fault table ($FAULTS_ALERT_TABLE)"; cat "$FAULTS_ALERT_TABLE"; }
say "phase timings"
grep -E '^--- (PASS|FAIL): TestFault(s|Alerts) ' "$log" || true
exit $status
