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
# The e2e suite runs on MDRS_PYTEST_WORKERS pytest-xdist workers (default 4; 0 or 1: in this
# process, serially); most of its time is spent waiting on httpd and pebble, not on the CPU.
# Each test picks its own ports (test/lib/ports.py) and directories; a test that ever needs
# the machine to itself gets an xdist_group mark (--dist loadgroup runs a group on one worker).
# The Debian package test (test/test_package.py: cargo-deb, debootstrap, a chroot; ~2 min with
# its cached tarball, more on a first run) is part of it; MDRS_SKIP_PACKAGE_TEST=1 leaves it
# out (and deps.sh then does not install its tools).
workers="${MDRS_PYTEST_WORKERS:-4}"
xdist=()
if [ "$workers" -gt 1 ]; then xdist=(-n "$workers" --dist loadgroup); fi
python3 -m pytest -q -p no:cacheprovider "${xdist[@]}" test/
