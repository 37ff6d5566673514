#!/usr/bin/env bash
# Benchmark rask-store against the stores a compiler author would pick instead.
#
#   scripts/bench.sh [--mode w1|gc|index|batch] [--n N] [--seed S] [--peers LIST] [--dir DIR]
#   scripts/bench.sh --help          # every option and mode
#
# Builds bench/ (its own Cargo package, so the root's `cargo test` never
# compiles the peers) in release mode, then runs one mode; each store lives
# in a fresh directory under one temp dir (in --dir, default the system temp
# dir) that is removed afterwards. Progress goes to stderr, the table to
# stdout. See docs/BENCHMARKS.md for what each mode measures and the last
# recorded runs.
#
#   --mode w1 (default)  workload W1 (default N = 100,000 keyed values,
#       ~1.5 GiB) through every peer: rask (keyed index), rask-objects,
#       rawfs, rawpack, rask-pack, sqlite, redb, cacache, git (--peers picks). Put, get, fresh-
#       process get, exists, verify, delete half + reclaim, disk; ratios and
#       targets (issue 7). Every store is kept until the end: ~13 GB free
#       needed at the default N; about 6 minutes on 2 quiet cores.
#   --mode gc            verify and gc of N objects (try --n 100000 and
#       --n 1000000; ~4 KB mean, ~3.8 GiB at 1M, ~10 GB free needed) against
#       a one-thread read + BLAKE3 of the same files, `git fsck --full` and
#       `git gc --prune=now` (issue 4). Leave git out of --peers to skip it.
#   --mode index         the keyed index at N entries (try --n 1000000):
#       insert rate, lookup p50/p99, find_missing of 20,000 keys, fresh-
#       process open + lookup, against cacache (issue 3). Leave cacache out
#       of --peers to skip it.
#   --mode batch         Store::get_many and Store::put_many against one
#       call per object, at batch sizes from 4 to 1,000, for N of W1's
#       values and for values fifty times smaller (~3.2 GB free needed at
#       the default N; about a minute).
#
# The git peer needs `git` on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/bench/Cargo.toml"
exec "$root/bench/target/release/rask-bench" "$@"
