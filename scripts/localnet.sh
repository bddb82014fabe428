#!/usr/bin/env bash
# A four-replica network on this machine.
#
#   scripts/localnet.sh up        install build prerequisites, build (release),
#                                 generate ./localnet unless it exists, start
#                                 every replica, wait until each is ready
#                                 (its /readyz) and print each replica's
#                                 dashboard and metrics URL (testnet writes
#                                 localnet/prometheus.yml to scrape them)
#   scripts/localnet.sh status    which replicas run, and what they report
#   scripts/localnet.sh stop I    stop replica I (SIGTERM, clean shutdown)
#   scripts/localnet.sh start I   start replica I again (it rejoins)
#   scripts/localnet.sh down      stop every replica
#
# Logs: localnet/logs/replica-I.log; pid files: localnet/logs/replica-I.pid.
# Only processes recorded in those pid files are ever signalled.
# Environment: PBFT_LOCALNET (directory, default ./localnet),
# PBFT_BASE_PORT (default 26000), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

NET="${PBFT_LOCALNET:-$PWD/localnet}"
BASE_PORT="${PBFT_BASE_PORT:-26000}"
REPLICAS=4
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
BIN="$CARGO_TARGET_DIR/release"
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=10

die() { echo "error: $*" >&2; exit 1; }

pidfile() { echo "$NET/logs/replica-$1.pid"; }
logfile() { echo "$NET/logs/replica-$1.log"; }

check_index() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -lt "$REPLICAS" ] || die "replica index must be 0..$((REPLICAS - 1))"
  [ -d "$NET/replica-$1" ] || die "$NET/replica-$1 does not exist; run '$0 up' first"
}

# The pid of replica I if the process recorded in its pid file is still a
# pbft-replica (a recycled pid is not ours), else nothing.
running_pid() {
  local f pid
  f="$(pidfile "$1")"
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q pbft-replica; then
    echo "$pid"
  fi
}

build() {
  # shellcheck source=lib/prereqs.sh
  source scripts/lib/prereqs.sh
  ensure_build_prereqs
  echo "== building (release) into $CARGO_TARGET_DIR"
  cargo build --release --bins
}

start_one() {
  local i=$1 pid log offset
  pid="$(running_pid "$i")"
  if [ -n "$pid" ]; then
    echo "replica $i already running (pid $pid)"
    return 0
  fi
  [ -x "$BIN/pbft-replica" ] || die "$BIN/pbft-replica not built; run '$0 up'"
  mkdir -p "$NET/logs"
  log="$(logfile "$i")"
  touch "$log"
  offset=$(stat -c %s "$log")
  nohup "$BIN/pbft-replica" start --home "$NET/replica-$i" >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$(pidfile "$i")"
  # Wait for this run's ready line (the log is appended across restarts).
  local waited=0
  until tail -c +$((offset + 1)) "$log" | grep -qE 'event="ready"|"event":"ready"'; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$(pidfile "$i")"
      echo "replica $i exited during start-up; last log lines:" >&2
      tail -n 5 "$log" >&2
      exit 1
    fi
    if [ "$waited" -ge $((READY_TIMEOUT_S * 10)) ]; then
      die "replica $i not ready after ${READY_TIMEOUT_S}s (see $log)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "replica $i ready (pid $pid, log $log)"
}

stop_one() {
  local i=$1 pid waited=0
  pid="$(running_pid "$i")"
  if [ -z "$pid" ]; then
    rm -f "$(pidfile "$i")"
    echo "replica $i not running"
    return 0
  fi
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((STOP_TIMEOUT_S * 10)) ]; then
      echo "replica $i did not stop within ${STOP_TIMEOUT_S}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$(pidfile "$i")"
  echo "replica $i stopped"
}

# The operations endpoint (ip:port) of replica I, from its config.toml's
# [ops] listen (testnet writes it); nothing if it is disabled or absent.
ops_addr() {
  sed -n '/^\[ops\]/,/^\[/p' "$NET/replica-$1/config.toml" |
    sed -n 's/^listen = "\(.*\)"$/\1/p' | head -n 1
}

# Waits (at most 15 s, never fatal) until every replica's /readyz answers
# 200 (connected to 2f peers, not in a long view change, not catching up),
# so the first transfer does not race the mesh's reconnect backoff.
wait_ready() {
  local n=0 i ready
  while [ "$n" -lt 150 ]; do
    ready=0
    for i in $(seq 0 $((REPLICAS - 1))); do
      if "$BIN/pbft-replica" probe --home "$NET/replica-$i" --ready --timeout-ms 1000 >/dev/null 2>&1; then
        ready=$((ready + 1))
      fi
    done
    if [ "$ready" = "$REPLICAS" ]; then
      echo "all replicas ready"
      return 0
    fi
    sleep 0.1
    n=$((n + 1))
  done
  echo "warning: not every replica is ready yet (see '$0 status')" >&2
}

urls() {
  local i addr
  echo
  for i in $(seq 0 $((REPLICAS - 1))); do
    addr="$(ops_addr "$i")"
    if [ -n "$addr" ]; then
      echo "replica $i  dashboard http://$addr/   metrics http://$addr/metrics"
    else
      echo "replica $i  operations endpoint disabled"
    fi
  done
  if [ -f "$NET/prometheus.yml" ]; then
    echo "Prometheus: prometheus --config.file=$(realpath --relative-to="$PWD" "$NET")/prometheus.yml"
  fi
}

examples() {
  local c="$BIN/pbft-client" rel
  rel="$(realpath --relative-to="$PWD" "$NET")"
  cat <<EOF

The network is up. Try (the client accounts are funded in genesis):

  $c --network $rel status
  $c --network $rel balance \$(cat $rel/clients/client-1.pub)
  $c --network $rel --key $rel/clients/client-0.key \\
      transfer --to \$(cat $rel/clients/client-1.pub) --amount 25
  $c --network $rel tx <tx hash printed by transfer>
  $c --network $rel block 1

  $0 stop 0     # stop the primary of view 0; transfers continue after a view change
  $0 start 0    # it restarts and catches up
  $0 down       # stop everything (state is kept in $rel; delete it to start afresh)
EOF
}

cmd="${1:-}"
case "$cmd" in
  up)
    build
    if [ -f "$NET/genesis.json" ]; then
      echo "== using the existing testnet in $NET"
    else
      echo "== generating a $REPLICAS-replica testnet in $NET"
      "$BIN/pbft-replica" testnet --replicas "$REPLICAS" --out "$NET" --base-port "$BASE_PORT"
    fi
    for i in $(seq 0 $((REPLICAS - 1))); do start_one "$i"; done
    wait_ready
    urls
    examples
    ;;
  down)
    [ -d "$NET" ] || { echo "no localnet at $NET"; exit 0; }
    for i in $(seq 0 $((REPLICAS - 1))); do stop_one "$i"; done
    ;;
  status)
    [ -d "$NET" ] || die "no localnet at $NET; run '$0 up'"
    any=0
    for i in $(seq 0 $((REPLICAS - 1))); do
      pid="$(running_pid "$i")"
      if [ -n "$pid" ]; then
        echo "replica $i  running (pid $pid)  ops http://$(ops_addr "$i")/  readyz $("$BIN/pbft-replica" probe --home "$NET/replica-$i" --ready 2>/dev/null | head -n 1 || true)"
        any=1
      else
        echo "replica $i  stopped"
      fi
    done
    if [ "$any" = 1 ] && [ -x "$BIN/pbft-client" ]; then
      echo
      "$BIN/pbft-client" --network "$NET" --timeout-ms 3000 status || true
    fi
    ;;
  stop)
    check_index "${2:-}"
    stop_one "$2"
    ;;
  start)
    check_index "${2:-}"
    start_one "$2"
    ;;
  *)
    echo "usage: $0 up|down|status|stop I|start I" >&2
    exit 2
    ;;
esac
