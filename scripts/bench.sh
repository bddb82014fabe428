#!/usr/bin/env bash
# End-to-end benchmark: a fresh four-replica network on 127.0.0.1 in a
# temporary directory, loaded by `pbft-client bench`, then a summary.
#
#   scripts/bench.sh [--txs N] [--concurrency C] [--rate R] [--base-port P]
#                    [--profile lan|wan] [--batch-txs-max B] [--pipeline-depth D]
#                    [--deadline-s S] [--client-threads T] [--no-ops] [--scrape-ms M]
#                    [--delay-ms D [--jitter-ms J] [--loss-percent P]]
#                    [--no-build] [--keep] [--json]
#   scripts/bench.sh --sweep [sweep options]   (runs scripts/sweep.sh: the
#                    latency-throughput curve, a table and an SVG plot)
#
#   --txs N            transfers to commit (default 20000)
#   --concurrency C    sender accounts / transfers in flight (default 64)
#   --rate R           open-loop offered rate in tx/s (default: closed loop)
#   --base-port P      replica i uses UDP ports P+10i and P+10i+1 and TCP port
#                      P+10i+2 (its operations endpoint; default 27000)
#   --profile P        the testnet's consensus profile (`pbft-replica testnet
#                      --profile`: lan, the default, or wan)
#   --batch-txs-max B  consensus.batch_txs_max of the generated testnet
#   --pipeline-depth D consensus.pipeline_depth of the generated testnet
#   --deadline-s S     bound on the client run (default 600)
#   --client-threads T the client's runtime threads (default 1; 0 = one per core)
#   --no-ops           disable the replicas' operations endpoint (ops.listen
#                      = ""), to measure what it costs
#   --scrape-ms M      during the run, GET every replica's /metrics every M ms
#                      (as Prometheus would; the count is reported)
#   --delay-ms D       a wide-area network on one machine: every message
#                      between two replicas, and between the client and a
#                      replica, waits D ms one way, in a `pbft-client relay`
#                      (one process, a link in front of each replica's p2p
#                      and client address: genesis names the relay, replica
#                      i binds P+10i+5 and P+10i+6). D = 0 runs through the
#                      relay without delay, to see what the relay costs.
#   --jitter-ms J      with --delay-ms: plus a uniform [0, J] ms per
#                      datagram (order kept)
#   --loss-percent P   with --delay-ms: drop P% of datagrams each way
#   --no-build         use the binaries already in $CARGO_TARGET_DIR/release
#   --keep             keep the temporary directory (logs, stores)
#   --json             print the summary as one JSON object (the client's
#                      report plus a "replicas" array)
#
# Prints committed tx/s, latency p50/p90/p99/p99.9 (client's HDR histogram),
# failures and retries, and per replica the CPU seconds (utime+stime from
# /proc/PID/stat, sampled just before and after the client run, so the
# client's untimed setup — a few queries and at most C funding transfers —
# is included) per 1,000 committed transfers and the peak resident memory
# (VmHWM), and the replicas' views and view changes after the run (a
# benchmark should cause none), and with --delay-ms the relay's settings and
# counts (datagrams forwarded, lost, dropped by a full queue). Only the
# replicas and the relay this script started are ever signalled.
# Exit: 0 all committed; the client's exit code if it failed (5 timeout,
# 6 rejected, 1 other); 1 if the network could not be started; 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  echo "(see the header of $0 for every option)" >&2
  exit 2
}

TXS=20000
CONC=64
RATE=""
BASE_PORT=27000
BATCH=""
PROFILE=""
DEPTH=""
DEADLINE_S=600
CLIENT_THREADS=1
BUILD=1
KEEP=0
JSON=0
OPS=1
SCRAPE_MS=""
DELAY_MS=""
JITTER_MS=""
LOSS_PERCENT=""
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: $1 needs a value" >&2; usage; }; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }
if [ "${1:-}" = "--sweep" ]; then
  shift
  exec scripts/sweep.sh "$@"
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --txs) need_value "$@"; TXS=$2; shift 2 ;;
    --concurrency) need_value "$@"; CONC=$2; shift 2 ;;
    --rate) need_value "$@"; RATE=$2; shift 2 ;;
    --base-port) need_value "$@"; BASE_PORT=$2; shift 2 ;;
    --batch-txs-max) need_value "$@"; BATCH=$2; shift 2 ;;
    --profile) need_value "$@"; PROFILE=$2; shift 2 ;;
    --pipeline-depth) need_value "$@"; DEPTH=$2; shift 2 ;;
    --deadline-s) need_value "$@"; DEADLINE_S=$2; shift 2 ;;
    --client-threads) need_value "$@"; CLIENT_THREADS=$2; shift 2 ;;
    --no-ops) OPS=0; shift ;;
    --scrape-ms) need_value "$@"; SCRAPE_MS=$2; shift 2 ;;
    --delay-ms) need_value "$@"; DELAY_MS=$2; shift 2 ;;
    --jitter-ms) need_value "$@"; JITTER_MS=$2; shift 2 ;;
    --loss-percent) need_value "$@"; LOSS_PERCENT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) usage ;;
    *) echo "error: unknown argument '$1'" >&2; usage ;;
  esac
done
is_uint "$TXS" || { echo "error: --txs must be a positive integer" >&2; usage; }
is_uint "$CONC" || { echo "error: --concurrency must be a positive integer" >&2; usage; }
is_uint "$DEADLINE_S" || { echo "error: --deadline-s must be a positive integer" >&2; usage; }
[[ "$CLIENT_THREADS" =~ ^[0-9]+$ ]] || { echo "error: --client-threads must be a non-negative integer" >&2; usage; }
if [ -n "$RATE" ] && ! [[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  echo "error: --rate must be a positive number (tx/s)" >&2; usage
fi
if [ -n "$PROFILE" ] && ! [[ "$PROFILE" =~ ^(lan|wan)$ ]]; then
  echo "error: --profile must be lan or wan" >&2; usage
fi
if [ -n "$BATCH" ] && ! is_uint "$BATCH"; then
  echo "error: --batch-txs-max must be a positive integer" >&2; usage
fi
if [ -n "$SCRAPE_MS" ] && ! is_uint "$SCRAPE_MS"; then
  echo "error: --scrape-ms must be a positive integer" >&2; usage
fi
if [ -n "$SCRAPE_MS" ] && [ "$OPS" = 0 ]; then
  echo "error: --scrape-ms needs the operations endpoint (drop --no-ops)" >&2; usage
fi
if [ -n "$DEPTH" ] && ! is_uint "$DEPTH"; then
  echo "error: --pipeline-depth must be a positive integer" >&2; usage
fi
if [ -n "$DELAY_MS" ] && ! [[ "$DELAY_MS" =~ ^[0-9]+$ && "$DELAY_MS" -le 60000 ]]; then
  echo "error: --delay-ms must be an integer in 0..=60000" >&2; usage
fi
if [ -n "$JITTER_MS" ] && ! [[ "$JITTER_MS" =~ ^[0-9]+$ && "$JITTER_MS" -le 60000 ]]; then
  echo "error: --jitter-ms must be an integer in 0..=60000" >&2; usage
fi
if [ -n "$LOSS_PERCENT" ]; then
  if ! [[ "$LOSS_PERCENT" =~ ^[0-9]+(\.[0-9]+)?$ ]] || awk -v p="$LOSS_PERCENT" 'BEGIN { exit !(p > 100) }'; then
    echo "error: --loss-percent must be a number in 0..=100" >&2; usage
  fi
fi
if [ -z "$DELAY_MS" ] && { [ -n "$JITTER_MS" ] || [ -n "$LOSS_PERCENT" ]; }; then
  echo "error: --jitter-ms and --loss-percent need --delay-ms" >&2; usage
fi
if ! is_uint "$BASE_PORT" || [ "$BASE_PORT" -gt 65400 ]; then
  echo "error: --base-port must be 1..65400" >&2; usage
fi

REPLICAS=4
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
BIN="$CARGO_TARGET_DIR/release"
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=10
TCK=$(getconf CLK_TCK)

# Progress and diagnostics go to stderr; with --json stdout is the JSON only.
say() { echo "$@" >&2; }

if [ "$BUILD" = 1 ]; then
  # shellcheck source=lib/prereqs.sh
  source scripts/lib/prereqs.sh
  ensure_build_prereqs
  say "== building (release) into $CARGO_TARGET_DIR"
  cargo build --release --bins >&2
fi
for b in pbft-replica pbft-client; do
  [ -x "$BIN/$b" ] || { echo "error: $BIN/$b not built (run without --no-build)" >&2; exit 1; }
done

DIR="$(mktemp -d "${TMPDIR:-/tmp}/pbft-bench.XXXXXX")"
NET="$DIR/net"
PIDS=()
RELAY_PID=""
FAILED=1

# The pid if it is still one of the replicas we started (a recycled pid is
# not ours), else nothing.
ours() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "pbft-replica start --home $NET/" && echo "$pid"
  return 0
}

# The relay's pid if it is still the relay we started, else nothing.
relay_ours() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "pbft-client relay --link 127.0.0.1:$BASE_PORT=" && echo "$pid"
  return 0
}

# Stops the relay we started (SIGTERM; it prints its counts and exits).
stop_relay() {
  local waited=0
  [ -n "$(relay_ours "$RELAY_PID")" ] || return 0
  kill -TERM "$RELAY_PID" 2>/dev/null || true
  while [ -n "$(relay_ours "$RELAY_PID")" ]; do
    if [ "$waited" -ge $((STOP_TIMEOUT_S * 10)) ]; then
      say "relay pid $RELAY_PID did not stop within ${STOP_TIMEOUT_S}s; killing it"
      kill -KILL "$RELAY_PID" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$RELAY_PID" 2>/dev/null || true
}

cleanup() {
  local pid waited
  for pid in "${PIDS[@]}"; do
    [ -n "$(ours "$pid")" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    waited=0
    while [ -n "$(ours "$pid")" ]; do
      if [ "$waited" -ge $((STOP_TIMEOUT_S * 10)) ]; then
        say "replica pid $pid did not stop within ${STOP_TIMEOUT_S}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
  done
  stop_relay
  if [ "$KEEP" = 1 ] || [ "$FAILED" = 1 ]; then
    say "kept $DIR (logs in $NET/logs)"
  else
    rm -rf "$DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "== generating a $REPLICAS-replica testnet in $NET (base port $BASE_PORT)"
testnet_args=(testnet --replicas "$REPLICAS" --out "$NET" --base-port "$BASE_PORT"
  --clients 1 --balance 1000000000000)
[ -n "$PROFILE" ] && testnet_args+=(--profile "$PROFILE")
[ -n "$BATCH" ] && testnet_args+=(--batch-txs-max "$BATCH")
[ -n "$DEPTH" ] && testnet_args+=(--pipeline-depth "$DEPTH")
"$BIN/pbft-replica" "${testnet_args[@]}" >/dev/null
mkdir -p "$NET/logs"
if [ "$OPS" = 0 ]; then
  for i in $(seq 0 $((REPLICAS - 1))); do
    sed -i '/^\[ops\]/,$ s/^#\{0,1\} \{0,1\}listen = .*/listen = ""/' "$NET/replica-$i/config.toml"
  done
fi

if [ -n "$DELAY_MS" ]; then
  # Genesis keeps naming P+10i (p2p) and P+10i+1 (client): the relay binds
  # those and forwards to where the replica really listens, P+10i+5 and
  # P+10i+6. The operations endpoint stays on P+10i+2 (testnet writes it).
  links=()
  for i in $(seq 0 $((REPLICAS - 1))); do
    p=$((BASE_PORT + 10 * i))
    conf="$NET/replica-$i/config.toml"
    awk -v p2p="127.0.0.1:$((p + 5))" -v client="127.0.0.1:$((p + 6))" '
      /^\[/ { section = $0 }
      section == "[p2p]" && /^listen = / { $0 = "listen = \"" p2p "\"" }
      section == "[client]" && /^listen = / { $0 = "listen = \"" client "\"" }
      { print }' "$conf" >"$conf.tmp" && mv "$conf.tmp" "$conf"
    grep -q "^listen = \"127.0.0.1:$((p + 5))\"" "$conf" && grep -q "^listen = \"127.0.0.1:$((p + 6))\"" "$conf" \
      && grep -q "^listen = \"127.0.0.1:$((p + 2))\"" "$conf" \
      || { say "could not point replica $i's config at the relay ($conf)"; exit 1; }
    links+=(--link "127.0.0.1:$p=127.0.0.1:$((p + 5))" --link "127.0.0.1:$((p + 1))=127.0.0.1:$((p + 6))")
  done
  relay_args=(relay "${links[@]}" --delay-ms "$DELAY_MS" --jitter-ms "${JITTER_MS:-0}"
    --loss-percent "${LOSS_PERCENT:-0}" --duration-s $((DEADLINE_S + 600)) --output json)
  say "== relay: one-way delay $DELAY_MS ms, jitter ${JITTER_MS:-0} ms, loss ${LOSS_PERCENT:-0}%"
  "$BIN/pbft-client" "${relay_args[@]}" >"$NET/logs/relay.json" 2>"$NET/logs/relay.log" </dev/null &
  RELAY_PID=$!
  waited=0
  until [ "$(grep -c '^relay listening' "$NET/logs/relay.log")" = $((2 * REPLICAS)) ]; do
    # kill -0, not relay_ours: just after the fork the child may not have
    # exec'd the relay yet (its command line is still this script's), and
    # an unreaped child's pid cannot be another process's.
    if ! kill -0 "$RELAY_PID" 2>/dev/null; then
      say "the relay exited during start-up:"; cat "$NET/logs/relay.log" >&2; exit 1
    fi
    [ "$waited" -lt $((READY_TIMEOUT_S * 10)) ] || { say "relay not ready after ${READY_TIMEOUT_S}s"; exit 1; }
    sleep 0.1
    waited=$((waited + 1))
  done
fi

for i in $(seq 0 $((REPLICAS - 1))); do
  log="$NET/logs/replica-$i.log"
  "$BIN/pbft-replica" start --home "$NET/replica-$i" >"$log" 2>&1 </dev/null &
  PIDS+=($!)
done
for i in $(seq 0 $((REPLICAS - 1))); do
  log="$NET/logs/replica-$i.log"
  waited=0
  until grep -qE 'event="ready"|"event":"ready"' "$log"; do
    if [ -z "$(ours "${PIDS[$i]}")" ]; then
      say "replica $i exited during start-up; last log lines:"; tail -n 5 "$log" >&2; exit 1
    fi
    [ "$waited" -lt $((READY_TIMEOUT_S * 10)) ] || { say "replica $i not ready after ${READY_TIMEOUT_S}s"; exit 1; }
    sleep 0.1
    waited=$((waited + 1))
  done
done
waited=0
until [ "$("$BIN/pbft-client" --network "$NET" --timeout-ms 2000 status 2>/dev/null | grep -c "peers $((REPLICAS - 1))")" = "$REPLICAS" ]; do
  [ "$waited" -lt 150 ] || { say "the replicas never all connected"; exit 1; }
  sleep 0.1
  waited=$((waited + 1))
done
say "== $REPLICAS replicas ready (pids ${PIDS[*]})"

# utime+stime of a pid in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name may hold spaces, so count from after its ')').
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# Reaped children's user+sys seconds from a file holding the output of the
# shell's `times` (its second line; `times` must run in this shell, not in a
# command substitution, to see this shell's children).
children_s() {
  tail -n 1 "$1" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); n += p[1] * 60 + p[2] } print n }'
}

before=()
for pid in "${PIDS[@]}"; do before+=("$(cpu_ticks "$pid")"); done
[ -z "$RELAY_PID" ] || relay_before=$(cpu_ticks "$RELAY_PID")
client_args=(--network "$NET" --key "$NET/clients/client-0.key" --timeout-ms 10000
  bench --txs "$TXS" --concurrency "$CONC" --deadline-s "$DEADLINE_S" --threads "$CLIENT_THREADS" --json)
[ -n "$RATE" ] && client_args+=(--rate "$RATE")
say "== pbft-client bench --txs $TXS --concurrency $CONC${RATE:+ --rate $RATE}"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
times >"$DIR/times.before"
# Scrapes every replica's /metrics every SCRAPE_MS ms (bash's /dev/tcp: no
# HTTP client needed) until $DIR/scrape.stop exists; counts the scrapes.
scraper() {
  local n=0 i port pause
  pause=$(awk -v m="$SCRAPE_MS" 'BEGIN { printf "%.3f", m / 1000 }')
  while [ ! -e "$DIR/scrape.stop" ]; do
    for i in $(seq 0 $((REPLICAS - 1))); do
      port=$((BASE_PORT + 10 * i + 2))
      if exec 3<>"/dev/tcp/127.0.0.1/$port"; then
        printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
        if grep -q '^pbft_height ' <&3; then n=$((n + 1)); fi
        exec 3<&-
      fi
    done
    sleep "$pause"
  done
  echo "$n" >"$DIR/scrape.count"
}
scrapes=0
if [ -n "$SCRAPE_MS" ]; then
  scraper 2>/dev/null &
  SCRAPER=$!
fi
set +e
"$BIN/pbft-client" "${client_args[@]}" >"$DIR/client.json"
client_rc=$?
set -e
if [ -n "$SCRAPE_MS" ]; then
  touch "$DIR/scrape.stop"
  wait "$SCRAPER" || true
  scrapes=$(cat "$DIR/scrape.count" 2>/dev/null || echo 0)
fi
times >"$DIR/times.after"
client_cpu=$(awk -v a="$(children_s "$DIR/times.before")" -v b="$(children_s "$DIR/times.after")" 'BEGIN { printf "%.2f", b - a }')
after=()
hwm=()
for i in $(seq 0 $((REPLICAS - 1))); do
  pid=${PIDS[$i]}
  [ -n "$(ours "$pid")" ] || { say "replica $i died during the run; see $NET/logs/replica-$i.log"; exit 1; }
  after+=("$(cpu_ticks "$pid")")
  hwm+=("$(hwm_kb "$pid")")
done

# Views after the run: a benchmark is meant to run without a view change.
status="$("$BIN/pbft-client" --network "$NET" --timeout-ms 5000 status --stats 2>/dev/null || true)"
views=$(awk '$3 == "reachable" { printf "%s%s", sep, $5; sep = " " }' <<<"$status")
view_changes=$(awk '$3 == "counters" { n += $5 } END { print n + 0 }' <<<"$status")

# The relay's counts, summed over its links and both directions (it prints
# them as it stops; the run is over, the replicas no longer need it).
relay_json=null
relay_text=""
if [ -n "$DELAY_MS" ]; then
  [ -n "$(relay_ours "$RELAY_PID")" ] || { say "the relay died during the run; see $NET/logs/relay.log"; exit 1; }
  relay_cpu=$(awk -v a="$relay_before" -v b="$(cpu_ticks "$RELAY_PID")" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  stop_relay
  rsum() { grep -oE "\"$1\":[0-9]+" "$NET/logs/relay.json" | awk -F: '{ n += $2 } END { print n + 0 }'; }
  relay_json="{\"delay_ms\":$DELAY_MS,\"jitter_ms\":${JITTER_MS:-0},\"loss_percent\":${LOSS_PERCENT:-0},\"forwarded\":$(rsum forwarded),\"lost\":$(rsum lost),\"queue_full\":$(rsum queue_full),\"send_errors\":$(rsum send_errors),\"cpu_s\":$relay_cpu}"
  relay_text="one-way delay $DELAY_MS ms, jitter ${JITTER_MS:-0} ms, loss ${LOSS_PERCENT:-0}%; datagrams forwarded $(rsum forwarded), lost $(rsum lost), queue-full $(rsum queue_full); relay cpu $relay_cpu s"
fi

REPORT="$(cat "$DIR/client.json")"
[ -n "$REPORT" ] || { say "pbft-client bench printed no report (exit $client_rc)"; exit "$client_rc"; }
# One numeric field of the client's flat-enough JSON report.
field() { grep -oE "\"$1\":[-0-9.eE+]+" <<<"$REPORT" | head -n 1 | cut -d: -f2; }
committed=$(field committed)

replicas_json=""
total_cpu=0
for i in $(seq 0 $((REPLICAS - 1))); do
  cpu=$(awk -v a="${before[$i]}" -v b="${after[$i]}" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  per=$(awk -v c="$cpu" -v n="$committed" 'BEGIN { if (n > 0) printf "%.3f", c * 1000 / n; else print "null" }')
  total_cpu=$(awk -v a="$total_cpu" -v c="$cpu" 'BEGIN { printf "%.2f", a + c }')
  rss_mb=$(awk -v k="${hwm[$i]}" 'BEGIN { printf "%.1f", k / 1024 }')
  replicas_json+="${replicas_json:+,}{\"replica\":$i,\"cpu_s\":$cpu,\"cpu_s_per_1000_tx\":$per,\"peak_rss_mb\":$rss_mb}"
  rows[i]="replica $i  cpu ${cpu} s  ${per} cpu-s/1000 tx  peak RSS ${rss_mb} MB"
done
total_per=$(awk -v c="$total_cpu" -v n="$committed" 'BEGIN { if (n > 0) printf "%.3f", c * 1000 / n; else print "null" }')
client_per=$(awk -v c="$client_cpu" -v n="$committed" 'BEGIN { if (n > 0) printf "%.3f", c * 1000 / n; else print "null" }')

if [ "$JSON" = 1 ]; then
  echo "${REPORT%\}},\"replicas\":[$replicas_json],\"replicas_cpu_s\":$total_cpu,\"replicas_cpu_s_per_1000_tx\":$total_per,\"client_cpu_s\":$client_cpu,\"client_cpu_s_per_1000_tx\":$client_per,\"views\":\"$views\",\"view_changes_started\":$view_changes,\"relay\":$relay_json,\"ops\":$OPS,\"metrics_scrapes\":$scrapes,\"nproc\":$(nproc),\"loadavg_before\":\"$load_before\"}"
else
  echo "committed    $committed of $(field txs)  (failures $(field failures), retries $(field retries), re-asks $(field replica_retries))"
  if [ "$(field failures)" != 0 ]; then
    echo "failed       $(grep -oE '"failures_by_kind":\{[^}]*\}' <<<"$REPORT" | cut -d: -f2-)"
  fi
  echo "throughput   $(field tx_per_s | xargs printf '%.0f') tx/s over $(field elapsed_s | xargs printf '%.2f') s"
  echo "latency      p50 $(field p50) ms  p90 $(field p90) ms  p99 $(field p99) ms  p99.9 $(field p999) ms  max $(field max) ms"
  echo "blocks       $(field first_height)..$(field last_height)  ($(field txs_per_block | xargs printf '%.1f') txs/block)"
  for i in $(seq 0 $((REPLICAS - 1))); do echo "${rows[$i]}"; done
  echo "replicas     cpu ${total_cpu} s  ${total_per} cpu-s/1000 tx (all four)"
  echo "views        ${views:-?} after the run; view changes started: $view_changes"
  [ -z "$relay_text" ] || echo "wan relay    $relay_text"
  echo "client       cpu ${client_cpu} s  ${client_per} cpu-s/1000 tx (setup included)"
  if [ "$OPS" = 0 ]; then echo "ops          endpoint disabled"; else echo "ops          endpoint on; /metrics scraped $scrapes times during the run"; fi
  echo "machine      $(nproc) cores; load average before the client run: $load_before (shared machine)"
fi
[ "$client_rc" = 0 ] || say "pbft-client bench exited $client_rc: see the report above"
FAILED=0
[ "$client_rc" = 0 ] || FAILED=1
exit "$client_rc"
