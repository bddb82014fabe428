#!/usr/bin/env bash
# Throughput and latency over a simulated wide-area network: runs
# scripts/bench.sh at each one-way delay (through `pbft-client relay`) and
# pipeline depth, at light load (one transfer in flight) and at saturation
# (many in flight), and prints a Markdown table.
#
#   scripts/wan-table.sh [--delays "none 0 10 25 50"] [--depths "1 4 8"]
#                        [--batch-txs-max B] [--light-txs N] [--sat-txs N]
#                        [--sat-concurrency C] [--request-timeout-ms T]
#                        [--deadline-s S] [--base-port P] [--no-build]
#                        [--raw FILE]
#
#   --delays           one-way delays in ms; "none" runs without the relay
#                      (the no-delay baseline), 0 through it without delay
#   --depths           consensus.pipeline_depth values
#   --batch-txs-max B  consensus.batch_txs_max (default: the testnet's)
#   --light-txs N      transfers of the light-load run (default 100)
#   --sat-txs N        transfers of the saturation run (default 20000)
#   --sat-concurrency C  transfers in flight at saturation (default 1024)
#   --deadline-s S     bound on each client run (default 120)
#   --base-port P      bench.sh's --base-port (default 29000)
#   --no-build         use the binaries already built
#   --raw FILE         also append every run's JSON report to FILE
#
# A run that failed or hit its deadline is marked in the table (its
# figures cover what committed). View changes must be 0: a WAN delay must
# not make backups suspect a correct primary.
# Exit: 0 if every run committed everything without a view change, 1 if
# one did not, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '7,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

DELAYS="none 0 10 25 50"
DEPTHS="1 4 8"
BATCH=""
LIGHT_TXS=100
SAT_TXS=20000
SAT_CONC=1024
DEADLINE_S=120
BASE_PORT=29000
BUILD=1
RAW=""
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: $1 needs a value" >&2; usage; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --delays) need_value "$@"; DELAYS=$2; shift 2 ;;
    --depths) need_value "$@"; DEPTHS=$2; shift 2 ;;
    --batch-txs-max) need_value "$@"; BATCH=$2; shift 2 ;;
    --light-txs) need_value "$@"; LIGHT_TXS=$2; shift 2 ;;
    --sat-txs) need_value "$@"; SAT_TXS=$2; shift 2 ;;
    --sat-concurrency) need_value "$@"; SAT_CONC=$2; shift 2 ;;
    --deadline-s) need_value "$@"; DEADLINE_S=$2; shift 2 ;;
    --base-port) need_value "$@"; BASE_PORT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --raw) need_value "$@"; RAW=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "error: unknown argument '$1'" >&2; usage ;;
  esac
done
for d in $DELAYS; do
  [ "$d" = none ] || [[ "$d" =~ ^[0-9]+$ ]] || { echo "error: --delays: '$d' is not a delay in ms or 'none'" >&2; usage; }
done
for d in $DEPTHS; do
  [[ "$d" =~ ^[1-9][0-9]*$ ]] || { echo "error: --depths: '$d' is not a positive integer" >&2; usage; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
if [ "$BUILD" = 1 ]; then
  echo "== building (release) into $CARGO_TARGET_DIR" >&2
  cargo build --release --bin pbft-client --bin pbft-replica >&2
fi

LOG="$(mktemp -d "${TMPDIR:-/tmp}/pbft-wan.XXXXXX")"
trap 'rm -rf "$LOG"' EXIT
# Runs happen in command substitutions (subshells): a bad one leaves a mark.
not_ok() { touch "$LOG/not-ok"; }

# One bench.sh run; prints its JSON report (empty if it printed none).
run() {
  local delay=$1 depth=$2 conc=$3 txs=$4 out rc
  local args=(--no-build --json --base-port "$BASE_PORT" --txs "$txs" --concurrency "$conc"
    --pipeline-depth "$depth" --deadline-s "$DEADLINE_S")
  [ -n "$BATCH" ] && args+=(--batch-txs-max "$BATCH")
  [ "$delay" = none ] || args+=(--delay-ms "$delay")
  echo "== delay $delay depth $depth: $txs transfers, $conc in flight" >&2
  set +e
  out=$(timeout $((DEADLINE_S + 180)) scripts/bench.sh "${args[@]}" 2>"$LOG/bench.err")
  rc=$?
  set -e
  [ "$rc" = 0 ] || { echo "   bench.sh exited $rc; last lines:" >&2; tail -n 3 "$LOG/bench.err" >&2; not_ok; }
  [ -z "$RAW" ] || echo "$out" >>"$RAW"
  echo "$out"
}

field() { grep -oE "\"$1\":[-0-9.eE+]+" <<<"$2" | head -n 1 | cut -d: -f2; }
# "tx/s | p50 | p99" of a report, with a mark when it is not a clean run.
cells() {
  local r=$1 mark=""
  if [ -z "$r" ]; then echo "failed | | "; not_ok; return; fi
  [ "$(field failures "$r")" = 0 ] || mark=" (failures $(field failures "$r"))"
  [ "$(field view_changes_started "$r")" = 0 ] || { mark+=" (view changes $(field view_changes_started "$r"))"; not_ok; }
  printf '%.0f%s | %.1f | %.1f' "$(field tx_per_s "$r")" "$mark" "$(field p50 "$r")" "$(field p99 "$r")"
}

{
  echo "| one-way delay | pipeline depth | light: tx/s | light: p50 ms | light: p99 ms | saturated: tx/s | saturated: p50 ms | saturated: p99 ms | txs/block (saturated) |"
  echo "|---|---|---|---|---|---|---|---|---|"
} >"$LOG/table"
for delay in $DELAYS; do
  for depth in $DEPTHS; do
    light=$(run "$delay" "$depth" 1 "$LIGHT_TXS")
    sat=$(run "$delay" "$depth" "$SAT_CONC" "$SAT_TXS")
    label="$delay ms"
    [ "$delay" = none ] && label="none (no relay)"
    bpb=$(field txs_per_block "$sat")
    echo "| $label | $depth | $(cells "$light") | $(cells "$sat") | ${bpb:+$(printf '%.1f' "$bpb")} |" >>"$LOG/table"
    tail -n 1 "$LOG/table" >&2
  done
done
echo
echo "batch_txs_max ${BATCH:-default}; light: 1 in flight, $LIGHT_TXS transfers; saturated: $SAT_CONC in flight, $SAT_TXS transfers; $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
cat "$LOG/table"
[ ! -e "$LOG/not-ok" ]
