#!/usr/bin/env bash
# Builds the replica's container image offline (no registry is needed):
# FROM scratch with the release binaries (debug info stripped), exactly the
# shared libraries `ldd` lists for them, the dynamic loader, an /etc/passwd
# naming the unprivileged user `replica` (uid 10001) and its home.
#
#   scripts/image.sh [--tag T] [--bin-dir DIR]
#
#   --tag T        image tag (default pbft-ledger:latest)
#   --bin-dir DIR  where pbft-replica and pbft-client are
#                  (default $CARGO_TARGET_DIR/release, else
#                  /var/tmp/pbft-ledger-target/release); build them first with
#                  `cargo build --release --bins`
#
# Layout inside the image:
#   /usr/local/bin/pbft-replica, /usr/local/bin/pbft-client
#   /home/replica                 the home (--home): mount config.toml,
#                                 genesis.json and node.key (mode 0600, owned
#                                 by uid 10001) here
#   /home/replica/data            a volume (RocksDB), owned by uid 10001
# The entrypoint is `pbft-replica start --home /home/replica`; the replica
# is PID 1 and handles SIGTERM itself (a clean stop). HEALTHCHECK runs
# `pbft-replica probe` against the home's ops.listen (/healthz).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=pbft-ledger:latest
BIN_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}/release"
UID_REPLICA=10001

die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; TAG="$2"; shift 2 ;;
    --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: $0 [--tag T] [--bin-dir DIR])" ;;
  esac
done

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, may this user use it?)"
for b in pbft-replica pbft-client; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found; build it (cargo build --release --bins) or pass --bin-dir"
done

CTX="$(mktemp -d "${TMPDIR:-/tmp}/pbft-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
ROOT="$CTX/root"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc" "$ROOT/tmp"

# Copies (not links) taken now: the binaries may be rebuilt meanwhile.
for b in pbft-replica pbft-client; do
  cp "$BIN_DIR/$b" "$CTX/$b.full"
  strip --strip-debug -o "$ROOT/usr/local/bin/$b" "$CTX/$b.full"
  rm "$CTX/$b.full"
done

# Every library ldd resolves, and the loader, at the paths the binaries name.
libs="$(ldd "$ROOT/usr/local/bin/pbft-replica" "$ROOT/usr/local/bin/pbft-client" |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u)"
[ -n "$libs" ] || die "ldd listed no libraries (are the binaries dynamically linked ELF files?)"
if ldd "$ROOT/usr/local/bin/pbft-replica" "$ROOT/usr/local/bin/pbft-client" | grep -q 'not found'; then
  die "ldd cannot resolve every library of the binaries"
fi
for lib in $libs; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done

cat >"$ROOT/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
replica:x:$UID_REPLICA:$UID_REPLICA:pbft replica:/home/replica:/sbin/nologin
PASSWD
cat >"$ROOT/etc/group" <<GROUP
root:x:0:
replica:x:$UID_REPLICA:
GROUP
chmod 1777 "$ROOT/tmp"
mkdir -p "$CTX/home/replica/data"

cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM scratch
COPY root/ /
COPY --chown=$UID_REPLICA:$UID_REPLICA home/ /home/
USER $UID_REPLICA:$UID_REPLICA
WORKDIR /home/replica
VOLUME /home/replica/data
ENV PBFT_HOME=/home/replica
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \\
  CMD ["/usr/local/bin/pbft-replica", "probe", "--home", "/home/replica", "--timeout-ms", "2000"]
ENTRYPOINT ["/usr/local/bin/pbft-replica", "start", "--home", "/home/replica"]
LABEL org.opencontainers.image.title="pbft-ledger replica"
DOCKERFILE

echo "== building $TAG from $BIN_DIR"
docker build --quiet -t "$TAG" "$CTX" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$TAG")
echo "built $TAG: $((size / 1024 / 1024)) MiB ($size bytes)"
echo "libraries: $(echo "$libs" | tr '\n' ' ')"
