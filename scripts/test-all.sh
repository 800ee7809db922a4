#!/usr/bin/env bash
# All checks and tests of mod_md-rs: dependencies, fmt, clippy, unit and integration tests,
# the release build of mod_md.so, and the end-to-end suite against real httpd (and pebble).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== cargo build --release"
cargo build --release --workspace
echo "== end-to-end tests (pytest)"
export MD_RS_MODULE="$PWD/target/release/libmod_md.so"
# The Debian package test (test/test_package.py: cargo-deb, debootstrap, a chroot; ~2 min with
# its cached tarball, more on a first run) is opt-in here: MDRS_PACKAGE_TEST=1 runs it.
if [ "${MDRS_PACKAGE_TEST:-0}" != 1 ]; then
    export MDRS_SKIP_PACKAGE_TEST=1
fi
python3 -m pytest -q -p no:cacheprovider test/
