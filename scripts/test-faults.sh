#!/usr/bin/env bash
# make test-faults: the whole fault suite (test/faults, build tag `faults`).
# Starts the components it needs (PostgreSQL, Redis, fauxqs) when they are not
# running, builds Ory Hydra once (the suite starts its own, for the tokens
# every call carries); the suite builds the five binaries and Toxiproxy's
# server (the version go.mod pins), runs the thirteen faults under a steady
# order load and prints the fault table; it fails on any broken invariant,
# money conservation included.
# The table is also written to $FAULTS_TABLE (default .dev/faults-table.md).
# Nothing here restarts the machine's PostgreSQL, Redis or fauxqs: the suite
# disables Toxiproxy proxies in front of them or adds toxics.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
had_fauxqs=0
port_open 127.0.0.1 $SQS_PORT && had_fauxqs=1
"$ROOT/scripts/deps.sh"
if [ -z "${HYDRA_BIN:-}" ]; then HYDRA_BIN=$(hydra_bin) || exit 1; fi
export HYDRA_BIN
export FAULTS_TABLE=${FAULTS_TABLE:-$RUN_DIR/faults-table.md}
status=0
go test -tags faults -count=1 -timeout 30m -run '^TestFaults$' -v "$@" ./test/faults/ 2>&1 |
  grep -v '^        {' || status=${PIPESTATUS[0]}
[ $had_fauxqs = 1 ] || stop_pid fauxqs
[ -f "$FAULTS_TABLE" ] && { say "fault table ($FAULTS_TABLE)"; cat "$FAULTS_TABLE"; }
exit $status
