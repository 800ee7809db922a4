"""Outgoing trust and proxies, side by side with the C module, against real components:
real httpd, real pebble and a real forward proxy (Debian's tinyproxy, lib/fwdproxy.py).

- `MDHttpProxy http://127.0.0.1:P` (global): the certificate is obtained and all CA traffic
  went through the proxy: tinyproxy logged CONNECTs to pebble's port (and nothing else), and no
  httpd process ever held a TCP connection to pebble's port itself (sampled every 20 ms with
  `ss -tnp`, as root). With the proxy down (its port closed), no certificate, a connection
  error in job.json `last`, and pebble saw no request at all.
- `MDHttpProxy` inside `<MDomain>` (mod_md 2.6.11 / httpd 2.4.71, which Debian's 2.4.71 build
  of the C module has; lib/cversion.py `per-md-proxy`): it applies to that MD only; the other
  MD goes to the CA directly.
- `MDCACertificateFile` naming a throw-away CA (made with openssl, not pebble's): no
  certificate; job.json `last` as the C module writes it.
- `MDHttpProxyCACertificateFile` is not tested end to end here: tinyproxy speaks plain HTTP to
  its clients (it has no TLS listener), so an `https://` proxy URL, the only case where that
  file is used, cannot be set up with it. (Its parsing is in test_config_compat.py.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from lib.fwdproxy import TinyProxy
from lib.pebble import Pebble
from test_renewal import ca_env, md_conf, read_job, vhosts, wait_staged  # noqa: F401

LIMIT = 30  # seconds for a certificate or a first error
# `ss -p` shows other users' processes to root only (iproute2: scripts/deps.sh)
WATCH = os.geteuid() == 0 and shutil.which("ss") is not None


@pytest.fixture
def proxy_env(ca_env):
    """(httpd server, pebble, tinyproxy allowing CONNECT to pebble's port). With
    `proxy_running=False` tinyproxy is not started: its port is closed. Everything is stopped by
    PID at teardown (tinyproxy here, pebble and httpd by ca_env/httpd_factory)."""
    proxies: list[TinyProxy] = []

    def make(proxy_running=True):
        srv, peb = ca_env()
        tp = TinyProxy(srv.dir, [peb.port])
        proxies.append(tp)
        if proxy_running:
            tp.start()
        return srv, peb, tp

    try:
        yield make
    finally:
        for tp in proxies:
            tp.stop()


def pebble_requests(peb: Pebble) -> list[str]:
    """Every request pebble's ACME server handled (`GET /dir`, `POST /sign-me-up`, ...),
    oldest first (pebble logs `<METHOD> <path> -> calling handler()` for each)."""
    return re.findall(r"^Pebble \S+ \S+ (\S+ \S+) -> calling handler\(\)$", peb.log_all(),
                      re.M)


class DirectWatch:
    """Samples (every 20 ms, `ss -tnp`) the processes holding a TCP connection to a port on
    127.0.0.1: which process names were seen. Needs root to see other users' processes."""

    def __init__(self, port: int):
        self.port = port
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        if not WATCH:
            return
        out = subprocess.run(["ss", "-Htnp", "dst", f"127.0.0.1:{self.port}"],
                             capture_output=True, text=True, timeout=10).stdout
        for name in re.findall(r'users:\(\("([^"]+)"', out):
            self.seen[name] = self.seen.get(name, 0) + 1

    def _run(self):
        while not self._stop.wait(0.02):
            self.sample()

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def wait_first_error(srv, md: str) -> dict:
    deadline = time.monotonic() + LIMIT
    while read_job(srv, md).get("errors", 0) < 1:
        assert time.monotonic() < deadline, srv.error_log()[-3000:]
        time.sleep(0.1)
    time.sleep(0.5)  # the job is written once more after the run (the errored event)
    return read_job(srv, md)


def no_certificate(srv, md: str):
    staging = srv.dir / "md" / "staging" / md
    domains = srv.dir / "md" / "domains" / md
    assert not list(staging.glob("pubcert*.pem")), os.listdir(staging)
    assert not list(domains.glob("pubcert*.pem"))


def staged_serial(srv, md: str) -> int:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                          str(srv.dir / "md" / "staging" / md / "pubcert.pem")],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().split("=")[1], 16)


def unreachable_detail(url: str) -> str:
    return (f"Unsuccessful in contacting ACME server at <{url}>. If this problem persists, "
            "please check your network connectivity from your Apache server to the ACME server. "
            "Also, older servers might have trouble verifying the certificates of the ACME "
            "server. You can check if you are able to contact it manually via the curl command. "
            "Sometimes, the ACME server might be down for maintenance, so failing to contact it "
            "is not an immediate problem. Apache will continue retrying this.")


# ---- global MDHttpProxy -----------------------------------------------------------------

def test_global_proxy_carries_all_ca_traffic(proxy_env, md_module):
    srv, peb, tp = proxy_env()
    srv.render(f"MDHttpProxy {tp.url}\n"
               + md_conf(srv, peb, "MDomain a.test\n" + vhosts("a.test")))
    before = len(pebble_requests(peb))
    with DirectWatch(peb.port) as watch:
        assert srv.start().started
        wait_staged(srv, "a.test", timeout=LIMIT)
    assert staged_serial(srv, "a.test") in peb.issued_serials()
    # through the proxy: CONNECTs to pebble's port, tunnels opened, nothing else asked of it
    reqs = tp.requests()
    assert tp.connects(peb.port) > 0, tp.log()[-3000:]
    assert tp.established() > 0, tp.log()[-3000:]
    assert all(r == f"CONNECT 127.0.0.1:{peb.port} HTTP/1.1" for r in reqs), reqs
    # pebble handled the ACME requests of the whole order
    seen = pebble_requests(peb)[before:]
    assert any(r.startswith("POST /sign-me-up") for r in seen), seen
    assert any(r.startswith("POST /finalize-order/") for r in seen), seen
    # no process but tinyproxy connected to pebble (httpd's children are "apache2")
    if WATCH:
        assert watch.seen.get("tinyproxy", 0) > 0, watch.seen
        assert set(watch.seen) == {"tinyproxy"}, watch.seen


def test_global_proxy_down_nothing_bypasses_it(proxy_env, md_module):
    srv, peb, tp = proxy_env(proxy_running=False)
    assert not tp.listening()
    srv.render(f"MDHttpProxy {tp.url}\n"
               + md_conf(srv, peb, "MDRetryDelay 30s\nMDomain a.test\n" + vhosts("a.test")))
    before = pebble_requests(peb)
    with DirectWatch(peb.port) as watch:
        assert srv.start().started
        job = wait_first_error(srv, "a.test")
        time.sleep(1)
    no_certificate(srv, "a.test")
    assert job["finished"] is False
    last = job["last"]
    # as the C module: curl's "couldn't connect" (to the proxy) is ECONNREFUSED
    assert last == {"status": 111, "status-description": "Connection refused",
                    "detail": unreachable_detail(peb.directory_url),
                    "activity": f"Contacting ACME server for a.test at {peb.directory_url}"}, \
        last
    # pebble saw no request: no directory, no account, no order
    assert pebble_requests(peb) == before, pebble_requests(peb)
    assert peb.orders() == []
    assert watch.seen == {}, watch.seen


# ---- MDHttpProxy per <MDomain> ----------------------------------------------------------

def per_md_conf(srv, peb, tp) -> str:
    return md_conf(srv, peb, "MDRetryDelay 30s\n"
                   f"<MDomain a.test>\n    MDHttpProxy {tp.url}\n</MDomain>\n"
                   "MDomain b.test\n" + vhosts("a.test") + vhosts("b.test"))


def test_per_md_proxy_used_for_that_md(proxy_env, md_module):
    """a.test has its own MDHttpProxy, b.test none: both certificates obtained, and the
    proxy carried CA traffic (only a.test's renewal can have used it)."""
    srv, peb, tp = proxy_env()
    srv.render(per_md_conf(srv, peb, tp))
    with DirectWatch(peb.port) as watch:
        assert srv.start().started
        wait_staged(srv, "a.test", timeout=LIMIT)
        wait_staged(srv, "b.test", timeout=LIMIT)
    assert tp.connects(peb.port) > 0, tp.log()[-3000:]
    assert all(r == f"CONNECT 127.0.0.1:{peb.port} HTTP/1.1" for r in tp.requests())
    if WATCH:  # both ways to pebble were taken (and the watch sees httpd's)
        assert watch.seen.get("tinyproxy", 0) > 0 and watch.seen.get("apache2", 0) > 0, \
            watch.seen


def test_per_md_proxy_down_only_that_md_fails(proxy_env, md_module):
    """The same with the proxy's port closed: a.test fails with a connection error, b.test
    (no proxy) gets its certificate from pebble directly."""
    srv, peb, tp = proxy_env(proxy_running=False)
    srv.render(per_md_conf(srv, peb, tp))
    assert srv.start().started
    wait_staged(srv, "b.test", timeout=LIMIT)
    job = wait_first_error(srv, "a.test")
    no_certificate(srv, "a.test")
    last = job["last"]
    assert (last.get("status"), last.get("status-description")) == (111, "Connection refused"), \
        job
    assert last.get("detail") == unreachable_detail(peb.directory_url), last


# ---- MDCACertificateFile naming another CA ----------------------------------------------

def make_other_ca(d) -> str:
    """A throw-away CA (openssl), not the one that signed pebble's TLS certificate."""
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "ca.key", "-out", "ca.pem", "-days", "30", "-subj",
                    "/CN=mod_md-rs test wrong CA", "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign"],
                   cwd=d, check=True, capture_output=True)
    os.chmod(os.path.join(d, "ca.pem"), 0o644)
    return os.path.join(d, "ca.pem")


@pytest.mark.parametrize("via", ["direct", "proxy"])
def test_wrong_ca_certificate_file(proxy_env, md_module, via):
    """MDCACertificateFile names a CA that did not sign pebble's TLS certificate (directly, and
    through the proxy's CONNECT tunnel: the proxy does not touch TLS): no certificate, and
    job.json `last` as the C module writes it (APR_EGENERAL 20014, 'Internal error', the
    'Unsuccessful in contacting ACME server' detail). Ours logs that certificate verification
    failed."""
    srv, peb, tp = proxy_env(proxy_running=(via == "proxy"))
    other = make_other_ca(str(srv.dir / "wrong-ca"))
    conf = md_conf(srv, peb, "MDRetryDelay 30s\nMDomain a.test\n" + vhosts("a.test"))
    conf = conf.replace(f"MDCACertificateFile {peb.ca_file}", f"MDCACertificateFile {other}")
    if via == "proxy":
        conf = f"MDHttpProxy {tp.url}\n" + conf
    srv.render(conf)
    assert srv.start().started
    job = wait_first_error(srv, "a.test")
    no_certificate(srv, "a.test")
    assert peb.orders() == []
    assert job["last"] == {
        "status": 20014,
        "status-description": "Internal error (specific information not available)",
        "detail": unreachable_detail(peb.directory_url),
        "activity": f"Contacting ACME server for a.test at {peb.directory_url}"}, job["last"]
    if via == "proxy":
        assert tp.connects(peb.port) > 0, tp.log()[-3000:]
    if md_module.name == "rs":
        assert re.search(r"certificate verif", srv.error_log(), re.I), srv.error_log()[-3000:]
