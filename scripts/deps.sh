#!/usr/bin/env bash
# Starts the real components Orderflow needs on this machine, each only when
# it is not already answering: PostgreSQL, Redis, fauxqs (SQS) and, with
# --mail, maildev (SMTP). Installs the pinned Node tools first.
source "$(dirname "$0")/lib.sh"
with_mail=0
[ "${1:-}" = "--mail" ] && with_mail=1

if ! port_open $PG_HOST $PG_PORT; then
  say "starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not installed (apt-get install postgresql)"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  wait_port postgres $PG_HOST $PG_PORT 30
fi

if ! port_open 127.0.0.1 $REDIS_PORT; then
  say "starting Redis"
  command -v redis-server >/dev/null || die "Redis is not installed (apt-get install redis-server)"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDIS_PORT --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port redis 127.0.0.1 $REDIS_PORT 15
fi

if [ ! -x "$ROOT/tools/node_modules/.bin/fauxqs" ] || [ "$ROOT/tools/package-lock.json" -nt "$ROOT/tools/node_modules/.package-lock.json" ]; then
  say "installing the pinned Node tools (fauxqs, maildev)"
  command -v npm >/dev/null || die "Node.js and npm are needed (apt-get install nodejs npm)"
  (cd "$ROOT/tools" && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! port_open 127.0.0.1 $SQS_PORT; then
  say "starting fauxqs (SQS) on 127.0.0.1:$SQS_PORT"
  FAUXQS_PORT=$SQS_PORT FAUXQS_LOGGER=false start_bg fauxqs node "$ROOT/tools/node_modules/fauxqs/dist/cli.js"
  wait_port fauxqs 127.0.0.1 $SQS_PORT 30
fi

if [ $with_mail = 1 ] && ! port_open 127.0.0.1 $SMTP_PORT; then
  say "starting maildev (SMTP 127.0.0.1:$SMTP_PORT, web 127.0.0.1:$MAILDEV_WEB_PORT)"
  start_bg maildev node "$ROOT/tools/node_modules/maildev/dist/bin/maildev.js" \
    --ip 127.0.0.1 --smtp $SMTP_PORT --web-ip 127.0.0.1 --web $MAILDEV_WEB_PORT
  wait_port maildev 127.0.0.1 $SMTP_PORT 30
fi
exit 0
