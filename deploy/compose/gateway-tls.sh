#!/bin/sh
# docker-compose.yml's gateway-tls one-shot (alpine): the local CA and the
# gateway's certificate, made by scripts/tls.sh exactly as make dev makes
# them, into the gateway-tls volume. tls.sh keeps files that are still
# valid, so the CA a browser or curl already trusts survives restarts.
# Copy the CA out with:
#   docker compose run --rm --no-deps -T gateway-tls cat /tls/ca.pem > orderflow-ca.pem
set -eu
apk add --no-cache bash openssl >/dev/null
bash /opt/orderflow/scripts/tls.sh /tls
# The haproxy image runs as user haproxy (uid 99); the key stays mode 600,
# readable by the gateway alone.
chown 99:99 /tls/server.pem
