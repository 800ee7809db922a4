"""Graceful restart storms with renewals in flight (real httpd, real pebble, `User www-data`).

Three MDs with certificates living LIFETIME seconds and `MDRenewWindow 75%`; once a renewal
is running (its renew window opened), a request loop over HTTPS (SNI of each MD, chain verified
against pebble's root) runs on loopback while the parent is sent STORM gracefuls in a row, each
waiting for the new generation (AH00489). Afterwards: 0 failed requests, 0 crashed httpd
processes (no segfault / `exit signal` line), the interrupted renewals complete, no order is
placed twice (orders not ending in a certificate <= 1 per MD) and every MD is served with a
valid certificate. Figures are printed (run with -s) and kept in RELIABILITY.md.

mod_md-rs only: the C module fails it. Observed here with C mod_md 2.6 (apache2 2.4.71): 5
children ended with `AH00052: ... exit signal Segmentation fault (11)` during 50 gracefuls, and
no renewal completed during the storm (4 orders, 3 certificates).
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time

from test_lifecycle import CHECK, life_of, md_body, n_orders, start, wait_for  # noqa: F401
from test_renewal import graceful, md_conf, served_chain_ok, wait_staged

MDS = ("s1.test", "s2.test", "s3.test")
LIFETIME = 30
STORM = 50
CRASH = re.compile(r"segfault|exit signal|AH00052|AH00060")


class RequestLoop(threading.Thread):
    """HTTPS GETs round robin over the MDs until stopped; counts successes and failures."""

    def __init__(self, srv, root_pem: str):
        super().__init__(daemon=True)
        self.srv, self.ok, self.failed = srv, 0, []
        self.ctx = ssl.create_default_context(cadata=root_pem)
        self.halt = threading.Event()

    def get(self, host: str) -> int:
        """GET /index.html over TLS with SNI `host` (chain and name verified): the status."""
        with socket.create_connection(("127.0.0.1", self.srv.https_port), timeout=10) as raw:
            with self.ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET /index.html HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                head = tls.recv(64).decode(errors="replace")
        return int(head.split(" ")[1]) if head.startswith("HTTP/") else -1

    def run(self):
        i = 0
        while not self.halt.is_set():
            host = MDS[i % len(MDS)]
            i += 1
            try:
                status = self.get(host)
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append((host, status))
            except (OSError, ValueError, IndexError) as e:
                self.failed.append((host, repr(e)))
            time.sleep(0.01)


def test_rs_graceful_storm_with_renewals_in_flight(life_of):
    srv, peb = life_of("rs", {"certificateValidityPeriod": LIFETIME})
    srv.write_file("htdocs/index.html", "ok\n")
    srv.render(md_conf(srv, peb, md_body(MDS, CHECK + "MDRenewWindow 75%\n")))
    start(srv)
    for md in MDS:
        wait_staged(srv, md)
    graceful(srv)
    for md in MDS:
        served_chain_ok(srv, peb, md)
    # wait until the renew windows opened and a renewal is running: the storm hits it
    ordering = srv.error_log().count("ordering a certificate")
    wait_for(lambda: srv.error_log().count("ordering a certificate") > ordering, LIFETIME,
             "a renewal to start", srv)
    loop = RequestLoop(srv, peb.root_pem())
    loop.start()
    t0 = time.monotonic()
    try:
        for _ in range(STORM):
            graceful(srv)
            time.sleep(0.2)
    finally:
        loop.halt.set()
        loop.join()
    took = time.monotonic() - t0
    orders, issued = n_orders(peb), len(peb.issued_serials())
    print(f"\n[rs] {STORM} gracefuls in {took:.1f}s: {loop.ok} requests ok, "
          f"{len(loop.failed)} failed; orders {orders}, certificates {issued}")
    assert loop.failed == [], loop.failed[:10]
    assert loop.ok > STORM, loop.ok
    assert not CRASH.search(srv.error_log()), CRASH.search(srv.error_log())
    # the interrupted renewals complete afterwards: every MD renewed once, no order placed
    # twice (an order not ending in a certificate: at most one per MD)
    for md in MDS:
        wait_staged(srv, md)
    graceful(srv)
    orders, issued = n_orders(peb), len(peb.issued_serials())
    print(f"[rs] after the storm: orders {orders}, certificates {issued}")
    assert issued >= 2 * len(MDS), issued
    assert orders - issued <= len(MDS), (orders, issued)
    now = time.time()
    for md in MDS:
        cert = served_chain_ok(srv, peb, md)
        assert ssl.cert_time_to_seconds(cert["notAfter"]) > now, (md, cert["notAfter"])
