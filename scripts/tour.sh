#!/usr/bin/env bash
# A tour of rask-store on a throwaway store: put, get, show, exists, and what
# happens to a damaged object. Needs only cargo.
#
#   bash scripts/tour.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/rask-store
store=$(mktemp -d)/cache
trap 'rm -rf "$(dirname "$store")"' EXIT
export RASK_STORE=$store
run() { printf '\n$ %s\n' "$*"; "$@"; }

run "$bin" init
leaf=$(printf 'fn swap(a, b) { .. }' | "$bin" put --kind ast)
echo "swap  -> $leaf"
node=$(printf 'fn sort(v) { swap(..) }' | "$bin" put --kind ast --link "$leaf")
echo "sort  -> $node"
run "$bin" show "$node"
run "$bin" get "${node:0:12}"; echo
run "$bin" exists "$leaf" "$node"
echo "(exit $?: both present)"

# The object's file, and where the object starts in it (a pack holds many).
shown=$("$bin" show --json "$node")
path=$(printf '%s' "$shown" | sed 's/.*"path":"\([^"]*\)".*/\1/')
offset=$(printf '%s' "$shown" | sed -n 's/.*"offset":\([0-9][0-9]*\).*/\1/p')
chmod u+w "$path"; printf 'X' | dd of="$path" bs=1 seek=$(( ${offset:-0} + 60 )) conv=notrunc status=none
echo; echo "# one byte of the sort object flipped on disk:"
set +e
run "$bin" get "$node"
echo "(exit $?: the damaged bytes are never returned)"
set -e
echo; echo "# putting the same content again repairs it:"
printf 'fn sort(v) { swap(..) }' | "$bin" put --kind ast --link "$leaf" >/dev/null
run "$bin" get "$node"; echo
