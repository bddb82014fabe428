#!/usr/bin/env bash
# End-to-end check of scripts/bench.sh --delay-ms: a four-replica network
# behind `pbft-client relay` with a 10 ms one-way delay commits 200
# transfers, without a view change, through the relay (it forwarded
# datagrams), and no faster than the delay allows: a commit needs five
# one-way message delays (request, PRE-PREPARE, PREPARE, COMMIT, reply), so
# the median latency must be at least 50 ms (else the delay was not applied).
#
#   scripts/wan-check.sh [--base-port P] [--no-build]
#
# Exit: 0 passed, 1 failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

DELAY_MS=10
TXS=200
BASE_PORT=29100
BUILD=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base-port) [ $# -ge 2 ] || { echo "error: --base-port needs a value" >&2; exit 2; }; BASE_PORT=$2; shift 2 ;;
    --no-build) BUILD=(--no-build); shift ;;
    *) echo "error: unknown argument '$1'" >&2; sed -n '9p' "$0" | sed 's/^# //' >&2; exit 2 ;;
  esac
done

set +e
report=$(timeout 300 scripts/bench.sh "${BUILD[@]}" --json --delay-ms "$DELAY_MS" --txs "$TXS" \
  --concurrency 8 --base-port "$BASE_PORT" --deadline-s 120)
rc=$?
set -e
field() { grep -oE "\"$1\":[-0-9.eE+]+" <<<"$report" | head -n 1 | cut -d: -f2; }
fail() { echo "wan-check FAILED: $*" >&2; echo "$report" >&2; exit 1; }
[ "$rc" = 0 ] || fail "bench.sh exited $rc"
[ "$(field committed)" = "$TXS" ] || fail "committed $(field committed) of $TXS"
[ "$(field view_changes_started)" = 0 ] || fail "view changes started: $(field view_changes_started)"
grep -q "\"relay\":{\"delay_ms\":$DELAY_MS," <<<"$report" || fail "the report has no relay with delay $DELAY_MS ms"
forwarded=$(grep -oE '"relay":\{[^}]*\}' <<<"$report" | grep -oE '"forwarded":[0-9]+' | cut -d: -f2)
[ "${forwarded:-0}" -gt 0 ] || fail "the relay forwarded nothing"
p50=$(grep -oE '"latency_ms":\{[^}]*\}' <<<"$report" | grep -oE '"p50":[0-9.]+' | cut -d: -f2)
awk -v p="$p50" -v d="$DELAY_MS" 'BEGIN { exit !(p >= 5 * d) }' \
  || fail "p50 ${p50} ms is below five one-way delays ($((5 * DELAY_MS)) ms): the delay was not applied"
echo "wan-check passed: $TXS transfers at ${DELAY_MS} ms one-way, p50 ${p50} ms, relay forwarded $forwarded datagrams, no view change"
