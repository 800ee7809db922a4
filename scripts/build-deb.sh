#!/usr/bin/env bash
# Build the Debian package mod-md-rs (cargo-deb; metadata in Cargo.toml [package.metadata.deb],
# maintainer scripts and changelog in debian/):
#   1. cargo build --release -p mod_md -p a2md   (nothing to do when target/ is up to date)
#   2. cargo deb -p mod_md --no-build --dbgsym    (strips both binaries; their line tables go
#      into mod-md-rs-dbgsym_<version>_<arch>.ddeb, linked by build-id)
# Usage: scripts/build-deb.sh [cargo-deb options, e.g. --deb-version 0.1.0-2 -o DIR]
# Prints the path of the .deb on the last line. cargo-deb: `cargo install cargo-deb --locked`
# (or set CARGO_DEB=/path/to/cargo-deb); CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo_deb="${CARGO_DEB:-}"
if [ -z "$cargo_deb" ]; then
    cargo_deb="$(command -v cargo-deb || true)"
    [ -n "$cargo_deb" ] || [ ! -x /work/tools/bin/cargo-deb ] || cargo_deb=/work/tools/bin/cargo-deb
fi
if [ -z "$cargo_deb" ]; then
    echo "build-deb: cargo-deb not found; install it: cargo install cargo-deb --locked" >&2
    exit 1
fi
cargo build --release --locked -p mod_md -p a2md >&2
"$cargo_deb" -p mod_md --no-build --dbgsym "$@"
