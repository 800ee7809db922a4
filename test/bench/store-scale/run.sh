#!/usr/bin/env bash
# Store scale benchmark: md-core's FsStore + Registry on 1,000 and 10,000 MDs.
# Usage: test/bench/store-scale/run.sh [N...]   (default: 1000 10000)
# Each phase runs in its own process; prints wall time and peak RSS (VmHWM) per phase.
# Stores live in a temp dir on the default /tmp file system and are removed afterwards.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/../../../target}
cargo build --release --quiet --manifest-path "$HERE/Cargo.toml"
BIN=$CARGO_TARGET_DIR/release/md-store-scale
for N in "${@:-1000 10000}"; do
  for n in $N; do
    DIR=$(mktemp -d /tmp/md-store-scale.XXXXXX)
    trap 'rm -rf "$DIR"' EXIT
    echo "== N=$n ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
    for phase in create startup parse changed activate; do
      "$BIN" "$phase" "$n" "$DIR/md"
    done
    echo "   store size: $(du -sh "$DIR/md" | cut -f1), files: $(find "$DIR/md" -type f | wc -l)"
    rm -rf "$DIR"
    trap - EXIT
  done
done
