# Shared helpers for the make targets. Everything a script starts in the
# background gets a pid file and a log in $RUN_DIR (.dev/, git-ignored), so
# `make down` stops exactly that.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.dev}
mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need_cmd CMD PACKAGE: installs Debian's PACKAGE when CMD is missing (as
# root, or through sudo without a password), else stops with the command
# that would install it.
need_cmd() {
  command -v "$1" >/dev/null && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || die "$1 is missing: install Debian's package with sudo apt-get install $2"
    sudo="sudo -n"
  fi
  say "installing $2 (Debian package, for $1)"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null ||
    die "could not install $2 (apt-get install $2)"
  command -v "$1" >/dev/null || die "$2 installed no $1"
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_port NAME HOST PORT [SECONDS]
wait_port() {
  local name=$1 host=$2 port=$3 secs=${4:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    port_open "$host" "$port" && return 0
    sleep 0.1
  done
  die "$name did not open $host:$port within ${secs}s (log: $RUN_DIR/logs/$name.log)"
}

# wait_http NAME URL [SECONDS]: wait for a 200.
wait_http() {
  local name=$1 url=$2 secs=${3:-60} i code
  for ((i = 0; i < secs * 5; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    [ "$code" = 200 ] && return 0
    if [ -f "$RUN_DIR/pids/$name.pid" ] && ! kill -0 "$(cat "$RUN_DIR/pids/$name.pid")" 2>/dev/null; then
      tail -20 "$RUN_DIR/logs/$name.log" >&2 || true
      die "$name exited during start-up (log: $RUN_DIR/logs/$name.log)"
    fi
    sleep 0.2
  done
  tail -20 "$RUN_DIR/logs/$name.log" >&2 || true
  die "$name is not ready at $url after ${secs}s (log: $RUN_DIR/logs/$name.log)"
}

# start_bg NAME CMD...: start CMD in the background in its own session, with
# its pid in $RUN_DIR/pids/NAME.pid and its output in $RUN_DIR/logs/NAME.log.
start_bg() {
  local name=$1; shift
  setsid "$@" >>"$RUN_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/pids/$name.pid"
}

# stop_pid NAME: SIGTERM the process (and its group), wait up to 15s, then SIGKILL.
stop_pid() {
  local name=$1 f="$RUN_DIR/pids/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

PG_HOST=127.0.0.1 PG_PORT=5432
REDIS_PORT=6379
SQS_PORT=${SQS_PORT:-4566}
SMTP_PORT=${SMTP_PORT:-1025} MAILDEV_WEB_PORT=${MAILDEV_WEB_PORT:-1080}
PG_URL=${PG_URL:-postgres://postgres@$PG_HOST:$PG_PORT}
HYDRA_VERSION=v2.3.0
HYDRA_PUBLIC_PORT=${HYDRA_PUBLIC_PORT:-4444} HYDRA_ADMIN_PORT=${HYDRA_ADMIN_PORT:-4445}

# create_db NAME: creates the database on the local PostgreSQL when missing.
create_db() {
  psql "$PG_URL/postgres?sslmode=disable" -v ON_ERROR_STOP=1 -qtAc \
    "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1 ||
    psql "$PG_URL/postgres?sslmode=disable" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $1"
}

# hydra_bin: prints the path of the pinned Ory Hydra binary, building it the
# first time. `go install` cannot build Hydra (its go.mod has replace
# directives, and ./internal/httpclient is a nested module missing from the
# module zip), so the module source is copied, the client replace dropped
# for the published hydra-client-go v2.2.1, and built there. The binary is
# cached outside the checkout ($HYDRA_CACHE) so fresh clones reuse it.
hydra_bin() {
  local cache=${HYDRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orderflow}
  local bin="$cache/hydra-$HYDRA_VERSION"
  if [ ! -x "$bin" ]; then
    say "building Ory Hydra $HYDRA_VERSION from the Go module proxy (once, 1-4 min)" >&2
    mkdir -p "$cache"
    local work
    work=$(mktemp -d)
    (
      set -e
      cd "$work"
      src=$(GOFLAGS=-mod=mod go mod download -json "github.com/ory/hydra/v2@$HYDRA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      cp -r "$src" hydra && chmod -R u+w hydra && cd hydra
      go mod edit -dropreplace github.com/ory/hydra-client-go/v2
      GOFLAGS=-mod=mod go get github.com/ory/hydra-client-go/v2@v2.2.1
      GOFLAGS=-mod=mod go build -o "$bin.tmp" .
    ) >"$cache/hydra-build.log" 2>&1 || { tail -20 "$cache/hydra-build.log" >&2; rm -rf "$work"; die "building Hydra failed (log: $cache/hydra-build.log)"; }
    rm -rf "$work"
    mv "$bin.tmp" "$bin"
  fi
  mkdir -p "$ROOT/bin"
  ln -sf "$bin" "$ROOT/bin/hydra"
  echo "$bin"
}

# Toxiproxy (make chaos): its API, and the proxies make dev puts in front of
# PostgreSQL, Redis and the SQS endpoint for the four services.
TOXIPROXY_VERSION=v2.5.0
TOXIPROXY_PORT=${TOXIPROXY_PORT:-8474}
TOXI_PG_PORT=${TOXI_PG_PORT:-15432} TOXI_REDIS_PORT=${TOXI_REDIS_PORT:-16379} TOXI_SQS_PORT=${TOXI_SQS_PORT:-14566}

# toxiproxy_bin: prints the path of the pinned Toxiproxy server,
# bin/toxiproxy-server, building it from the Go module proxy the first time
# (or when bin/ holds another version). In v2.5.0 its package is
# cmd/server, so go install names the binary "server": it is renamed.
toxiproxy_bin() {
  local bin="$ROOT/bin/toxiproxy-server" work
  if ! go version -m "$bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/Shopify/toxiproxy/v2[[:space:]]+${TOXIPROXY_VERSION}[[:space:]]"; then
    say "building Toxiproxy $TOXIPROXY_VERSION into bin/ (go install, once, under a minute)" >&2
    work=$(mktemp -d)
    GOBIN=$work go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2 ||
      { rm -rf "$work"; die "building Toxiproxy $TOXIPROXY_VERSION failed (go install github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION)"; }
    mkdir -p "$ROOT/bin"
    mv "$work/server" "$bin"
    rm -rf "$work"
  fi
  echo "$bin"
}
