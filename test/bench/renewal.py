#!/usr/bin/env python3
"""Benchmark, side by side: our module vs Debian's C mod_md obtaining certificates from the same
local pebble on this machine, for N = 1, 10, 50 managed domains (http-01).

Measures per run: start -> serving (HTTPS answers, 503 on the fallback), start -> all
certificates staged, graceful restart -> all new certificates served, RSS of httpd's parent
and children after staging, ACME requests per certificate (from pebble's log).
Loopback only, run-time ports, everything stopped by PID.

    python3 test/bench/renewal.py [N ...]      (default 1 10 50; MD_RS_MODULE as for tests)

BENCH_MODULES=rs (or c) runs one module only (default: rs,c); BENCH_KEYS=secp256r1 sets
MDPrivateKeys (default: none, the modules' default RSA 2048). child_max_mb is the largest child's
RSS (the renewing child; httpd's workers are smaller), children_mb the sum over all children.
"""
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.httpd import HttpdServer, module_by_name  # noqa: E402
from lib.pebble import Pebble  # noqa: E402


def rss_kb(parent_pid):
    pids = [parent_pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(parent_pid)], capture_output=True, text=True).stdout.split()]
    total = {}
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total[p] = int(line.split()[1])
        except OSError:
            pass
    children = [v for k, v in total.items() if k != parent_pid]
    return total.get(parent_pid, 0), sum(children), max(children, default=0)


def serves(port, host, ctx):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            with ctx.wrap_socket(s, server_hostname=host) as t:
                return t.getpeercert()
    except (OSError, ssl.SSLError):
        return None


def run(module_name, n):
    srv = HttpdServer(module_by_name(module_name), log_level="warn")
    peb = Pebble(str(srv.dir), srv.http_port, srv.https_port)
    try:
        peb.start()
        body = (f"MDCertificateAuthority {peb.directory_url}\nMDCACertificateFile {peb.ca_file}\n"
                "MDCertificateAgreement accepted\nMDContactEmail admin@example.test\n"
                f"MDPortMap http:{srv.http_port} https:{srv.https_port}\nMDCAChallenges http-01\n")
        if os.environ.get("BENCH_KEYS"):
            body += f"MDPrivateKeys {os.environ['BENCH_KEYS']}\n"
        for i in range(1, n + 1):
            body += (f"MDomain a{i}.test\n<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n"
                     f"    ServerName a{i}.test\n    SSLEngine on\n</VirtualHost>\n")
        srv.render(body)
        t0 = time.monotonic()
        assert srv.start(timeout=120).started, srv.error_log()[-2000:]
        any_ctx = ssl.create_default_context()
        any_ctx.check_hostname, any_ctx.verify_mode = False, ssl.CERT_NONE
        while serves(srv.https_port, "a1.test", any_ctx) is None:
            time.sleep(0.01)
        t_serving = time.monotonic() - t0
        staging = srv.dir / "md" / "staging"
        while True:
            done = sum(1 for i in range(1, n + 1)
                       if '"finished": true' in _read(staging / f"a{i}.test" / "job.json"))
            if done == n:
                break
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"only {done}/{n} staged")
            time.sleep(0.05)
        t_staged = time.monotonic() - t0
        parent_rss, children_rss, child_max = rss_kb(srv.proc.pid)
        requests = len(re.findall(r"(GET|HEAD|POST) /\S* -> calling handler", peb.log_all()))
        root = srv.dir / "root.pem"
        root.write_text(peb.root_pem())
        ctx = ssl.create_default_context(cafile=str(root))
        t1 = time.monotonic()
        os.kill(srv.proc.pid, signal.SIGUSR1)
        pending = {f"a{i}.test" for i in range(1, n + 1)}
        while pending:
            pending = {h for h in pending if serves(srv.https_port, h, ctx) is None}
            if time.monotonic() - t1 > 120:
                raise RuntimeError(f"{len(pending)} not activated")
            time.sleep(0.05)
        t_activated = time.monotonic() - t1
        return dict(serving=t_serving, staged=t_staged, activated=t_activated,
                    parent_mb=parent_rss / 1024, children_mb=children_rss / 1024,
                    child_max_mb=child_max / 1024,
                    req_per_cert=requests / n)
    finally:
        srv.cleanup()
        peb.stop()


def _read(p):
    try:
        return p.read_text()
    except OSError:
        return ""


def main():
    ns = [int(a) for a in sys.argv[1:]] or [1, 10, 50]
    cols = ["serving", "staged", "activated", "parent_mb", "children_mb", "child_max_mb",
            "req_per_cert"]
    mods = [m for m in os.environ.get("BENCH_MODULES", "rs,c").split(",") if m]
    print(f"{'N':>3} {'module':<6} " + " ".join(f"{c:>12}" for c in cols))
    for n in ns:
        res = {m: run(m, n) for m in mods}
        for m in mods:
            print(f"{n:>3} {m:<6} " + " ".join(f"{res[m][c]:>12.2f}" for c in cols))
        if len(res) < 2:
            sys.stdout.flush()
            continue
        ratio = " ".join(f"{res['c'][c] / res['rs'][c]:>11.1f}x" if res['rs'][c] else
                         f"{'-':>12}" for c in cols)
        print(f"{n:>3} {'c/rs':<6} {ratio}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
