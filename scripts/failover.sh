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
# With --load RATE a long-running client measures it instead: after the
# benchmark's sender accounts are funded, `pbft-client bench --rate RATE`
# runs open loop for 8 s and the primary is signalled 3 s in. A transfer's
# latency counts from the moment it was due, so the longest one spans the
# outage: the kill to the next commit is at most that maximum (the
# transfer due right after the kill). Prints the maximum, p99.9 and p50 per
# round and the median maximum.
#
#   scripts/failover.sh [--rounds N] [--request-timeout-ms MS]
#                       [--signal KILL|TERM] [--load RATE]
#                       [--base-port P] [--no-build]
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
LOAD=""
die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive number"; ROUNDS=$2; shift 2 ;;
    --request-timeout-ms) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--request-timeout-ms needs a positive number"; TIMEOUT_MS=$2; shift 2 ;;
    --signal) [ $# -ge 2 ] && [[ "$2" =~ ^(KILL|TERM)$ ]] || die "--signal needs KILL or TERM"; SIGNAL=$2; shift 2 ;;
    --load) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--load needs a rate in transfers/s"; LOAD=$2; shift 2 ;;
    --base-port) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--base-port needs a port"; BASE_PORT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# One --load round on the running network $NET: fund the senders, then an
# 8 s open-loop run with the primary signalled 3 s in.
load_round() {
  local conc=256 txs=$((LOAD * 8)) report line
  client bench --txs "$conc" --concurrency "$conc" --json >"$NET/logs/setup.json" 2>"$NET/logs/setup.err" \
    || { cat "$NET/logs/setup.err" >&2; echo "round $round: funding the benchmark's senders failed" >&2; exit 1; }
  client bench --txs "$txs" --concurrency "$conc" --rate "$LOAD" --deadline-s 50 --json \
    >"$NET/logs/bench.json" 2>"$NET/logs/bench.err" &
  local bench_pid=$!
  sleep 3
  kill "-$SIGNAL" "${PIDS[0]}"
  wait "${PIDS[0]}" 2>/dev/null || true
  PIDS[0]=""
  if ! wait "$bench_pid"; then
    cat "$NET/logs/bench.err" >&2
    for i in 1 2 3; do tail -n 5 "$NET/logs/replica-$i.log" >&2; done
    echo "round $round: the benchmark did not commit every transfer across the kill" >&2
    exit 1
  fi
  report="$(cat "$NET/logs/bench.json")"
  line="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latency_ms"]; print(round(l["max"]), l["p999"], l["p50"], r["committed"], r["retries"])' "$report")"
  read -r max p999 p50 committed retries <<<"$line"
  views="$(grep -ho 'view=[0-9]*' "$NET"/logs/replica-[123].log | sort -u | tr '\n' ' ')"
  echo "round $round: SIG$SIGNAL of the primary under $LOAD transfers/s: longest transfer $max ms (p99.9 $p999, p50 $p50 ms; $committed committed, $retries resubmitted; ${views% })"
  results+=("$max")
}
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
  if [ -n "$LOAD" ]; then
    load_round
    stop_all
    continue
  fi
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
if [ -n "$LOAD" ]; then
  echo "median of $ROUNDS rounds: longest transfer $(median "${results[@]}") ms across a SIG$SIGNAL of the primary under $LOAD transfers/s (request timeout ${TIMEOUT_MS:-default})"
  exit 0
fi
echo "median of $ROUNDS rounds: $(median "${results[@]}") ms from SIG$SIGNAL, $(median "${latencies[@]:-0}") ms from submission (request timeout ${TIMEOUT_MS:-default})"
