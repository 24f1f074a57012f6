#!/usr/bin/env bash
# The whole comparison in one command, from anywhere:
#   bash bench/compare/run.sh [OPTIONS]     (options: see --help)
# Builds the harness in release mode into bench/compare/target (its own
# workspace and target dir, never the main crate's), runs every server and
# the load generator over 127.0.0.1, prints the results and writes
# bench/compare/RESULTS.md and its chart bench/compare/RESULTS.svg.
# A short run to try changes: --quick (or BENCH_QUICK=1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="$here/target"
start=$(date +%s)
cargo build --release --manifest-path "$here/Cargo.toml"
export BENCH_BUILD_SECONDS=$(( $(date +%s) - start ))
export BENCH_COMMAND="bash bench/compare/run.sh${*:+ $*}"
exec "$CARGO_TARGET_DIR/release/compare" "$@"
