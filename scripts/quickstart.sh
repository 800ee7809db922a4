#!/usr/bin/env bash
# The main job of mod_md-rs on this machine: install prerequisites, build the module, start a
# local ACME CA (pebble) and an httpd on loopback with three managed domains; the module
# obtains their certificates, a graceful restart activates them, and it prints where to look.
#   bash scripts/quickstart.sh         build, start, obtain, activate
#   bash scripts/quickstart.sh stop    stop what the last start started (by PID)
# Everything listens on 127.0.0.1 on ports chosen at start; the server dir is $MD_QS_DIR.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MD_QS_DIR:-/tmp/mod_md-rs-quickstart}"
if [ "${1:-}" = "stop" ]; then
    exec python3 "$repo/scripts/quickstart.py" stop "$dir"
fi
bash "$repo/scripts/deps.sh"
echo "== building mod_md-rs (release)"
(cd "$repo" && cargo build --release --workspace)
exec python3 "$repo/scripts/quickstart.py" start "$dir" "$repo/target/release/libmod_md.so"
