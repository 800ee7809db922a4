#!/usr/bin/env bash
# Install what building and testing mod_md-rs needs on Debian 12 (as root).
# Only missing packages are installed, so repeated runs are quick.
set -euo pipefail
pkgs=(apache2 apache2-dev libapr1-dev libaprutil1-dev libssl-dev libclang-dev clang
      pkg-config pebble curl openssl ca-certificates tinyproxy
      iproute2 postgresql)
# The Debian package (scripts/build-deb.sh) and its test (test/test_package.py, run by
# test-all.sh unless MDRS_SKIP_PACKAGE_TEST=1): debootstrap for the Debian 12 root, lintian.
if [ "${MDRS_SKIP_PACKAGE_TEST:-0}" != 1 ]; then pkgs+=(debootstrap lintian dpkg-dev); fi
# pytest-xdist (test-all.sh runs the e2e suite on several workers): Debian's package when
# python3 is Debian's own, else pip below.
if ! python3 -c "import xdist" 2>/dev/null \
        && [ "$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null)" = /usr ]; then
    pkgs+=(python3-pytest-xdist)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts the packaged apache2 where it can; our tests run their own instances.
    if command -v service >/dev/null; then service apache2 stop >/dev/null 2>&1 || true; fi
fi
# Debian's tinyproxy service listens on 0.0.0.0:8888; test/lib/fwdproxy.py runs its own on
# 127.0.0.1. Keep the packaged one stopped and out of the boot sequence.
if dpkg-query -W -f='${Status}' tinyproxy 2>/dev/null | grep -q "install ok installed"; then
    if command -v service >/dev/null; then service tinyproxy stop >/dev/null 2>&1 || true; fi
    if command -v systemctl >/dev/null; then systemctl disable tinyproxy >/dev/null 2>&1 || true; fi
    if command -v update-rc.d >/dev/null; then update-rc.d tinyproxy disable >/dev/null 2>&1 || true; fi
fi
# Debian's postgresql package makes and starts a cluster "main" on port 5432; test/lib/postgres.py
# runs a throw-away server of its own (initdb in a temporary dir, 127.0.0.1, a run-time port).
# Keep the packaged one stopped and out of the boot sequence.
if dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
    if command -v service >/dev/null; then service postgresql stop >/dev/null 2>&1 || true; fi
    if command -v systemctl >/dev/null; then systemctl disable postgresql >/dev/null 2>&1 || true; fi
    if command -v update-rc.d >/dev/null; then update-rc.d postgresql disable >/dev/null 2>&1 || true; fi
fi
if ! command -v cargo >/dev/null; then
    echo "deps: cargo not found: a Rust toolchain >= 1.82 is needed (rustup)" >&2
    exit 1
fi
if [ "${MDRS_SKIP_PACKAGE_TEST:-0}" != 1 ] && ! command -v cargo-deb >/dev/null \
        && [ ! -x /work/tools/bin/cargo-deb ] && [ -z "${CARGO_DEB:-}" ]; then
    echo "deps: installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
fi
python3 -c "import pytest" 2>/dev/null || python3 -m pip install -q pytest
python3 -c "import xdist" 2>/dev/null || python3 -m pip install -q pytest-xdist
# test/test_faults.py decrypts the store's encrypted staging keys to compare them with certificates
python3 -c "import cryptography" 2>/dev/null || python3 -m pip install -q cryptography
