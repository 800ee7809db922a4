#!/usr/bin/env python3
"""Benchmark: the parent's start cost with many managed domains, side by side for mod_ssl
alone, Debian's C mod_md and ours.

N MDs (secp256r1, MDRenewMode manual, so no CA traffic), one SSL vhost each. Every MD has its
certificate in the store before the first start (domains/<md>/pubcert.secp256r1.pem and
privkey.secp256r1.pem: a leaf for *.bench.test plus the issuing CA, the same files copied into
every MD's directory, so making them costs three openssl calls, not N). "mod_ssl alone" is the
same vhosts with SSLCertificateFile/SSLCertificateKeyFile pointing at per-vhost copies of the
same files and no md module.

Measured per variant: first start to serving (empty store but for the certificates; the
md module writes its md.json files), second start to serving (the store as the first start
left it), a graceful restart to serving (SIGUSR1 until the new generation reports
"resuming normal operations" and answers a handshake), and the RSS of the parent and of the
largest child after the second start, the RSS of all its processes together, and for the md
modules GET /md-status (all MDs) and /md-status/<one MD> (median of 5 each, on a second,
plain-HTTP port). "Serving" is a completed TLS handshake with the SNI of the last MD. The
server listens on 127.0.0.1 on ports chosen at run time and is stopped by PID (SIGTERM, then
SIGKILL to the process group it leads). The server directories are removed only at the end:
ext4 searches longer for a free inode while many were deleted in the last minutes, which
made whichever variant ran after another one's clean-up pay for it.

    python3 test/bench/scale.py [--mds 1000 [--mds 3000]] [--variants ssl,c,rs] [--repeat 1]

The module under test: env MD_RS_MODULE (default target/release/libmod_md.so of this repo).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.httpd import (  # noqa: E402
    APACHE2, C_MODULE_PATH, MODULES_DIR, _httpd_env, children_of, free_ports, rs_module_path)

SPEC = "secp256r1"
STARTED = "AH00489"


def make_pair(d: Path) -> tuple[bytes, bytes]:
    """(pubcert PEM: leaf + CA, leaf key PEM) for *.bench.test, P-256, from a throw-away CA."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=scale bench CA")
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k0.pem")
    run("pkcs8", "-topk8", "-nocrypt", "-in", "k0.pem", "-out", "leaf.key")
    run("req", "-new", "-key", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=*.bench.test")
    (d / "ext.cnf").write_text("subjectAltName=DNS:*.bench.test\n"
                               "basicConstraints=CA:FALSE\n"
                               "keyUsage=digitalSignature\n"
                               "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "20", "-extfile", "ext.cnf")
    return ((d / "leaf.pem").read_bytes() + (d / "ca.pem").read_bytes(),
            (d / "leaf.key").read_bytes())


def md_name(i: int) -> str:
    return f"d{i:05d}.bench.test"


class Server:
    def __init__(self, variant: str, n: int, pair: tuple[bytes, bytes]):
        self.variant, self.n = variant, n
        self.dir = Path(tempfile.mkdtemp(prefix=f"md-scale-{variant}-"))
        os.chmod(self.dir, 0o755)
        for sub in ("conf", "logs", "run", "htdocs"):
            (self.dir / sub).mkdir(mode=0o755)
        self.port, self.status_port = free_ports(2)
        self.conf = self.dir / "conf" / "httpd.conf"
        self.log = self.dir / "logs" / "error.log"
        self.proc: subprocess.Popen | None = None
        cert, key = pair
        # per MD its own files, as the store has them
        base = self.dir / ("static" if variant == "ssl" else "md/domains")
        for i in range(n):
            d = base / md_name(i)
            d.mkdir(parents=True, mode=0o700)
            (d / f"pubcert.{SPEC}.pem").write_bytes(cert)
            kf = d / f"privkey.{SPEC}.pem"
            kf.write_bytes(key)
            os.chmod(kf, 0o600)
        self.render()

    def render(self) -> None:
        mods = MODULES_DIR
        lines = [
            f'ServerRoot "{self.dir}"', f'DefaultRuntimeDir "{self.dir}/run"',
            f'PidFile "{self.dir}/run/httpd.pid"', f'ErrorLog "{self.log}"', "LogLevel warn",
            "ServerName localhost", f"Listen 127.0.0.1:{self.port}",
            f"Listen 127.0.0.1:{self.status_port}",
            f'LoadModule mpm_event_module "{mods}/mod_mpm_event.so"',
            f'LoadModule authz_core_module "{mods}/mod_authz_core.so"',
            f'LoadModule socache_shmcb_module "{mods}/mod_socache_shmcb.so"',
            f'LoadModule ssl_module "{mods}/mod_ssl.so"',
        ]
        if os.geteuid() == 0:
            lines += ["User www-data", "Group www-data"]
        lines += ["StartServers 1", "ServerLimit 2", "ThreadsPerChild 8",
                  "MaxRequestWorkers 16", "GracefulShutdownTimeout 2",
                  f'DocumentRoot "{self.dir}/htdocs"']
        if self.variant != "ssl":
            so = C_MODULE_PATH if self.variant == "c" else rs_module_path()
            lines += [f'LoadModule md_module "{so}"', f'MDStoreDir "{self.dir}/md"',
                      "MDCertificateAuthority https://127.0.0.1:9/directory",
                      "MDCertificateAgreement accepted", "MDContactEmail admin@bench.test",
                      "MDRenewMode manual", f"MDPrivateKeys {SPEC}",
                      f"MDPortMap http:- https:{self.port}",
                      f"<VirtualHost 127.0.0.1:{self.status_port}>",
                      "  ServerName status.bench.test",
                      "  <Location /md-status>", "    SetHandler md-status", "  </Location>",
                      "</VirtualHost>"]
        for i in range(self.n):
            name = md_name(i)
            if self.variant != "ssl":
                lines.append(f"MDomain {name}")
            lines += [f"<VirtualHost 127.0.0.1:{self.port}>", f"  ServerName {name}",
                      "  SSLEngine on"]
            if self.variant == "ssl":
                d = self.dir / "static" / name
                lines += [f'  SSLCertificateFile "{d}/pubcert.{SPEC}.pem"',
                          f'  SSLCertificateKeyFile "{d}/privkey.{SPEC}.pem"']
            lines.append("</VirtualHost>")
        self.conf.write_text("\n".join(lines) + "\n")

    def handshake(self) -> bool:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                with ctx.wrap_socket(s, server_hostname=md_name(self.n - 1)) as t:
                    return t.version() is not None
        except OSError:
            return False

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_serving(self, t0: float, started_before: int, timeout: float) -> float:
        """Seconds from t0 until a new 'resuming normal operations' and a handshake."""
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.variant}: httpd exited:\n{self.log_text()[-3000:]}")
            if self.log_text().count(STARTED) > started_before and self.handshake():
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{self.variant}: not serving after {timeout} s")
            time.sleep(0.01)

    def start(self, timeout: float) -> float:
        assert self.proc is None
        before = self.log_text().count(STARTED)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [APACHE2, "-d", str(self.dir), "-f", str(self.conf), "-D", "FOREGROUND"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=_httpd_env(), start_new_session=True)
        return self.wait_serving(t0, before, timeout)

    def graceful(self, timeout: float) -> float:
        before = self.log_text().count(STARTED)
        t0 = time.perf_counter()
        os.kill(self.proc.pid, signal.SIGUSR1)
        return self.wait_serving(t0, before, timeout)

    def get_ms(self, path: str, runs: int = 5) -> float:
        """Median milliseconds of GET path on the status port (the body read whole)."""
        times = []
        for _ in range(runs):
            conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=120)
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            times.append((time.perf_counter() - t0) * 1000)
            conn.close()
            if resp.status != 200 or not body:
                raise RuntimeError(f"{self.variant}: GET {path}: {resp.status}")
        return statistics.median(times)

    def rss_mb(self) -> tuple[float, float, float]:
        """(parent RSS, largest child RSS, all processes) in MB."""
        def rss(pid: int) -> float:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
            except OSError:
                pass
            return 0.0
        kid_rss = [rss(k) for k in children_of(self.proc.pid)]
        parent = rss(self.proc.pid)
        return parent, max(kid_rss, default=0.0), parent + sum(kid_rss)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05)

    def cleanup(self, keep: bool) -> None:
        try:
            self.stop()
        finally:
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)


def bench(variant: str, n: int, pair, done: list[Server]) -> dict[str, float]:
    timeout = 60 + n * 0.05
    srv = Server(variant, n, pair)
    done.append(srv)
    try:
        first = srv.start(timeout)
        srv.stop()
        second = srv.start(timeout)
        time.sleep(0.5)
        parent, child, total = srv.rss_mb()
        r = {"first": first, "second": second, "rss_parent": parent, "rss_child": child,
             "rss_all": total}
        if variant != "ssl":
            r["status_all_ms"] = srv.get_ms("/md-status")
            r["status_one_ms"] = srv.get_ms(f"/md-status/{md_name(n // 2)}")
        r["graceful"] = srv.graceful(timeout)
        return r
    finally:
        srv.stop()


LABELS = {"ssl": "mod_ssl alone", "c": "C mod_md", "rs": "mod_md-rs"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mds", type=int, action="append", help="N (repeatable; default 1000)")
    ap.add_argument("--variants", default="ssl,c,rs")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    ap.add_argument("--keep", action="store_true", help="keep the server directories")
    a = ap.parse_args()
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if "rs" in variants and not os.path.isfile(rs_module_path()):
        sys.exit(f"module missing: {rs_module_path()} (build it or set MD_RS_MODULE)")
    with tempfile.TemporaryDirectory() as d:
        pair = make_pair(Path(d))
    print(f"# mod_md-rs: {rs_module_path()}; {os.cpu_count()} cores")
    servers: list[Server] = []
    try:
        for n in a.mds or [1000]:
            run_n(n, variants, pair, a.repeat, servers)
    finally:
        for srv in servers:
            srv.cleanup(a.keep)


def run_n(n: int, variants: list[str], pair, repeat: int, servers: list[Server]) -> None:
    res: dict[str, dict[str, float]] = {}
    for v in variants:
        runs = [bench(v, n, pair, servers) for _ in range(repeat)]
        res[v] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        r = res[v]
        print(f"[N={n}] {LABELS[v]:<14} first {r['first']:6.2f} s  second "
              f"{r['second']:6.2f} s  graceful {r['graceful']:6.2f} s  RSS parent "
              f"{r['rss_parent']:6.1f} MB  child {r['rss_child']:6.1f} MB  all "
              f"{r['rss_all']:7.1f} MB", flush=True)
    print(f"\nN={n} (median of {repeat})")
    print(f"{'':<14} {'first s':>8} {'second s':>9} {'graceful s':>10} "
          f"{'RSS parent MB':>14} {'RSS child MB':>13} {'RSS all MB':>11} "
          f"{'status all ms':>14} {'status one ms':>14}")
    for v in variants:
        r = res[v]
        st = (f"{r['status_all_ms']:14.1f} {r['status_one_ms']:14.2f}"
              if "status_all_ms" in r else f"{'-':>14} {'-':>14}")
        print(f"{LABELS[v]:<14} {r['first']:8.2f} {r['second']:9.2f} {r['graceful']:10.2f} "
              f"{r['rss_parent']:14.1f} {r['rss_child']:13.1f} {r['rss_all']:11.1f} {st}")
    if "ssl" in res:
        base = res["ssl"]
        print("added over mod_ssl alone:")
        for v in variants:
            if v == "ssl":
                continue
            r = res[v]
            print(f"  {LABELS[v]:<12} first {r['first'] - base['first']:+6.2f}  second "
                  f"{r['second'] - base['second']:+6.2f}  graceful "
                  f"{r['graceful'] - base['graceful']:+6.2f}  RSS all "
                  f"{r['rss_all'] - base['rss_all']:+7.1f} MB")
    if "c" in res and "rs" in res:
        c, rs = res["c"], res["rs"]
        ratios = "  ".join(f"{k} {rs[k] / c[k]:.2f}" for k in c if c[k])
        print(f"ratios mod_md-rs / C: {ratios}")
    print(flush=True)


if __name__ == "__main__":
    main()
