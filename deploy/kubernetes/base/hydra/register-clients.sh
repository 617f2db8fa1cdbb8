#!/bin/sh
# Registers Orderflow's OAuth 2.0 clients (clients/*.json beside this
# script) at Ory Hydra's admin API, or updates a client that exists, so a
# changed secret or scope takes effect. One script for every place that
# registers them: scripts/hydra.sh (make dev), docker-compose.yml's
# hydra-clients one-shot and the register-clients init container of
# identity's pods on Kubernetes. POSIX sh, awk and curl only (the
# curlimages/curl image).
#
# A client file holding ${SECRET} is a confidential client: the secret
# comes from the variable named after the client id, orderflow-<name> ->
# <NAME>_CLIENT_SECRET (orderflow-admin: ADMIN_CLIENT_SECRET,
# orderflow-order: ORDER_CLIENT_SECRET). There are no defaults, and the
# placeholder the Kubernetes Secrets ship with (CHANGE_ME) is refused.
#
# Environment:
#   HYDRA_ADMIN_URL      Hydra's admin API, e.g. http://hydra:4445
#   <NAME>_CLIENT_SECRET one per confidential client, 16+ characters of
#                        A-Z a-z 0-9 . _ ~ + / = - (openssl rand -hex 32)
#   CLIENTS_DIR          the client files (default: clients/ beside this script)
#   HYDRA_WAIT_SECONDS   how long to wait for Hydra to be ready (default 120)
set -eu

die() {
  echo "register-clients: $*" >&2
  exit 1
}

admin=${HYDRA_ADMIN_URL:-}
[ -n "$admin" ] || die "HYDRA_ADMIN_URL is not set"
admin=${admin%/}
dir=${CLIENTS_DIR:-$(dirname "$0")/clients}
wait_seconds=${HYDRA_WAIT_SECONDS:-120}

# secret_of ID: the secret of client ID from its variable, refused when
# unset, the placeholder, short, or holding a character that would need
# escaping in JSON or in awk's replacement.
secret_of() {
  name=$(printf '%s' "${1#orderflow-}" | tr 'a-z-' 'A-Z_')_CLIENT_SECRET
  eval "value=\${$name:-}"
  [ -n "$value" ] || die "$name is not set (the secret of client $1)"
  case $value in
  *CHANGE_ME*) die "$name still holds the placeholder CHANGE_ME; set a random value (openssl rand -hex 32)" ;;
  *[!A-Za-z0-9._~+/=-]*) die "$name may hold only letters, digits and . _ ~ + / = -" ;;
  esac
  [ "${#value}" -ge 16 ] || die "$name must have at least 16 characters"
  printf '%s' "$value"
}

# Check every secret before touching Hydra, so a missing one changes nothing.
found=0
for f in "$dir"/*.json; do
  [ -f "$f" ] || continue
  found=1
  if grep -q '\${SECRET}' "$f"; then
    secret_of "$(basename "$f" .json)" >/dev/null
  fi
done
[ "$found" = 1 ] || die "no client files in $dir"

i=0
until curl -s -f -o /dev/null --max-time 2 "$admin/health/ready"; do
  i=$((i + 1))
  [ "$i" -lt "$wait_seconds" ] || die "Hydra's admin API at $admin is not ready after ${wait_seconds}s"
  sleep 1
done

for f in "$dir"/*.json; do
  id=$(basename "$f" .json)
  # The secret goes in through awk's environment and the body through
  # curl's stdin: it never appears in a command line (ps, /proc/*/cmdline).
  secret=""
  if grep -q '\${SECRET}' "$f"; then
    secret=$(secret_of "$id")
  fi
  json=$(SECRET="$secret" awk '{ gsub(/\$\{SECRET\}/, ENVIRON["SECRET"]); print }' "$f")
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$admin/admin/clients/$id") || code=000
  if [ "$code" = 200 ]; then
    printf '%s' "$json" | curl -s -f -o /dev/null --max-time 10 -X PUT "$admin/admin/clients/$id" \
      -H 'Content-Type: application/json' --data-binary @- || die "could not update client $id"
    echo "register-clients: updated $id"
  else
    printf '%s' "$json" | curl -s -f -o /dev/null --max-time 10 -X POST "$admin/admin/clients" \
      -H 'Content-Type: application/json' --data-binary @- || die "could not create client $id"
    echo "register-clients: created $id"
  fi
done
