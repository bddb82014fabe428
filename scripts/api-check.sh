#!/usr/bin/env bash
# Checks the operations endpoint of a live replica against its OpenAPI
# description (configs/openapi.json) with schemathesis: a fresh 4-replica
# network in a temporary directory, then `st run` with every check
# (status codes, content types, response schemas, negative data rejected,
# no server errors) on replica 1's endpoint, then a clean stop.
#
#   scripts/api-check.sh [--base-port P] [--max-examples N] [--no-build]
#
# schemathesis (pinned) is installed from PyPI into a virtualenv at
# $PBFT_VENV (default /var/tmp/pbft-venv) if it is not there. Only the
# replicas this script started are ever signalled.
# Exit: 0 the API matches its description; 1 a check failed or the network
# could not start; 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
BASE_PORT=27900
MAX_EXAMPLES=25
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --base-port) BASE_PORT="${2:?--base-port needs a value}"; shift 2 ;;
    --max-examples) MAX_EXAMPLES="${2:?--max-examples needs a value}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && [ "$BASE_PORT" -gt 0 ] && [ "$BASE_PORT" -le 65400 ] ||
  { echo "error: --base-port must be 1..65400" >&2; exit 2; }
[[ "$MAX_EXAMPLES" =~ ^[0-9]+$ ]] && [ "$MAX_EXAMPLES" -gt 0 ] ||
  { echo "error: --max-examples must be a positive integer" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
BIN="$CARGO_TARGET_DIR/release"
VENV="${PBFT_VENV:-/var/tmp/pbft-venv}"
REPLICAS=4

if [ "$BUILD" = 1 ]; then
  # shellcheck source=lib/prereqs.sh
  source scripts/lib/prereqs.sh
  ensure_build_prereqs
  cargo build --release --bins
fi
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/pbft-api-check.XXXXXX")"
NET="$DIR/net"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "pbft-replica start --home $NET/"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${PIDS[@]}"; do
    timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/pbft-replica" testnet --replicas "$REPLICAS" --out "$NET" --base-port "$BASE_PORT" >/dev/null
mkdir -p "$NET/logs"
for i in $(seq 0 $((REPLICAS - 1))); do
  "$BIN/pbft-replica" start --home "$NET/replica-$i" >"$NET/logs/replica-$i.log" 2>&1 </dev/null &
  PIDS+=($!)
done
ready=0
for _ in $(seq 1 200); do
  ready=0
  for i in $(seq 0 $((REPLICAS - 1))); do
    "$BIN/pbft-replica" probe --home "$NET/replica-$i" --ready --timeout-ms 1000 >/dev/null 2>&1 && ready=$((ready + 1))
  done
  [ "$ready" = "$REPLICAS" ] && break
  sleep 0.1
done
[ "$ready" = "$REPLICAS" ] || { echo "error: the network did not become ready" >&2; tail -n 5 "$NET"/logs/*.log >&2; exit 1; }

# Something to find: one committed transfer, so blocks and a transaction exist.
"$BIN/pbft-client" --network "$NET" --key "$NET/clients/client-0.key" --timeout-ms 10000 \
  transfer --to "$(cat "$NET/clients/client-1.pub")" --amount 1 >/dev/null

URL="http://127.0.0.1:$((BASE_PORT + 12))"
echo "== schemathesis $SCHEMATHESIS_VERSION against replica 1 ($URL)"
# From the temporary directory: schemathesis keeps a cache where it runs.
SCHEMA="$PWD/configs/openapi.json"
SETTINGS="$PWD/configs/schemathesis.toml"
cd "$DIR"
"$VENV/bin/st" --config-file "$SETTINGS" run "$SCHEMA" --url "$URL" \
  --checks all --max-examples "$MAX_EXAMPLES" --workers 1 \
  --request-timeout 45 --max-response-time 50 --seed 1
echo "== the operations endpoint matches configs/openapi.json"
