#!/usr/bin/env bash
# A four-replica network in Docker containers (configs/deploy/compose.yaml).
#
#   scripts/composenet.sh up          build the image unless it exists, generate
#                                     the testnet unless it exists, start every
#                                     container, wait until each replica is ready
#   scripts/composenet.sh status      containers, readiness, the client's status
#   scripts/composenet.sh kill I      SIGKILL replica I's container (a crash)
#   scripts/composenet.sh stop I      stop it (SIGTERM, clean)
#   scripts/composenet.sh start I     start it again (from its volume)
#   scripts/composenet.sh pause I     freeze it (docker pause)
#   scripts/composenet.sh unpause I
#   scripts/composenet.sh partition I disconnect it from the network
#   scripts/composenet.sh heal I      reconnect it (with its address)
#   scripts/composenet.sh ready [S]   wait at most S s (default 60) until every
#                                     running replica is ready
#   scripts/composenet.sh down [-v]   remove the containers (-v: and volumes)
#
# Environment (written to $PBFT_COMPOSENET/compose.env when the testnet is
# generated; later runs read that file, so settings stick to the network):
#   PBFT_COMPOSENET        testnet directory (default ./composenet)
#   PBFT_PROJECT           compose project, container and network prefix (pbft)
#   PBFT_IMAGE             image tag (pbft-ledger:latest)
#   PBFT_SUBNET_PREFIX     the network's /24, as three octets (172.28.5)
#   PBFT_HOST_PORT_PREFIX  published host ports PREFIX+I+1 (client, UDP) and
#                          PREFIX+I+2 (operations, TCP) (270: 27001, 27002, ...)
#   CARGO_TARGET_DIR       where the release binaries are (image, testnet)
# The client on the host reaches replicas at their container addresses
# (genesis): `pbft-client --network $PBFT_COMPOSENET status`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

NET="$(realpath -m "${PBFT_COMPOSENET:-$REPO/composenet}")"
ENV_FILE="$NET/compose.env"
COMPOSE_FILE="$REPO/configs/deploy/compose.yaml"
REPLICAS=4
BASE_PORT=26000
UID_REPLICA=10001
BIN="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}/release"

die() { echo "error: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed"
command -v docker-compose >/dev/null || die "docker-compose is not installed"
command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"

# Settings: the network's compose.env if it exists, else the environment.
if [ -f "$ENV_FILE" ]; then
  # shellcheck disable=SC1090
  source "$ENV_FILE"
fi
PROJECT="${PBFT_PROJECT:-pbft}"
IMAGE="${PBFT_IMAGE:-pbft-ledger:latest}"
SUBNET_PREFIX="${PBFT_SUBNET_PREFIX:-172.28.5}"
PORT_PREFIX="${PBFT_HOST_PORT_PREFIX:-270}"
[[ "$PROJECT" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "PBFT_PROJECT '$PROJECT': use lowercase letters, digits, - and _"
[[ "$SUBNET_PREFIX" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "PBFT_SUBNET_PREFIX '$SUBNET_PREFIX' must be three octets, e.g. 172.28.5"
[[ "$PORT_PREFIX" =~ ^[1-6]?[0-9]{1,2}$ ]] && [ $((10#$PORT_PREFIX * 100 + 32)) -le 65535 ] ||
  die "PBFT_HOST_PORT_PREFIX '$PORT_PREFIX': PREFIX followed by two digits must be a port"

compose() {
  docker-compose -f "$COMPOSE_FILE" --env-file "$ENV_FILE" -p "$PROJECT" "$@"
}
container() { echo "$PROJECT-replica-$1"; }
network() { echo "$PROJECT-net"; }
ip_of() { echo "$SUBNET_PREFIX.$((10 + $1))"; }

check_index() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -lt "$REPLICAS" ] || die "replica index must be 0..$((REPLICAS - 1))"
  [ -f "$ENV_FILE" ] || die "no network at $NET; run '$0 up' first"
}

# The testnet: `pbft-replica testnet`, then genesis rewritten to name every
# replica's container address, and every replica binding 0.0.0.0.
generate() {
  [ -x "$BIN/pbft-replica" ] || die "$BIN/pbft-replica not built (cargo build --release --bins)"
  echo "== generating a $REPLICAS-replica testnet in $NET (network $SUBNET_PREFIX.0/24)"
  "$BIN/pbft-replica" testnet --replicas "$REPLICAS" --out "$NET" --base-port "$BASE_PORT" >/dev/null
  local g i p tmp
  g="$NET/genesis.json"
  tmp="$(mktemp "$NET/genesis.XXXXXX")"
  jq --arg prefix "$SUBNET_PREFIX" --argjson base "$BASE_PORT" '
    .replicas |= map(
      .p2p_addr = "\($prefix).\(10 + .id):\($base + 10 * .id)" |
      .client_addr = "\($prefix).\(10 + .id):\($base + 10 * .id + 1)")' "$g" >"$tmp"
  mv "$tmp" "$g"
  chmod 0644 "$g"
  for i in $(seq 0 $((REPLICAS - 1))); do
    p=$((BASE_PORT + 10 * i))
    cp "$g" "$NET/replica-$i/genesis.json"
    # The rendered config.toml names each section once; set its listen keys.
    sed -i \
      -e "/^\[p2p\]/,/^\[/ s|^listen = .*|listen = \"0.0.0.0:$p\"|" \
      -e "/^\[client\]/,/^\[/ s|^listen = .*|listen = \"0.0.0.0:$((p + 1))\"|" \
      -e "/^\[ops\]/,/^\[/ s|^#\{0,1\} *listen = .*|listen = \"0.0.0.0:$((p + 2))\"|" \
      "$NET/replica-$i/config.toml"
    grep -q "^listen = \"0.0.0.0:$((p + 2))\"" "$NET/replica-$i/config.toml" ||
      die "could not set ops.listen in $NET/replica-$i/config.toml"
    chmod 0644 "$NET/replica-$i/config.toml"
    chmod 0755 "$NET/replica-$i"
    # The key stays 0600; the container's user (uid 10001) must own it.
    if ! chown "$UID_REPLICA:$UID_REPLICA" "$NET/replica-$i/node.key" 2>/dev/null &&
      ! sudo -n chown "$UID_REPLICA:$UID_REPLICA" "$NET/replica-$i/node.key" 2>/dev/null; then
      die "cannot give $NET/replica-$i/node.key to uid $UID_REPLICA (the image's user); run as root or with sudo"
    fi
  done
  chmod 0755 "$NET"
  cat >"$ENV_FILE" <<ENV
PBFT_PROJECT=$PROJECT
PBFT_IMAGE=$IMAGE
PBFT_NET_DIR=$NET
PBFT_SUBNET_PREFIX=$SUBNET_PREFIX
PBFT_HOST_PORT_PREFIX=$PORT_PREFIX
ENV
}

# Readiness of replica I through the image's own probe (/readyz).
ready_one() {
  docker exec "$(container "$1")" /usr/local/bin/pbft-replica probe --home /home/replica --ready --timeout-ms 1000 2>&1
}

# Waits at most $1 s until every running replica is ready.
wait_ready() {
  local limit=${1:-60} start i ok running
  start=$(date +%s)
  while true; do
    ok=0
    running=0
    for i in $(seq 0 $((REPLICAS - 1))); do
      if [ "$(docker inspect -f '{{.State.Running}}' "$(container "$i")" 2>/dev/null)" = true ]; then
        running=$((running + 1))
        if ready_one "$i" >/dev/null; then ok=$((ok + 1)); fi
      fi
    done
    if [ "$running" -gt 0 ] && [ "$ok" = "$running" ]; then
      echo "$ok running replicas ready"
      return 0
    fi
    if [ $(($(date +%s) - start)) -ge "$limit" ]; then
      echo "error: after ${limit}s $ok of $running running replicas are ready" >&2
      return 1
    fi
    sleep 0.5
  done
}

cmd="${1:-}"
case "$cmd" in
  up)
    if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
      scripts/image.sh --tag "$IMAGE" --bin-dir "$BIN"
    fi
    if [ -f "$ENV_FILE" ]; then
      echo "== using the existing testnet in $NET"
    else
      [ ! -e "$NET/genesis.json" ] || die "$NET holds a testnet without compose.env; remove it or pick PBFT_COMPOSENET"
      generate
    fi
    compose up -d
    wait_ready 60
    echo
    for i in $(seq 0 $((REPLICAS - 1))); do
      echo "replica $i  $(container "$i") $(ip_of "$i")  dashboard http://127.0.0.1:${PORT_PREFIX}${i}2/  client 127.0.0.1:${PORT_PREFIX}${i}1/udp"
    done
    echo
    echo "client: $BIN/pbft-client --network $NET status"
    ;;
  down)
    [ -f "$ENV_FILE" ] || { echo "no network at $NET"; exit 0; }
    if [ "${2:-}" = "-v" ]; then compose down -v --timeout 30; else compose down --timeout 30; fi
    ;;
  status)
    [ -f "$ENV_FILE" ] || die "no network at $NET; run '$0 up'"
    compose ps
    for i in $(seq 0 $((REPLICAS - 1))); do
      echo "replica $i  readyz: $(ready_one "$i" | head -n 1)"
    done
    if [ -x "$BIN/pbft-client" ]; then
      echo
      "$BIN/pbft-client" --network "$NET" --timeout-ms 3000 status || true
    fi
    ;;
  ready)
    [ -f "$ENV_FILE" ] || die "no network at $NET; run '$0 up'"
    wait_ready "${2:-60}"
    ;;
  kill) check_index "${2:-}"; docker kill "$(container "$2")" >/dev/null; echo "replica $2 killed" ;;
  stop) check_index "${2:-}"; docker stop -t 30 "$(container "$2")" >/dev/null; echo "replica $2 stopped" ;;
  start) check_index "${2:-}"; docker start "$(container "$2")" >/dev/null; echo "replica $2 started" ;;
  pause) check_index "${2:-}"; docker pause "$(container "$2")" >/dev/null; echo "replica $2 paused" ;;
  unpause) check_index "${2:-}"; docker unpause "$(container "$2")" >/dev/null; echo "replica $2 unpaused" ;;
  partition)
    check_index "${2:-}"
    docker network disconnect "$(network)" "$(container "$2")"
    echo "replica $2 disconnected from $(network)"
    ;;
  heal)
    check_index "${2:-}"
    docker network connect --ip "$(ip_of "$2")" "$(network)" "$(container "$2")"
    echo "replica $2 reconnected to $(network) as $(ip_of "$2")"
    ;;
  *)
    echo "usage: $0 up|down [-v]|status|ready [S]|kill I|stop I|start I|pause I|unpause I|partition I|heal I" >&2
    exit 2
    ;;
esac
