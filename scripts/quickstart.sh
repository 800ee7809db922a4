#!/usr/bin/env bash
# The main job of mod_md-rs on this machine: install prerequisites, build the module, and start
# a local httpd on loopback that loads it with a few managed domains.
#   bash scripts/quickstart.sh         build and start
#   bash scripts/quickstart.sh stop    stop what the last start started
# Everything runs on 127.0.0.1 on ports chosen at start; the server dir is $MD_QS_DIR.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MD_QS_DIR:-/tmp/mod_md-rs-quickstart}"

stop() {
    if [ -f "$dir/run/httpd.pid" ]; then
        kill "$(cat "$dir/run/httpd.pid")" 2>/dev/null && echo "stopped httpd" || true
        rm -f "$dir/run/httpd.pid"
    fi
}
if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

bash "$repo/scripts/deps.sh"
echo "== building mod_md-rs (release)"
(cd "$repo" && cargo build --release --workspace)
so="$repo/target/release/libmod_md.so"

stop
mkdir -p "$dir"/{conf,logs,run,htdocs}
chmod 755 "$dir"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$dir/conf/httpd.conf" <<CONF
ServerRoot "$dir"
DefaultRuntimeDir "$dir/run"
PidFile "$dir/run/httpd.pid"
ErrorLog "$dir/logs/error.log"
ServerName localhost
ServerAdmin webmaster@example.test
Listen 127.0.0.1:$port
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule md_module $so
LogLevel warn md:debug
DocumentRoot "$dir/htdocs"

MDStoreDir "$dir/md"
MDCertificateAgreement accepted
MDomain example.test www.example.test
<MDomain other.test>
    MDPrivateKeys secp256r1 rsa3072
    MDRenewWindow 30%
</MDomain>

<VirtualHost 127.0.0.1:$port>
    ServerName example.test
    ServerAlias www.example.test
</VirtualHost>
<VirtualHost 127.0.0.1:$port>
    ServerName other.test
</VirtualHost>
CONF
echo "== checking the config"
apache2 -d "$dir" -f "$dir/conf/httpd.conf" -t
apache2 -d "$dir" -f "$dir/conf/httpd.conf" -k start
for _ in $(seq 50); do [ -s "$dir/run/httpd.pid" ] && break; sleep 0.1; done
cat <<MSG

mod_md-rs is loaded in a running httpd (pid $(cat "$dir/run/httpd.pid" 2>/dev/null || echo '?')) on http://127.0.0.1:$port/
  config:     $dir/conf/httpd.conf
  error log:  $dir/logs/error.log   (LogLevel md:debug: lines tagged [md:...])
  try:        curl -s -H 'Host: example.test' http://127.0.0.1:$port/
  stop:       bash $repo/scripts/quickstart.sh stop

Not yet: obtaining certificates from a local CA (pebble) and serving them is the next
milestone (see README "Status"); today the module reads and checks the configuration.
MSG
grep '\[md:' "$dir/logs/error.log" | tail -n 5 || true
