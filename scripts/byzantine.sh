#!/usr/bin/env bash
# A four-replica network on this machine whose replica 0 (the primary of
# view 0) is Byzantine, driven by a client, then a report.
#
#   scripts/byzantine.sh BEHAVIOUR [TRANSFERS]
#
# BEHAVIOUR: equivocate, silent, forge-signatures, flood, stale-replay, or
# any other adversary of the catalogue that is a replica strategy (an
# unknown name lists them), or `none` for the same run with every replica
# honest (the baseline for the throughput line). TRANSFERS: how many
# transfers to commit (default 20).
#
# Builds (release, --features byzantine), generates a fresh testnet in a
# new temporary directory (kept afterwards for its logs), starts replica 0
# with `pbft-replica start --byzantine BEHAVIOUR` and replicas 1-3 honest,
# commits the transfers with pbft-client, prints each honest replica's
# view, height, view changes and the messages its core refused (by
# reason), stops every replica it started (by PID, SIGTERM) and compares
# the honest stores.
#
# Exit codes: 0 every transfer committed and the honest replicas agree;
# 1 otherwise (the report says what failed); 2 usage error.
# Environment: PBFT_BASE_PORT (default 27000), CARGO_TARGET_DIR,
# PBFT_BYZANTINE_DEADLINE_S (bound on driving the transfers, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 BEHAVIOUR [TRANSFERS]   (e.g. $0 equivocate 20)" >&2
  exit 2
}

case "${1:-}" in
  -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  ""|-*) usage ;;
esac
BEHAVIOUR="$1"
TRANSFERS="${2:-20}"
[[ "$TRANSFERS" =~ ^[1-9][0-9]{0,4}$ ]] || { echo "error: TRANSFERS must be a positive integer (at most 99999)" >&2; usage; }
[ "$#" -le 2 ] || usage

REPLICAS=4
BASE_PORT="${PBFT_BASE_PORT:-27000}"
DEADLINE_S="${PBFT_BYZANTINE_DEADLINE_S:-120}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
BIN="$CARGO_TARGET_DIR/release"
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=10

# shellcheck source=lib/prereqs.sh
source scripts/lib/prereqs.sh
ensure_build_prereqs
echo "== building (release, --features byzantine) into $CARGO_TARGET_DIR"
cargo build --release --features byzantine --bins

# The behaviour is checked before anything is generated: an unknown one
# is a usage error (2); a known one gets as far as the missing home (3).
set +e
[ "$BEHAVIOUR" = none ] && BEHAVIOUR_CHECK=honest || BEHAVIOUR_CHECK="$BEHAVIOUR"
check="$("$BIN/pbft-replica" start --home /nonexistent/pbft-byzantine-check --byzantine "$BEHAVIOUR_CHECK" 2>&1)"
code=$?
[ "$BEHAVIOUR" = none ] && code=3
set -e
if [ "$code" -eq 2 ]; then
  echo "$check" >&2
  exit 2
fi

NET="$(mktemp -d "${TMPDIR:-/tmp}/pbft-byzantine.XXXXXX")"
CLIENT=("$BIN/pbft-client" --network "$NET")
PIDS=()

stop_one() {
  local i=$1 pid waited=0
  pid="${PIDS[$i]:-}"
  [ -n "$pid" ] || return 0
  PIDS[i]=""
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((STOP_TIMEOUT_S * 10)) ]; then
      echo "replica $i did not stop within ${STOP_TIMEOUT_S}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local i
  for i in $(seq 0 $((REPLICAS - 1))); do stop_one "$i"; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

echo "== generating a $REPLICAS-replica testnet in $NET"
"$BIN/pbft-replica" testnet --replicas "$REPLICAS" --out "$NET" --base-port "$BASE_PORT" \
  --request-timeout-ms 1000 --retransmit-ms 200 --view-change-timeout-max-ms 8000 \
  --checkpoint-interval 8 --watermark-window 32 >/dev/null
mkdir -p "$NET/logs"

start_one() {
  local i=$1 log pid waited=0
  local extra=()
  [ "$i" -eq 0 ] && [ "$BEHAVIOUR" != none ] && extra=(--byzantine "$BEHAVIOUR")
  log="$NET/logs/replica-$i.log"
  "$BIN/pbft-replica" start --home "$NET/replica-$i" "${extra[@]}" >>"$log" 2>&1 </dev/null &
  pid=$!
  PIDS[i]=$pid
  until grep -qE 'event="ready"' "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      PIDS[i]=""
      echo "error: replica $i exited during start-up; last log lines:" >&2
      tail -n 5 "$log" >&2
      exit 1
    fi
    if [ "$waited" -ge $((READY_TIMEOUT_S * 10)) ]; then
      echo "error: replica $i not ready after ${READY_TIMEOUT_S}s (see $log)" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  if [ "$i" -eq 0 ]; then
    echo "replica 0 ready (pid $pid): $(grep -m1 'BYZANTINE' "$log" | sed 's/.*WARN [^ ]* //')"
  else
    echo "replica $i ready (pid $pid, honest)"
  fi
}

for i in $(seq 0 $((REPLICAS - 1))); do start_one "$i"; done

full="peers $((REPLICAS - 1))"
n=0
until [ "$("${CLIENT[@]}" --timeout-ms 2000 status 2>/dev/null | grep -c "$full")" = "$REPLICAS" ]; do
  n=$((n + 1))
  if [ "$n" -ge 150 ]; then
    echo "warning: the replicas are not all connected after 15 s" >&2
    break
  fi
  sleep 0.1
done

echo "== $TRANSFERS transfers (client-0 <-> client-1; each waits for f+1 matching replies)"
A="$(cat "$NET/clients/client-0.pub")"
B="$(cat "$NET/clients/client-1.pub")"
ok=0
failed=0
latencies=()
started=$SECONDS
started_ns=$(date +%s%N)
for t in $(seq 1 "$TRANSFERS"); do
  if [ $((SECONDS - started)) -ge "$DEADLINE_S" ]; then
    echo "deadline of ${DEADLINE_S}s reached after $((t - 1)) transfers; stopping" >&2
    break
  fi
  if [ $((t % 2)) -eq 1 ]; then key=client-0.key; to=$B; else key=client-1.key; to=$A; fi
  set +e
  out="$("${CLIENT[@]}" --timeout-ms 15000 --key "$NET/clients/$key" transfer --to "$to" --amount 1 2>&1)"
  code=$?
  set -e
  if [ "$code" -eq 0 ]; then
    ok=$((ok + 1))
    latencies+=("$(awk '/^latency/ {print $2}' <<<"$out")")
  else
    failed=$((failed + 1))
    echo "transfer $t failed (exit $code): $(tail -n 1 <<<"$out")" >&2
  fi
done
elapsed_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
echo "committed $ok of $TRANSFERS transfers in $((SECONDS - started)) s; latencies (ms): ${latencies[*]:-none}"
# One transfer at a time, each by a new client process: the rate includes
# the client's start, as a user's would.
awk -v ok="$ok" -v ms="$elapsed_ms" 'BEGIN { printf "throughput: %.2f transfers/s (%d in %d ms)\n", (ms > 0 ? ok * 1000 / ms : 0), ok, ms }'

# Give a replica the adversary left behind a moment to catch up.
sleep 1
status="$("${CLIENT[@]}" --timeout-ms 5000 status --stats 2>/dev/null || true)"

echo
echo "== what happened (behaviour '$BEHAVIOUR' on replica 0)"
awk '$3 == "reachable" || $3 == "unreachable" { print }' <<<"$status"
echo
printf '%-8s %-7s %-6s %-8s %-13s %-10s %s\n' replica role view height view_changes new_views undecodable
awk '
  $3 == "reachable" {
    for (k = 4; k < NF; k++) {
      if ($k == "view") view[$2] = $(k + 1)
      if ($k == "height") height[$2] = $(k + 1)
    }
  }
  $3 == "counters"  { vc[$2] = $5; nv[$2] = $7; und[$2] = $9 }
  END {
    for (i = 0; i < 4; i++) {
      if (!(i in view)) { printf "%-8s %-7s unreachable\n", i, (i == 0 ? "BYZ" : "honest"); continue }
      printf "%-8s %-7s %-6s %-8s %-13s %-10s %s\n", i, (i == 0 ? "BYZ" : "honest"), view[i], height[i], vc[i], nv[i], und[i]
    }
  }' <<<"$status"
echo
echo "messages refused by the honest replicas' cores, by reason (replica 1 / 2 / 3):"
refusals="$(awk '
  $3 == "ignored" && $2 != "0" {
    reason = $5; for (k = 6; k <= NF; k++) reason = reason " " $k
    n[reason, $2] = $4; reasons[reason] = 1
  }
  END {
    for (r in reasons) printf "  %6d %6d %6d  %s\n", n[r, "1"] + 0, n[r, "2"] + 0, n[r, "3"] + 0, r
  }' <<<"$status" | sort -k4)"
if [ -n "$refusals" ]; then echo "$refusals"; else echo "  (none)"; fi

echo
echo "== stopping the replicas"
stop_all
for i in $(seq 0 $((REPLICAS - 1))); do
  line="$(grep 'event="stopped"' "$NET/logs/replica-$i.log" | tail -n 1 || true)"
  echo "replica $i: ${line#*replica stopped }"
done
adv="$(grep 'event="byzantine-stopped"' "$NET/logs/replica-0.log" | tail -n 1 || true)"
[ -z "$adv" ] || echo "adversary: ${adv#*transmissions made }"

echo
echo "== honest stores"
agree=1
: >"$NET/logs/blocks"
for i in 1 2 3; do
  report="$("$BIN/pbft-replica" inspect --blocks --home "$NET/replica-$i")"
  height="$(awk '$1 == "height" {print $2}' <<<"$report")"
  view="$(awk '$1 == "view" {print $2}' <<<"$report")"
  supply="$(awk '$1 == "total_supply" {print $2}' <<<"$report")"
  echo "replica $i: height $height view $view total_supply $supply"
  grep '^block ' <<<"$report" | awk -v r="$i" '{print r, $2, $3}' >>"$NET/logs/blocks"
  first_supply="${first_supply:-$supply}"
  [ "$supply" = "$first_supply" ] || agree=0
done
# Same block hash at every height two honest replicas both have.
conflicts="$(awk '{ if (($2 in h) && h[$2] != $3) print "height " $2 ": replica " $1 " has " $3 ", another " h[$2]; h[$2] = $3 }' "$NET/logs/blocks")"
if [ -n "$conflicts" ]; then
  agree=0
  echo "$conflicts"
else
  echo "same block hash at every height held by more than one honest replica"
fi
heights="$(cut -d' ' -f1 "$NET/logs/blocks" | sort | uniq -c | awk '{print $1}' | sort -u | wc -l)"
[ "$heights" -le 1 ] || echo "note: the honest replicas stopped at different heights (a lagging replica catches up at the next stable checkpoint)"
echo
echo "logs: $NET/logs/replica-{0..3}.log"
if [ "$agree" -eq 1 ] && [ "$failed" -eq 0 ] && [ "$ok" -eq "$TRANSFERS" ]; then
  echo "OK: every transfer committed; the honest replicas agree on every block and on the supply"
  exit 0
fi
[ "$agree" -eq 1 ] || echo "FAILED: the honest replicas' stores conflict" >&2
[ "$ok" -eq "$TRANSFERS" ] || echo "FAILED: $((TRANSFERS - ok)) transfers did not commit" >&2
exit 1
