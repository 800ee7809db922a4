#!/usr/bin/env python3
"""Benchmark: md-status and server-status with many managed domains, our module and Debian's
C mod_md side by side.

Each MD is a static-file MD (MDCertificateFile/KeyFile, all sharing one self-signed
certificate for *.bench.test, so every MD is complete/"good"), so no CA is needed. The server listens on 127.0.0.1 on a port chosen at run
time and is stopped by PID (test/lib/httpd.py).

    python3 test/bench/md_status.py [--mds 1000] [--requests 30] [--modules c,rs]

Prints, per module: startup time, response size, and median / p95 / max wall time per request
for GET /md-status (all MDs), /md-status/<name> (one MD) and /server-status?auto. Requests are
sequential, one connection each (what a monitoring script does).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.httpd import HttpdServer, module_by_name  # noqa: E402


def wildcard_cert() -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as d:
        cert, key = f"{d}/c.pem", f"{d}/k.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "30", "-subj", "/CN=*.bench.test",
                        "-addext", "subjectAltName=DNS:*.bench.test"],
                       check=True, capture_output=True)
        return Path(cert).read_bytes(), Path(key).read_bytes()


def config(n: int) -> str:
    lines = ["MDServerStatus on", "MDCertificateAgreement accepted",
             "MDContactEmail admin@bench.test",
             "MDPortMap http:@HTTP_PORT@ https:@HTTPS_PORT@"]
    for i in range(n):
        lines += [f"<MDomain d{i:05d}.bench.test>",
                  "    MDCertificateFile conf/s.crt",
                  "    MDCertificateKeyFile conf/s.key",
                  "</MDomain>"]
    lines += ["<VirtualHost 127.0.0.1:@HTTP_PORT@>", "    ServerName localhost",
              "    <Location /md-status>", "        SetHandler md-status", "    </Location>",
              "    <Location /server-status>", "        SetHandler server-status",
              "    </Location>", "</VirtualHost>"]
    return "\n".join(lines) + "\n"


def timed_get(port: int, path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (path, resp.status)
    finally:
        conn.close()
    return time.perf_counter() - t0, len(body)


def measure(port: int, path: str, requests: int) -> str:
    timed_get(port, path)  # warm-up (and the first request of the child)
    times, size = [], 0
    for _ in range(requests):
        t, size = timed_get(port, path)
        times.append(t * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return (f"{path:<34} {size / 1024:8.0f} KiB  median {statistics.median(times):7.1f} ms"
            f"  p95 {p95:7.1f} ms  max {times[-1]:7.1f} ms")


def bench(name: str, n: int, requests: int) -> None:
    srv = HttpdServer(module_by_name(name), status=True)
    try:
        cert, key = wildcard_cert()
        srv.write_file("conf/s.crt", cert)
        srv.write_file("conf/s.key", key, mode=0o600)
        srv.render(config(n))
        t0 = time.perf_counter()
        res = srv.start(timeout=300)
        assert res.started, res.text
        print(f"[{name}] {n} MDs, started in {time.perf_counter() - t0:.1f} s")
        for path in ("/md-status", f"/md-status/d{n // 2:05d}.bench.test",
                     "/server-status?auto"):
            print(f"[{name}] " + measure(srv.http_port, path, requests))
    finally:
        srv.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mds", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--modules", default="rs,c")
    a = ap.parse_args()
    for name in a.modules.split(","):
        bench(name.strip(), a.mds, a.requests)


if __name__ == "__main__":
    main()
