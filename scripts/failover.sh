#!/usr/bin/env bash
# Failover time: a fresh four-replica network on 127.0.0.1 with the default
# consensus settings (or --request-timeout-ms), one warm-up transfer, then
# `kill -9` of the primary (replica 0 in view 0; `--signal TERM` stops it
# cleanly instead) and, at once, a transfer by a new pbft-client process.
# Measured: from the kill to that transfer's commit (the client's f+1
# matching replies), which spans the client's start (its connections and
# its nonce query, which waits a moment for the dead replica), the
# backups' proposal monitor or request timer, the view change and the new
# primary's ordering; and the client's own latency, from submitting the
# transfer to its commit. Repeated --rounds times on a new network each;
# prints every round and the medians.
#
#   scripts/failover.sh [--rounds N] [--request-timeout-ms MS]
#                       [--signal KILL|TERM] [--base-port P] [--no-build]
#
# Exit: 0 if every round committed; 1 if a round failed (its logs are
# printed); 2 usage. Only the replicas this script started are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=5
SIGNAL=KILL
TIMEOUT_MS=""
BASE_PORT=27600
BUILD=1
die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive number"; ROUNDS=$2; shift 2 ;;
    --request-timeout-ms) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--request-timeout-ms needs a positive number"; TIMEOUT_MS=$2; shift 2 ;;
    --signal) [ $# -ge 2 ] && [[ "$2" =~ ^(KILL|TERM)$ ]] || die "--signal needs KILL or TERM"; SIGNAL=$2; shift 2 ;;
    --base-port) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--base-port needs a port"; BASE_PORT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
BIN="$CARGO_TARGET_DIR/release"
if [ "$BUILD" = 1 ]; then
  cargo build --release --bin pbft-replica --bin pbft-client >&2
fi
for b in pbft-replica pbft-client; do
  [ -x "$BIN/$b" ] || die "$BIN/$b not found; build with 'cargo build --release --bins'"
done

WORK="$(mktemp -d /tmp/pbft-failover.XXXXXX)"
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    [ -n "$pid" ] || continue
    timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

results=()
latencies=()
for round in $(seq 1 "$ROUNDS"); do
  NET="$WORK/net-$round"
  args=(testnet --replicas 4 --out "$NET" --base-port "$BASE_PORT")
  [ -n "$TIMEOUT_MS" ] && args+=(--request-timeout-ms "$TIMEOUT_MS")
  "$BIN/pbft-replica" "${args[@]}" >/dev/null
  mkdir -p "$NET/logs"
  for i in 0 1 2 3; do
    "$BIN/pbft-replica" start --home "$NET/replica-$i" >"$NET/logs/replica-$i.log" 2>&1 </dev/null &
    PIDS+=($!)
  done
  for i in 0 1 2 3; do
    deadline=$((SECONDS + 30))
    until "$BIN/pbft-replica" probe --home "$NET/replica-$i" --ready >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || { tail -n 5 "$NET/logs/replica-$i.log" >&2; echo "round $round: replica $i never ready" >&2; exit 1; }
      sleep 0.1
    done
  done
  client() { timeout 60 "$BIN/pbft-client" --network "$NET" --timeout-ms 30000 --key "$NET/clients/client-0.key" "$@"; }
  to="$(cat "$NET/clients/client-1.pub")"
  client transfer --to "$to" --amount 1 >/dev/null || { echo "round $round: the warm-up transfer failed" >&2; exit 1; }
  t0=$(date +%s%N)
  kill "-$SIGNAL" "${PIDS[0]}"
  wait "${PIDS[0]}" 2>/dev/null || true
  PIDS[0]=""
  if ! client transfer --to "$to" --amount 2 >"$NET/logs/client.out" 2>&1; then
    cat "$NET/logs/client.out" >&2
    for i in 1 2 3; do tail -n 5 "$NET/logs/replica-$i.log" >&2; done
    echo "round $round: no commit after the primary was killed" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  submitted="$(awk '/^latency/ { printf "%d", $2 }' "$NET/logs/client.out")"
  views="$(grep -ho 'view=[0-9]*' "$NET"/logs/replica-[123].log | sort -u | tr '\n' ' ')"
  echo "round $round: SIG$SIGNAL of the primary to the next commit: $ms ms; submission to commit: ${submitted:-?} ms (${views% })"
  results+=("$ms")
  [ -n "$submitted" ] && latencies+=("$submitted")
  stop_all
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median of $ROUNDS rounds: $(median "${results[@]}") ms from SIG$SIGNAL, $(median "${latencies[@]:-0}") ms from submission (request timeout ${TIMEOUT_MS:-default})"
