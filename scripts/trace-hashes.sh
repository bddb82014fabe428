#!/usr/bin/env bash
# Prints the simulator's trace hash of a fixed set of seeds, one line each:
# honest seeds, seeds over every adversary, crash-anywhere seeds and Twins
# scenarios. A change that must not alter behaviour (a restructuring) keeps
# every line; compare a run before with a run after:
#
#   scripts/trace-hashes.sh > /tmp/before.txt    # on the old commit
#   scripts/trace-hashes.sh > /tmp/after.txt     # on the new one
#   diff /tmp/before.txt /tmp/after.txt && echo "same traces"
#
# Options: --sim PATH (a pbft-sim binary; default: the release build of this
# checkout, built if missing), --count N (seeds per group; default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

sim=""
count=60
while [ $# -gt 0 ]; do
  case "$1" in
    --sim) sim="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$count" in ''|*[!0-9]*) echo "error: --count needs a number" >&2; exit 2 ;; esac

if [ -z "$sim" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
  cargo build --release --quiet --bin pbft-sim >&2
  sim="$CARGO_TARGET_DIR/release/pbft-sim"
fi
[ -x "$sim" ] || { echo "error: $sim is not an executable" >&2; exit 2; }

# One replay; prints "ARGS -> HASH". A seed that reports a violation still
# has a hash (a restructuring must keep that too).
hash_of() {
  local out
  out="$("$sim" replay "$@" 2>&1 || true)"
  local h
  h="$(sed -n 's/.*trace-hash: \([^ ]*\).*/\1/p' <<<"$out" | tail -1)"
  [ -n "$h" ] || { echo "error: no trace hash from: pbft-sim replay $*" >&2; echo "$out" >&2; exit 1; }
  echo "$* -> $h"
}

total=$((count * 4))
done_=0
progress() { done_=$((done_ + 1)); printf '\r%d/%d replays' "$done_" "$total" >&2; }
for i in $(seq 0 $((count - 1))); do
  hash_of --seed $((500000 + i)); progress
  hash_of --seed $((510000 + i)) --adversary all; progress
  hash_of --seed $((520000 + i)) --crash-anywhere; progress
  hash_of --seed $((530000 + i)) --twins "3:$((i * 7))"; progress
done
echo >&2
