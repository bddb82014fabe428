#!/usr/bin/env bash
# Bad input and faults on real containers (issue 20): the image started with
# `docker run` (no network: --network none) on a store that holds a chain,
# as Compose starts it (config.toml, genesis.json and node.key mounted
# read-only into /home/replica, the data directory at /home/replica/data;
# here a host directory owned by uid 10001, so its files can be compared).
# For each case it checks the container's exit code (README, "Exit codes";
# src/exit.rs) and that its log names the problem:
#   a. no node.key mounted; the key's host file missing (Docker mounts an
#      empty directory in its place); a key uid 10001 cannot read    -> 3
#   b. another replica's key on replica 1's data directory           -> 4
#   c. a data directory of another network (testnet A's store started
#      with testnet B's genesis and key)                             -> 4
#   d. a malformed config.toml (the line names the file and key)     -> 3
# A refused start never changes the store: after a config error (3) the
# data directory is byte-identical; after a store refusal (4) its table
# files (*.sst) are, and so is its chain (`pbft-replica inspect --blocks`)
# (the store is refused after RocksDB opened it, which writes a new
# MANIFEST, OPTIONS, LOG and an empty write-ahead log). Then the crash loop
# of a restart policy:
#   e. a config error under `--restart unless-stopped` (what Compose does)
#      restarts with Docker's back-off, `docker ps` shows Restarting, and
#      the data directory stays byte-identical; a store refusal under
#      `--restart on-failure:3` exits 4 four times and keeps every record;
#      then a good start opens the store, is healthy, stops cleanly (exit 0)
#      and holds the same chain, with every acknowledged transfer.
# The chain is made first by four replicas of testnet A run as processes on
# this machine (loopback ports from a random base), with two transfers.
#
#   scripts/container-bad-input.sh [--bin-dir DIR] [--image TAG]
#
#   --bin-dir DIR  release binaries (default $CARGO_TARGET_DIR/release, else
#                  /var/tmp/pbft-ledger-target/release)
#   --image TAG    use this image (scripts/image.sh) instead of building
#                  pbft-ledger:pbftbad-RUN from the binaries (and removing it)
#
# Needs a Docker engine, jq, and root or sudo (files are given to uid
# 10001). Without Docker it fails (exit 1); it never skips. Every wait is
# bounded; the whole run is limited to PBFT_BAD_INPUT_TIMEOUT_S (default
# 180). Whatever happens it removes the containers, image tag, processes
# and directory it created (names start with pbftbad), and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}/release"
IMAGE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) [ $# -ge 2 ] || { echo "error: --bin-dir needs a value" >&2; exit 2; }; BIN_DIR="$2"; shift 2 ;;
    --image) [ $# -ge 2 ] || { echo "error: --image needs a value" >&2; exit 2; }; IMAGE="$2"; shift 2 ;;
    *) echo "usage: $0 [--bin-dir DIR] [--image TAG]" >&2; exit 2 ;;
  esac
done
BIN_DIR="$(realpath "$BIN_DIR")"
LIMIT_S="${PBFT_BAD_INPUT_TIMEOUT_S:-180}"
T0=$(date +%s)
UID_REPLICA=10001
# The documented exit codes (src/exit.rs).
EXIT_CONFIG=3
EXIT_STORAGE=4

# fail, step, remaining, bounded (they use LIMIT_S and T0).
# shellcheck source=scripts/lib/bounded.sh
source scripts/lib/bounded.sh

command -v docker >/dev/null || fail "docker is not installed; this test needs a Docker engine"
command -v jq >/dev/null || fail "jq is not installed; this test needs it"
timeout 20 docker info >/dev/null 2>&1 || fail "cannot reach the Docker engine (is dockerd running, may this user use it?)"
for b in pbft-replica pbft-client; do
  [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b not found; build with 'cargo build --release --bins'"
done
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
as_root true 2>/dev/null || fail "this test gives files to uid $UID_REPLICA: run it as root or with password-less sudo"

RUN="pbftbad-$$-$(date +%s | tail -c 5)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/$RUN.XXXXXX")"
chmod 0755 "$WORK"
mkdir "$WORK/bin" "$WORK/logs"
cp "$BIN_DIR/pbft-replica" "$BIN_DIR/pbft-client" "$WORK/bin/"
REPLICA="$WORK/bin/pbft-replica"
CLIENT="$WORK/bin/pbft-client"
OWN_IMAGE=""
if [ -z "$IMAGE" ]; then
  IMAGE="pbft-ledger:$RUN"
  OWN_IMAGE="$IMAGE"
fi
CONTAINERS=()
PIDS=()

cleanup() {
  local rc=$? c p
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
  for c in "${CONTAINERS[@]}"; do timeout 30 docker rm -f "$c" >/dev/null 2>&1; done
  [ -z "$OWN_IMAGE" ] || timeout 30 docker image rm "$OWN_IMAGE" >/dev/null 2>&1
  as_root rm -rf "$WORK"
  if [ "$rc" = 0 ]; then echo "PASS ($(($(date +%s) - T0))s)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

if [ -n "$OWN_IMAGE" ]; then
  step "building image $IMAGE"
  bounded 300 scripts/image.sh --tag "$IMAGE" --bin-dir "$WORK/bin" >/dev/null
else
  docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "image $IMAGE does not exist"
fi

# Two testnets, A and B. A's base port: a free block of loopback ports.
base=""
for _ in $(seq 1 20); do
  candidate=$((40000 + 100 * (RANDOM % 200)))
  if ! ss -Hlntu | awk '{print $5}' | grep -Eq ":$((candidate / 100))[0-9]{2}\$"; then base=$candidate; break; fi
done
[ -n "$base" ] || fail "found no free block of 100 loopback ports in 40000-59999"
"$REPLICA" testnet --replicas 4 --out "$WORK/netA" --base-port "$base" --chain-id pbftbad-a >/dev/null
"$REPLICA" testnet --replicas 4 --out "$WORK/netB" --base-port "$base" --chain-id pbftbad-b >/dev/null

step "a chain for testnet A: four replicas on 127.0.0.1:$base.., two transfers"
for i in 0 1 2 3; do
  "$REPLICA" start --home "$WORK/netA/replica-$i" >"$WORK/logs/replica-$i.log" 2>&1 &
  PIDS+=("$!")
done
for i in 0 1 2 3; do
  deadline=$(($(date +%s) + 30))
  until "$REPLICA" probe --home "$WORK/netA/replica-$i" --ready --timeout-ms 1000 >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "replica $i of testnet A not ready in 30s: $(tail -n 5 "$WORK/logs/replica-$i.log")"
    kill -0 "${PIDS[$i]}" 2>/dev/null || fail "replica $i of testnet A exited: $(tail -n 5 "$WORK/logs/replica-$i.log")"
    sleep 0.2
  done
done
BOB="$(cat "$WORK/netA/clients/client-1.pub")"
TXS=()
for amount in 7 11; do
  out="$(bounded 40 "$CLIENT" --network "$WORK/netA" --timeout-ms 30000 --output json \
    --key "$WORK/netA/clients/client-0.key" transfer --to "$BOB" --amount "$amount")" ||
    fail "transfer of $amount did not commit: $out"
  [ "$(jq -r .receipt <<<"$out")" = ok ] || fail "transfer of $amount: receipt $(jq -r .receipt <<<"$out")"
  TXS+=("$(jq -r .tx_id <<<"$out")")
  echo "   committed $amount at height $(jq -r .height <<<"$out")"
done
# Replica 1 must hold both blocks before it stops: its store is the one used.
deadline=$(($(date +%s) + 20))
until [ "$("$CLIENT" --network "$WORK/netA" --timeout-ms 2000 --output json status 2>/dev/null |
  jq '.replicas[1].height // 0')" -ge 2 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "replica 1 of testnet A did not reach height 2 in 20s"
  sleep 0.2
done
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
for i in 0 1 2 3; do
  rc=0
  timeout 15 tail --pid="${PIDS[$i]}" -f /dev/null || fail "replica $i of testnet A did not stop within 15s of SIGTERM"
  wait "${PIDS[$i]}" || rc=$?
  [ "$rc" = 0 ] || fail "replica $i of testnet A exited $rc on SIGTERM, expected 0: $(tail -n 5 "$WORK/logs/replica-$i.log")"
done
PIDS=()

# Homes as Compose mounts them: files readable by everyone, the key and the
# data directory owned by uid 10001.
as_root chown -R "$UID_REPLICA:$UID_REPLICA" "$WORK/netA/replica-1/data"
for net in netA netB; do
  for i in 0 1 2 3; do
    chmod 0755 "$WORK/$net/replica-$i"
    chmod 0644 "$WORK/$net/replica-$i/config.toml" "$WORK/$net/replica-$i/genesis.json"
    as_root chown "$UID_REPLICA:$UID_REPLICA" "$WORK/$net/replica-$i/node.key"
  done
done
chmod 0755 "$WORK/netA" "$WORK/netB"

# A copy of replica 1's store (owner and modes kept) for case NAME.
data_copy() {
  as_root cp -a "$WORK/netA/replica-1/data" "$WORK/data-$1"
  echo "$WORK/data-$1"
}
# Every file of a data directory (or only those named NAME, a find -name
# pattern): path, mode, owner, size and sha256.
listing() {
  local pattern=${2:-*}
  (cd "$1" && as_root find . -type f -name "$pattern" -printf '%p %m %U %s\n' | sort &&
    as_root find . -type f -name "$pattern" -print0 | sort -z | as_root xargs -0 -r sha256sum)
}
# The table files of a store (its records), which a refused open must leave
# as they are; RocksDB's open itself writes a new MANIFEST, OPTIONS, LOG and
# an empty write-ahead log.
tables() {
  local t
  t="$(listing "$1" '*.sst')"
  [ -n "$t" ] || fail "no table files (*.sst) in $1"
  echo "$t"
}
# The mounts of a home: config, genesis and key as files of DIR (each may be
# overridden: config= genesis= key= none), data directory DATA.
mounts() {
  local data=$2 config=${3:-$1/config.toml} genesis=${4:-$1/genesis.json} key=${5:-$1/node.key}
  printf '%s\n' -v "$config:/home/replica/config.toml:ro" -v "$genesis:/home/replica/genesis.json:ro"
  [ "$key" = none ] || printf '%s\n' -v "$key:/home/replica/node.key:ro"
  printf '%s\n' -v "$data:/home/replica/data"
}
# The chain in a store, read by `pbft-replica inspect --blocks` in a
# throwaway container as uid 10001 (its view line left out: a replica may
# enter a view without a block).
chain() {
  local data=$1 name="$RUN-inspect-$RANDOM" out
  local -a m
  mapfile -t m < <(mounts "$WORK/netA/replica-1" "$data")
  CONTAINERS+=("$name")
  out="$(bounded 30 docker run --name "$name" --network none "${m[@]}" \
    --entrypoint /usr/local/bin/pbft-replica "$IMAGE" inspect --home /home/replica --blocks 2>&1)" ||
    fail "inspect of $data failed: $out"
  bounded 30 docker rm -f "$name" >/dev/null
  grep -v '^view ' <<<"$out"
}

# Starts the image as container NAME with the given docker run arguments
# (mounts, restart policy), waits at most S s for it to exit for good, and
# checks its exit code is CODE and its log has a line matching PATTERN
# (grep -E). Prints the line.
expect_exit() {
  local case=$1 name="$RUN-$1" code=$2 pattern=$3 s=$4 got logs
  shift 4
  CONTAINERS+=("$name")
  bounded 30 docker run -d --name "$name" --network none "$@" "$IMAGE" >/dev/null
  got="$(bounded "$s" docker wait "$name")" || fail "$case: container $name did not exit within ${s}s"
  logs="$(bounded 20 docker logs "$name" 2>&1)"
  [ "$got" = "$code" ] || fail "$case: exit code $got, expected $code; log:
$logs"
  grep -Eq "$pattern" <<<"$logs" || fail "$case: no log line matching /$pattern/; log:
$logs"
  echo "   $case: exit $got: $(grep -E "$pattern" <<<"$logs" | head -n 1)"
}

A1="$WORK/netA/replica-1"
A2="$WORK/netA/replica-2"
B1="$WORK/netB/replica-1"
CHAIN0="$(chain "$WORK/netA/replica-1/data")"
grep -q '^height  *2$' <<<"$CHAIN0" || fail "replica 1's store is not at height 2:
$CHAIN0"
echo "   replica 1's store: $(grep -E '^(height|block_hash)' <<<"$CHAIN0" | tr -s ' ' | paste -sd ' ')"

step "a. the key: not mounted, its host file missing, unreadable by uid $UID_REPLICA -> exit $EXIT_CONFIG"
data="$(data_copy a)"
before="$(listing "$data")"
mapfile -t m < <(mounts "$A1" "$data" "" "" none)
expect_exit no-key "$EXIT_CONFIG" '^error: key_file: cannot read key file /home/replica/node\.key: No such file' 20 "${m[@]}"
# `-v` of a host path that does not exist (Compose does the same) mounts a
# new empty directory in its place.
mapfile -t m < <(mounts "$A1" "$data" "" "" "$WORK/missing/node.key")
expect_exit key-host-file-missing "$EXIT_CONFIG" '^error: key_file: cannot read key file /home/replica/node\.key: Is a directory' 20 "${m[@]}"
cp "$A1/node.key" "$WORK/root-owned.key"
chmod 0600 "$WORK/root-owned.key"
as_root chown 0:0 "$WORK/root-owned.key"
mapfile -t m < <(mounts "$A1" "$data" "" "" "$WORK/root-owned.key")
expect_exit key-unreadable "$EXIT_CONFIG" '^error: key_file: cannot read key file /home/replica/node\.key: Permission denied' 20 "${m[@]}"
[ "$(listing "$data")" = "$before" ] || fail "a: the data directory changed although the replica refused to start"

step "b. replica 2's key on replica 1's data directory -> exit $EXIT_STORAGE"
data="$(data_copy b)"
before="$(tables "$data")"
mapfile -t m < <(mounts "$A1" "$data" "" "" "$A2/node.key")
expect_exit other-replica-key "$EXIT_STORAGE" \
  '^error: store belongs to replica 1 \(key [0-9a-f]+…\), but this is replica 2 \(key [0-9a-f]+…\); each replica needs its own data directory' 20 "${m[@]}"
[ "$(tables "$data")" = "$before" ] || fail "b: the store's table files changed although the replica refused it"
[ "$(chain "$data")" = "$CHAIN0" ] || fail "b: the store's chain changed although the replica refused it"

step "c. testnet A's data directory under testnet B's genesis and key -> exit $EXIT_STORAGE"
data="$(data_copy c)"
before="$(tables "$data")"
mapfile -t m < <(mounts "$B1" "$data")
expect_exit other-network "$EXIT_STORAGE" \
  '^error: store belongs to network [0-9a-f]{64}, but this genesis is network [0-9a-f]{64}' 20 "${m[@]}"
[ "$(tables "$data")" = "$before" ] || fail "c: the store's table files changed although the replica refused it"
[ "$(chain "$data")" = "$CHAIN0" ] || fail "c: the store's chain changed although the replica refused it"

step "d. a malformed config.toml -> exit $EXIT_CONFIG, naming the file, line and key"
data="$(data_copy d)"
before="$(listing "$data")"
# shellcheck disable=SC2016 # the backquotes are the message's own
BAD_CONFIG_LINE='^error: /home/replica/config\.toml: line [0-9]+: `p2p\.keep_alive_ms`: invalid type'
sed 's/^keep_alive_ms = .*/keep_alive_ms = "soon"/' "$A1/config.toml" >"$WORK/bad-config.toml"
chmod 0644 "$WORK/bad-config.toml"
grep -q '^keep_alive_ms = "soon"$' "$WORK/bad-config.toml" || fail "could not write the malformed config"
mapfile -t m < <(mounts "$A1" "$data" "$WORK/bad-config.toml")
expect_exit bad-config "$EXIT_CONFIG" "$BAD_CONFIG_LINE" 20 "${m[@]}"
[ "$(listing "$data")" = "$before" ] || fail "d: the data directory changed although the replica refused to start"

step "e. crash loops: restarts with Docker's back-off, the store untouched; then a good start"
data="$(data_copy e)"
before="$(listing "$data")"
# A config error under `restart: unless-stopped`, as Compose runs it.
name="$RUN-loop-config"
CONTAINERS+=("$name")
mapfile -t m < <(mounts "$A1" "$data" "$WORK/bad-config.toml")
bounded 30 docker run -d --name "$name" --network none --restart unless-stopped "${m[@]}" "$IMAGE" >/dev/null
deadline=$(($(date +%s) + 20))
seen_restarting=""
while true; do
  state="$(timeout 10 docker inspect -f '{{.RestartCount}} {{.State.Restarting}} {{.State.ExitCode}}' "$name")"
  ps_status="$(timeout 10 docker ps -a --filter "name=^/$name\$" --format '{{.Status}}')"
  case "$ps_status" in Restarting*) seen_restarting="$ps_status" ;; esac
  if [ "${state%% *}" -ge 3 ] && [ -n "$seen_restarting" ]; then break; fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "e: after 20s: restarts, restarting, exit code = $state; docker ps: '$ps_status' (expected Restarting)"
  sleep 0.1
done
# No more restarts: the start under way (or the next, after the back-off)
# is the last one, and exits by itself.
bounded 20 docker update --restart no "$name" >/dev/null
got="$(bounded 20 docker wait "$name")" || fail "e: the looping container did not exit within 20s of 'docker update --restart no'"
[ "$got" = "$EXIT_CONFIG" ] || fail "e: the looping container's last exit code is $got, expected $EXIT_CONFIG"
restarts="$(timeout 10 docker inspect -f '{{.RestartCount}}' "$name")"
lines="$(timeout 20 docker logs "$name" 2>&1 | grep -Ec "$BAD_CONFIG_LINE")" || true
[ "$lines" = $((restarts + 1)) ] || fail "e: $restarts restarts but $lines config error lines (expected one per start)"
echo "   unless-stopped: $restarts restarts, docker ps showed '$seen_restarting', every start exit $got with the same line"
[ "$(listing "$data")" = "$before" ] || fail "e: the data directory changed during the config-error restart loop"
# A store refusal under `--restart on-failure:3`: four starts, each exit 4.
before="$(tables "$data")"
mapfile -t m < <(mounts "$A1" "$data" "" "" "$A2/node.key")
expect_exit loop-other-replica "$EXIT_STORAGE" '^error: store belongs to replica 1 ' 30 --restart on-failure:3 "${m[@]}"
name="$RUN-loop-other-replica"
deadline=$(($(date +%s) + 30))
until [ "$(timeout 10 docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$name")" = "exited 3" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "e: on-failure:3 did not end after 3 restarts: $(timeout 10 docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$name")"
  sleep 0.2
done
lines="$(timeout 20 docker logs "$name" 2>&1 | grep -c '^error: store belongs to replica 1 ')" || true
[ "$lines" = 4 ] || fail "e: expected 4 refusals under on-failure:3, found $lines"
echo "   on-failure:3: 3 restarts, 4 refusals, exit code $(timeout 10 docker inspect -f '{{.State.ExitCode}}' "$name")"
[ "$(tables "$data")" = "$before" ] || fail "e: the store's table files changed during the store-refusal restart loop"
[ "$(chain "$data")" = "$CHAIN0" ] || fail "e: the store's chain changed during the restart loops"
# The right home: it opens the store, is healthy, stops cleanly, same chain.
name="$RUN-good"
CONTAINERS+=("$name")
mapfile -t m < <(mounts "$A1" "$data")
bounded 30 docker run -d --name "$name" --network none "${m[@]}" "$IMAGE" >/dev/null
deadline=$(($(date +%s) + 20))
until timeout 10 docker exec "$name" /usr/local/bin/pbft-replica probe --home /home/replica --timeout-ms 1000 >/dev/null 2>&1; do
  [ "$(timeout 10 docker inspect -f '{{.State.Running}}' "$name")" = true ] ||
    fail "e: the good start exited $(timeout 10 docker inspect -f '{{.State.ExitCode}}' "$name"): $(timeout 20 docker logs --tail 10 "$name" 2>&1)"
  [ "$(date +%s)" -lt "$deadline" ] || fail "e: the good start is not healthy after 20s: $(timeout 20 docker logs --tail 10 "$name" 2>&1)"
  sleep 0.2
done
timeout 20 docker logs "$name" 2>&1 | grep -q 'ready' || fail "e: the good start logged no ready line"
bounded 40 docker stop -t 30 "$name" >/dev/null
got="$(timeout 10 docker inspect -f '{{.State.ExitCode}}' "$name")"
[ "$got" = 0 ] || fail "e: the good start exited $got on docker stop, expected 0: $(timeout 20 docker logs --tail 10 "$name" 2>&1)"
after="$(chain "$data")"
[ "$after" = "$CHAIN0" ] || fail "e: after the restart loops and a good start the chain differs:
before:
$CHAIN0
after:
$after"
echo "   good start: healthy, clean stop (exit 0), chain at $(grep '^height' <<<"$after" | tr -s ' ') unchanged; acknowledged: ${TXS[*]}"
