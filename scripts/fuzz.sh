#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets of tests/fuzz: every decoder of
# outside bytes (replica frames with a round trip, client requests and
# responses, batches, headers, stored blocks, tips), genesis files, and a
# whole node fed arbitrary peer frames.
#
#   scripts/fuzz.sh                      # 10,000,000 inputs per target
#   scripts/fuzz.sh --runs 100000        # the smoke run scripts/test.sh makes
#   scripts/fuzz.sh --runs 0 --seconds 600 decoders   # 10 minutes of one target
#
# cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them. The library is built without RocksDB (feature off),
# so the sanitizer build is minutes. Corpora grow under $FUZZ_CORPUS
# (default /var/tmp/pbft-fuzz-corpus); a crash leaves its input in
# tests/fuzz/artifacts/TARGET and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=10000000
seconds=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(decoders genesis node_input)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/pbft-fuzz-target}"
corpus_root="${FUZZ_CORPUS:-/var/tmp/pbft-fuzz-corpus}"
cd tests/fuzz
echo "== cargo fuzz build (address sanitizer, debug assertions)"
cargo fuzz build --fuzz-dir . 2>&1 | grep -v "^warning: use of deprecated" || true
for t in "${targets[@]}"; do
  mkdir -p "$corpus_root/$t"
  args=(-runs="$runs")
  [ "$seconds" -gt 0 ] && args+=(-max_total_time="$seconds")
  echo "== fuzz $t (${args[*]})"
  start=$(date +%s)
  if ! cargo fuzz run --fuzz-dir . "$t" "$corpus_root/$t" -- "${args[@]}" -print_final_stats=1 \
      > "/tmp/pbft-fuzz-$t.log" 2>&1; then
    tail -40 "/tmp/pbft-fuzz-$t.log" >&2
    echo "error: fuzz target $t failed (input in tests/fuzz/artifacts/$t)" >&2
    exit 1
  fi
  grep -E "^Done|stat::number_of_executed_units|stat::peak_rss_mb" "/tmp/pbft-fuzz-$t.log" || true
  echo "   $t: $(( $(date +%s) - start )) s"
done
