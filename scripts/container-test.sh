#!/usr/bin/env bash
# The replicas on real containers: builds the image, starts the Compose
# network (scripts/composenet.sh) under a project, subnet and host ports of
# its own, and checks with the host's pbft-client that
#   1. transfers commit, and every replica's published operations port answers;
#   2. after `docker kill` of the primary the survivors commit (a view change),
#      and the killed replica restarts from its volume and catches up;
#   3. after `docker network disconnect` of a backup the others commit, and
#      once reconnected it catches up without a restart;
#   4. after `docker pause` of the primary the others commit, and once
#      unpaused it catches up;
#   5. `composenet.sh down` (volumes kept) and `up` keep the chain;
# that all four replicas hold the same chain, the genesis supply, and every
# acknowledged transfer; and finally
#   6. bad input and faults (scripts/container-bad-input.sh, on the same
#      image): a missing or another replica's key, a store of another
#      network, a malformed config.toml exit with the documented code and a
#      clear log line, and restart loops leave the store intact.
#
#   scripts/container-test.sh [--bin-dir DIR]
#
# Needs a Docker engine, docker-compose, jq and the release binaries
# ($CARGO_TARGET_DIR/release, default /var/tmp/pbft-ledger-target/release).
# Without Docker it fails (exit 1) saying so; it never skips. Every wait is
# bounded; the whole run is limited to PBFT_CONTAINER_TEST_TIMEOUT_S (default
# 600). Whatever happens, it removes the containers, network, volumes, image
# tag and directory it created (by their names), and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

BIN_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}/release"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) [ $# -ge 2 ] || { echo "error: --bin-dir needs a value" >&2; exit 2; }; BIN_DIR="$2"; shift 2 ;;
    *) echo "usage: $0 [--bin-dir DIR]" >&2; exit 2 ;;
  esac
done
BIN_DIR="$(realpath "$BIN_DIR")"
LIMIT_S="${PBFT_CONTAINER_TEST_TIMEOUT_S:-600}"
T0=$(date +%s)

# fail, step, remaining, bounded (they use LIMIT_S and T0).
# shellcheck source=scripts/lib/bounded.sh
source scripts/lib/bounded.sh

command -v docker >/dev/null || fail "docker is not installed; this test needs a Docker engine"
command -v docker-compose >/dev/null || fail "docker-compose is not installed; this test needs it"
command -v jq >/dev/null || fail "jq is not installed; this test needs it"
timeout 20 docker info >/dev/null 2>&1 || fail "cannot reach the Docker engine (is dockerd running, may this user use it?)"
for b in pbft-replica pbft-client; do
  [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b not found; build with 'cargo build --release --bins'"
done
# Snapshot the binaries: they may be rebuilt while the test runs.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pbft-container-test.XXXXXX")"
chmod 0755 "$WORK"
mkdir "$WORK/bin"
cp "$BIN_DIR/pbft-replica" "$BIN_DIR/pbft-client" "$WORK/bin/"
CLIENT="$WORK/bin/pbft-client"

RUN="ct$$$(date +%s | tail -c 5)"
export PBFT_PROJECT="pbft-$RUN"
export PBFT_IMAGE="pbft-ledger:$RUN"
export PBFT_COMPOSENET="$WORK/net"
export CARGO_TARGET_DIR="$WORK/target"   # composenet finds the snapshot here
mkdir -p "$CARGO_TARGET_DIR" && ln -s "$WORK/bin" "$CARGO_TARGET_DIR/release"

# A /24 no Docker network uses yet, and host ports from a random prefix.
used_subnets="$(docker network ls -q | xargs -r docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}')"
PBFT_SUBNET_PREFIX=""
for _ in $(seq 1 20); do
  candidate="172.29.$((RANDOM % 256))"
  if ! grep -q "$candidate\." <<<"$used_subnets"; then PBFT_SUBNET_PREFIX="$candidate"; break; fi
done
[ -n "$PBFT_SUBNET_PREFIX" ] || fail "found no free /24 in 172.29.0.0/16 for the test network"
export PBFT_SUBNET_PREFIX
export PBFT_HOST_PORT_PREFIX=$((300 + RANDOM % 300))

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    echo "-- last log lines of each replica:" >&2
    for i in 0 1 2 3; do
      echo "-- $PBFT_PROJECT-replica-$i" >&2
      timeout 20 docker logs --tail 15 "$PBFT_PROJECT-replica-$i" 2>&1 | sed 's/^/   /' >&2
    done
  fi
  if [ -f "$PBFT_COMPOSENET/compose.env" ]; then
    # Unpause first: a paused container cannot be stopped.
    for i in 0 1 2 3; do docker unpause "$PBFT_PROJECT-replica-$i" >/dev/null 2>&1; done
    timeout 120 scripts/composenet.sh down -v >/dev/null 2>&1 ||
      echo "warning: 'composenet.sh down -v' failed for project $PBFT_PROJECT; remove its containers by hand" >&2
  fi
  docker image rm "$PBFT_IMAGE" >/dev/null 2>&1
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then echo "PASS ($(($(date +%s) - T0))s)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM


NET="$PBFT_COMPOSENET"
BOB=""
SENT=0    # sum of acknowledged amounts to BOB
TXS=()    # acknowledged transaction hashes

status_json() { bounded 15 "$CLIENT" --network "$NET" --timeout-ms 2000 --output json status 2>/dev/null || true; }

transfer() {
  local amount=$1 out
  out="$(bounded 40 "$CLIENT" --network "$NET" --timeout-ms 30000 --output json \
    --key "$NET/clients/client-0.key" transfer --to "$BOB" --amount "$amount")" ||
    fail "transfer of $amount did not commit: $out"
  [ "$(jq -r .receipt <<<"$out")" = ok ] || fail "transfer of $amount: receipt $(jq -r .receipt <<<"$out")"
  SENT=$((SENT + amount))
  TXS+=("$(jq -r .tx_id <<<"$out")")
  echo "   committed $amount at height $(jq -r .height <<<"$out") (replicas $(jq -c .replicas <<<"$out"))"
}

# Waits at most S s until every replica in LIST answers with the same height
# and tip, at least MIN.
wait_converged() {
  local s=$1 min=$2 list=$3 deadline j
  deadline=$(($(date +%s) + s))
  while true; do
    j="$(status_json)"
    if [ -n "$j" ] && jq -e --argjson list "[$list]" --argjson min "$min" '
        [.replicas[] | select(.replica as $r | $list | index($r))] as $rows
        | ($rows | length) == ($list | length)
          and all($rows[]; .reachable and .height >= $min)
          and ([$rows[] | .height] | unique | length) == 1
          and ([$rows[] | .block_hash] | unique | length) == 1' <<<"$j" >/dev/null; then
      echo "   replicas $list at height $(jq '[.replicas[] | .height // empty] | max' <<<"$j")"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$j" | jq -c '.replicas[] | {replica, reachable, height, view, error}' >&2 || true
      fail "replicas $list did not converge at a height >= $min within ${s}s"
    fi
    remaining >/dev/null
    sleep 0.5
  done
}

max_height() { status_json | jq '[.replicas[] | .height // 0] | max'; }
primary() { status_json | jq '[.replicas[] | select(.reachable) | .primary] | max'; }
started_at() { docker inspect -f '{{.State.StartedAt}}' "$PBFT_PROJECT-replica-$1"; }

step "building image $PBFT_IMAGE"
bounded 300 scripts/image.sh --tag "$PBFT_IMAGE" --bin-dir "$WORK/bin"

step "composenet up (project $PBFT_PROJECT, subnet $PBFT_SUBNET_PREFIX.0/24, host ports ${PBFT_HOST_PORT_PREFIX}I1/I2)"
bounded 180 scripts/composenet.sh up
BOB="$(cat "$NET/clients/client-1.pub")"

step "published operations ports answer /readyz on 127.0.0.1"
for i in 0 1 2 3; do
  bounded 10 "$WORK/bin/pbft-replica" probe --addr "127.0.0.1:${PBFT_HOST_PORT_PREFIX}${i}2" --ready --timeout-ms 3000 >/dev/null ||
    fail "replica $i's published operations port 127.0.0.1:${PBFT_HOST_PORT_PREFIX}${i}2 is not ready"
done
for i in 0 1 2 3; do
  [ "$(docker inspect -f '{{.Config.User}}' "$PBFT_PROJECT-replica-$i")" = "10001:10001" ] ||
    fail "replica $i does not run as uid 10001"
done

step "transfers commit through the Compose network"
for a in 1 2 3; do transfer "$a"; done
wait_converged 30 3 "0,1,2,3"

P="$(primary)"
[[ "$P" =~ ^[0-9]+$ ]] || fail "no replica reported its primary"
step "docker kill of the primary (replica $P)"
[ "$P" = 0 ] || fail "expected replica 0 to be the primary of view 0, got $P"
h="$(max_height)"
bounded 30 scripts/composenet.sh kill 0
sleep 2
[ "$(docker inspect -f '{{.State.Running}}' "$PBFT_PROJECT-replica-0")" = false ] ||
  fail "replica 0 is running again after docker kill (restart policy?)"
transfer 4
transfer 5
j="$(status_json)"
jq -e '[.replicas[] | select(.reachable) | .view] | min > 0' <<<"$j" >/dev/null ||
  fail "the survivors committed without a view change: $(jq -c '[.replicas[] | {replica, view}]' <<<"$j")"
wait_converged 30 $((h + 2)) "1,2,3"

step "replica 0 restarts from its volume and catches up"
bounded 30 scripts/composenet.sh start 0
h="$(max_height)"
wait_converged 60 "$h" "0,1,2,3"
transfer 6
wait_converged 30 $((h + 1)) "0,1,2,3"

P="$(primary)"
[[ "$P" =~ ^[0-9]+$ ]] || fail "no replica reported its primary"
B=$(((P + 2) % 4))
step "docker network disconnect of backup $B (primary is $P)"
started="$(started_at "$B")"
h="$(max_height)"
bounded 30 scripts/composenet.sh partition "$B"
transfer 7
transfer 8
others="$(for i in 0 1 2 3; do [ "$i" = "$B" ] || printf '%s,' "$i"; done)"
wait_converged 30 $((h + 2)) "${others%,}"
j="$(status_json)"
jq -e --argjson b "$B" '.replicas[$b].reachable | not' <<<"$j" >/dev/null ||
  fail "replica $B is still reachable while disconnected"

step "reconnect backup $B: it catches up without a restart"
bounded 30 scripts/composenet.sh heal "$B"
wait_converged 90 $((h + 2)) "0,1,2,3"
[ "$(started_at "$B")" = "$started" ] || fail "replica $B was restarted during the partition"

P="$(primary)"
[[ "$P" =~ ^[0-9]+$ ]] || fail "no replica reported its primary"
step "docker pause of the primary (replica $P)"
h="$(max_height)"
bounded 30 scripts/composenet.sh pause "$P"
transfer 9
others="$(for i in 0 1 2 3; do [ "$i" = "$P" ] || printf '%s,' "$i"; done)"
wait_converged 30 $((h + 1)) "${others%,}"
bounded 30 scripts/composenet.sh unpause "$P"
wait_converged 90 $((h + 1)) "0,1,2,3"

step "whole-network restart (composenet down, keeping the volumes; up) keeps the chain"
h="$(max_height)"
tip="$(status_json | jq -r '.replicas[0].block_hash')"
# The view record (written once a replica entered a view above 0: the
# primary was replaced above) must live on the home-I volume, not in the
# container's own layer, which every `up` that recreates it throws away.
record() { timeout 20 docker cp "$PBFT_PROJECT-replica-$1:/home/replica/view-record" - 2>/dev/null | tar -xO 2>/dev/null | od -An -tx1 | tr -d ' \n'; }
rec_before="$(record 1)"
[ -n "$rec_before" ] || fail "replica 1 has no view record after a view change"
if timeout 20 docker diff "$PBFT_PROJECT-replica-1" | grep -q 'view-record'; then
  fail "replica 1's view record is in the container's layer, not on a volume: recreating the container loses it"
fi
bounded 120 scripts/composenet.sh down
bounded 180 scripts/composenet.sh up >/dev/null
wait_converged 60 "$h" "0,1,2,3"
[ -n "$(record 1)" ] || fail "replica 1's view record did not survive the containers being recreated"
[ "$(status_json | jq -r --argjson h "$h" 'if .replicas[0].height == $h then .replicas[0].block_hash else "moved" end')" = "$tip" ] ||
  fail "after the restart the tip at height $h is not the one before it"
transfer 10
wait_converged 30 $((h + 1)) "0,1,2,3"

step "all four hold the same chain, the genesis supply and every acknowledged transfer"
wait_converged 30 "${#TXS[@]}" "0,1,2,3"
bal() {
  bounded 20 "$CLIENT" --network "$NET" --timeout-ms 10000 --output json balance "$1" | jq -r .balance
}
ALICE="$(cat "$NET/clients/client-0.pub")"
b_bob="$(bal "$BOB")"
b_alice="$(bal "$ALICE")"
[ "$b_bob" = $((1000000 + SENT)) ] || fail "client-1 holds $b_bob, expected $((1000000 + SENT))"
[ $((b_alice + b_bob)) = 2000000 ] || fail "the supply is $((b_alice + b_bob)), expected 2000000"
for tx in "${TXS[@]}"; do
  out="$(bounded 20 "$CLIENT" --network "$NET" --timeout-ms 10000 --output json tx "$tx")" ||
    fail "acknowledged transaction $tx is not in the chain: $out"
  [ "$(jq -r .receipt <<<"$out")" = ok ] || fail "transaction $tx: receipt $(jq -r .receipt <<<"$out")"
done
echo "   ${#TXS[@]} transfers, $SENT units moved, supply 2000000"

step "bad input and faults: scripts/container-bad-input.sh on image $PBFT_IMAGE"
left=$(remaining)
PBFT_BAD_INPUT_TIMEOUT_S=$((left < 180 ? left : 180)) \
  bounded 180 scripts/container-bad-input.sh --image "$PBFT_IMAGE" --bin-dir "$WORK/bin" ||
  fail "scripts/container-bad-input.sh failed"
