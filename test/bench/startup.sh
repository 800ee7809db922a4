#!/usr/bin/env bash
# Benchmark: time from `apache2 -k start` until HTTPS answers, with N managed domains that
# have no certificate yet (so each needs a fallback), for our module and Debian's C mod_md,
# side by side. Loopback only, ports chosen at run time; stops what it starts by PID.
#   test/bench/startup.sh [N...]        (default: 1 10 50)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RS="${MD_RS_MODULE:-$repo/target/release/libmod_md.so}"
C=/usr/lib/apache2/modules/mod_md.so
[ -f "$RS" ] || { echo "build first: cargo build --release ($RS missing)" >&2; exit 1; }
work="$(mktemp -d)"; chmod 755 "$work"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

run() { # module N -> seconds until serving
    local so=$1 n=$2 d="$work/srv" port
    rm -rf "$d"; mkdir -p "$d"/{conf,logs,run,md}
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    {
        cat <<CONF
ServerRoot "$d"
DefaultRuntimeDir "$d/run"
PidFile "$d/run/httpd.pid"
ErrorLog "$d/logs/error.log"
ServerName localhost
Listen 127.0.0.1:$port
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
LoadModule md_module $so
MDStoreDir "$d/md"
MDCertificateAuthority https://127.0.0.1:9/directory
MDCertificateAgreement accepted
MDContactEmail admin@example.test
MDPortMap http:- https:$port
MDCAChallenges http-01
CONF
        for i in $(seq "$n"); do
            printf 'MDomain a%s.test\n<VirtualHost 127.0.0.1:%s>\n  ServerName a%s.test\n  SSLEngine on\n</VirtualHost>\n' "$i" "$port" "$i"
        done
    } > "$d/conf/httpd.conf"
    local t0 t1
    t0=$(date +%s.%N)
    apache2 -d "$d" -f "$d/conf/httpd.conf" -k start
    until curl -sk -o /dev/null --max-time 1 --resolve "a1.test:$port:127.0.0.1" "https://a1.test:$port/"; do
        sleep 0.01
    done
    t1=$(date +%s.%N)
    pid="$(cat "$d/run/httpd.pid")"
    kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; pid=""
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

printf '%-6s %12s %12s %8s\n' N "mod_md-rs s" "C mod_md s" ratio
for n in "${@:-1 10 50}"; do
    for n1 in $n; do
        rs=$(run "$RS" "$n1"); c=$(run "$C" "$n1")
        printf '%-6s %12s %12s %8s\n' "$n1" "$rs" "$c" "$(python3 -c "print(f'{$c / $rs:.1f}x')")"
    done
done
