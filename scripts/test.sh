#!/usr/bin/env bash
# Runs every check CI runs: installs what a fresh Debian machine lacks, then
# formatting, clippy with -D warnings, and the whole test suite (release build,
# so the crypto in simulation campaigns runs at real speed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/prereqs.sh
ensure_build_prereqs

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --release --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo clippy --release --all-targets --features byzantine -- -D warnings"
cargo clippy --release --all-targets --features byzantine -- -D warnings
echo "== cargo test --release"
cargo test --release --all-targets -- --test-threads=2
echo "== all checks passed"
