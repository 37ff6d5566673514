#!/usr/bin/env bash
# Benchmark rask-store against the stores a compiler author would pick instead.
#
#   scripts/bench.sh [--n N] [--seed S] [--peers rask,rawfs,sqlite,redb,cacache,git] [--dir DIR]
#
# Builds bench/ (its own Cargo package, so the root's `cargo test` never
# compiles the peers) in release mode, then runs workload W1 (default
# N = 100,000 keyed values, ~1.5 GiB) through every peer, each in a fresh
# directory under one temp dir that is removed afterwards (every store is
# kept until then: ~11 GB free needed under --dir at the default N, about
# 20 minutes on 2 cores). Prints one table: absolute
# figures, ratios against rask-store, and the targets met or MISSED.
# Progress goes to stderr, the table to stdout. Needs `git` on PATH for the
# git peer. See docs/BENCHMARKS.md for the last recorded run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/bench/Cargo.toml"
exec "$root/bench/target/release/rask-bench" "$@"
