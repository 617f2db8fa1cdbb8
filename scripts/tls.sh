#!/usr/bin/env bash
# scripts/tls.sh [DIR]: the local certificate authority and the gateway's
# server certificate, made with openssl alone. DIR defaults to .dev/tls in
# the repository root.
#
#   ca.pem, ca-key.pem            the CA (EC P-256, 10 years): clients trust ca.pem
#   server-cert.pem, server-key.pem
#                                 the gateway's certificate (EC P-256, 825 days,
#                                 the most Apple's TLS clients accept), for
#                                 IP:127.0.0.1 and DNS:localhost plus $TLS_SANS
#                                 (e.g. TLS_SANS="DNS:gateway" for compose;
#                                 entries separated by commas or spaces)
#   server.pem                    certificate + key, the single file HAProxy's
#                                 `crt` reads
#
# Idempotent: files that are still valid are kept, so a CA a browser or the
# system already trusts keeps working across `make dev` runs. The CA is only
# replaced when it is missing, unreadable, expires within 30 days or does not
# match its key; the server certificate also when it no longer verifies
# against the CA or lacks one of the wanted names. Private keys are mode 600.
#
# It does not source scripts/lib.sh: lib.sh creates the run directories as a
# side effect, and tests run this script against a temporary DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"

DIR=${1:-$ROOT/.dev/tls}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CA_DAYS=3650 SERVER_DAYS=825
RENEW_SECONDS=$((30 * 24 * 3600))

# The wanted subjectAltNames, in openssl's config syntax.
sans=(IP:127.0.0.1 DNS:localhost)
set -f # a wildcard name is not a glob
extra=${TLS_SANS:-}
for san in ${extra//,/ }; do
  [[ $san =~ ^(DNS|IP):[A-Za-z0-9.:*_-]+$ ]] || die "TLS_SANS entry '$san' is not DNS:name or IP:address"
  sans+=("$san")
done
set +f
san_list=$(IFS=,; echo "${sans[*]}")

work=$(mktemp -d "$DIR/.tls.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077

# One explicit config, so neither the system's openssl.cnf nor LibreSSL's
# defaults add or duplicate extensions.
cat >"$work/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san_list
EOF

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# A random positive 128-bit serial (Go rejects negative ones).
serial() { echo "0x0$(openssl rand -hex 16)"; }
pubkey_of_cert() { openssl x509 -noout -pubkey -in "$1" 2>/dev/null; }
pubkey_of_key() { openssl pkey -pubout -in "$1" 2>/dev/null; }
not_expiring() { openssl x509 -noout -checkend "$RENEW_SECONDS" -in "$1" >/dev/null 2>&1; }

ca_valid() {
  [ -s "$DIR/ca.pem" ] && [ -s "$DIR/ca-key.pem" ] || return 1
  not_expiring "$DIR/ca.pem" || return 1
  local a b
  a=$(pubkey_of_cert "$DIR/ca.pem") && b=$(pubkey_of_key "$DIR/ca-key.pem") && [ -n "$a" ] && [ "$a" = "$b" ]
}

server_valid() {
  local crt=$DIR/server-cert.pem key=$DIR/server-key.pem a b text san
  [ -s "$crt" ] && [ -s "$key" ] || return 1
  not_expiring "$crt" || return 1
  openssl verify -CAfile "$DIR/ca.pem" "$crt" >/dev/null 2>&1 || return 1
  a=$(pubkey_of_cert "$crt") && b=$(pubkey_of_key "$key") && [ -n "$a" ] && [ "$a" = "$b" ] || return 1
  # -text prints "IP Address:127.0.0.1, DNS:localhost" (-ext is missing in LibreSSL).
  text=$(openssl x509 -noout -text -in "$crt") || return 1
  san=$(printf '%s\n' "$text" | grep -A1 'X509v3 Subject Alternative Name' | tail -1)
  for want in "${sans[@]}"; do
    want=${want/#IP:/IP Address:}
    [[ ", ${san#"${san%%[! ]*}"}, " == *", $want, "* ]] || return 1
  done
}

if ca_valid; then
  ca_new=0
else
  say "creating the local CA in $DIR"
  newkey "$work/ca-key.pem"
  openssl req -x509 -new -config "$work/openssl.cnf" -extensions ca -subj "/CN=Orderflow local CA" \
    -key "$work/ca-key.pem" -sha256 -days "$CA_DAYS" -set_serial "$(serial)" -out "$work/ca.pem"
  chmod 600 "$work/ca-key.pem"
  chmod 644 "$work/ca.pem"
  # Key first: a crash between the two moves leaves a pair that ca_valid rejects.
  mv -f "$work/ca-key.pem" "$DIR/ca-key.pem"
  mv -f "$work/ca.pem" "$DIR/ca.pem"
  ca_new=1
fi

if [ "$ca_new" = 1 ] || ! server_valid; then
  say "creating the gateway certificate for $san_list"
  newkey "$work/server-key.pem"
  openssl req -new -config "$work/openssl.cnf" -subj "/CN=Orderflow gateway" \
    -key "$work/server-key.pem" -out "$work/server.csr"
  openssl x509 -req -in "$work/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca-key.pem" \
    -set_serial "$(serial)" -sha256 -days "$SERVER_DAYS" \
    -extfile "$work/openssl.cnf" -extensions server -out "$work/server-cert.pem" 2>/dev/null
  chmod 600 "$work/server-key.pem"
  chmod 644 "$work/server-cert.pem"
  mv -f "$work/server-key.pem" "$DIR/server-key.pem"
  mv -f "$work/server-cert.pem" "$DIR/server-cert.pem"
fi

cat "$DIR/server-cert.pem" "$DIR/server-key.pem" >"$work/server.pem"
if ! cmp -s "$work/server.pem" "$DIR/server.pem" 2>/dev/null; then
  chmod 600 "$work/server.pem"
  mv -f "$work/server.pem" "$DIR/server.pem"
fi
chmod 600 "$DIR/ca-key.pem" "$DIR/server-key.pem" "$DIR/server.pem"
