#!/usr/bin/env bash
# make down: stops exactly what make dev (and make test) started, in reverse
# order: the services first, so they drain, then Toxiproxy, fauxqs and maildev.
# PostgreSQL and Redis are the machine's own servers and keep running.
source "$(dirname "$0")/lib.sh"
for name in gateway haproxy $(cd "$RUN_DIR/pids" 2>/dev/null && ls | sed -n "s/^\(order-[0-9]*\|inventory-[0-9]*\)\.pid$/\1/p") order notification payment inventory identity provider hydra toxiproxy fauxqs maildev jaeger prometheus; do
  if [ -f "$RUN_DIR/pids/$name.pid" ]; then
    say "stopping $name"
    stop_pid "$name"
  fi
done
exit 0
