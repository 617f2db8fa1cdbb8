#!/usr/bin/env bash
# make down: stops exactly what make dev (and make test) started, in reverse
# order: the services first, so they drain, then fauxqs and maildev.
# PostgreSQL and Redis are the machine's own servers and keep running.
source "$(dirname "$0")/lib.sh"
for name in order notification payment inventory provider fauxqs maildev; do
  if [ -f "$RUN_DIR/pids/$name.pid" ]; then
    say "stopping $name"
    stop_pid "$name"
  fi
done
exit 0
