"""The fault matrix: real httpd + real pebble + lib/faultproxy.py between them.

Each case injects one kind of fault at one ACME step (k times, or for a share of requests),
then lets the module's own retries (MDRetryDelay 1s, doubling; Retry-After of 429/503) carry
the renewal on, with no restart, until the certificate is staged. Then a graceful restart
activates it. Asserted for mod_md-rs (rs):

- the fault was really injected (1 to k times; fewer than k when the client makes fewer
  requests of that step; a case whose fault never fires fails);
- survived: the certificate is staged within LIMIT seconds;
- no httpd process crashed ('segfault' / 'exit signal' in the error log: 0);
- no lost account key: every account key file (staging/<md>/account.pem, accounts/*/
  account.pem), watched every 50 ms, keeps the content it had when first seen, and one account
  key exists over the whole case;
- the staged key matches the staged certificate, the activated one in domains/ too, and the
  served certificate is the staged one with a chain that verifies against pebble's root;
- at most one extra order per fault injected (pebble's log; a percentage fault counts as one),
  and for ours tighter: no extra order at all except where the CA made an order whose answer
  was lost (newOrder truncated or garbled).

The C module (the reference) runs a subset (C_SUBSET) for comparison: the same checks except
that its survival and order counts are recorded, not asserted. Its crashes seen here (XFAIL:
a segfault after any failed authorization fetch, an abort on a garbled certificate) are
expected failures of its cases; see RELIABILITY.md.

Bounded (CI, default): BOUNDED below, every fault kind at one step and every step with one
fault, plus a few more; about 2.5-4 minutes for both modules. Full cross product of steps x kinds (except
badnonce at directory and nonce, which carry no signed request): MD_FAULTS_FULL=1 (about
8-10 minutes per module). Each case's figures (faults injected, survived, orders, seconds to the
certificate) go to MD_FAULTS_JSON (default <tmp>/md-faults-results.json) and a table is
printed at the end of the session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from lib.faultproxy import KINDS, STEPS, FaultProxy, wait_until
from lib.httpd import HttpdServer, module_by_name, selected_module_names
from lib.pebble import Pebble
from test_renewal import graceful, served_chain_ok, vhosts, wait_staged

MD = "a.test"
LIMIT = float(os.environ.get("MD_FAULTS_LIMIT", "90"))  # seconds from start to staged
FULL = os.environ.get("MD_FAULTS_FULL") == "1"


@dataclass(frozen=True)
class Case:
    step: str  # a step of lib.faultproxy.STEPS, or "*" (every step)
    kind: str
    count: Optional[int] = 2
    percent: Optional[float] = None
    retry_after: int = 2
    stall: float = 3.0

    @property
    def id(self) -> str:
        n = f"{self.percent:g}pct" if self.percent is not None else f"x{self.count}"
        return f"{'any' if self.step == '*' else self.step}-{self.kind}-{n}"


# Each fault kind at one step, each step with one fault (a diagonal), then more cases where a
# fault hits after pebble did its work (the answer is lost: truncate, garble).
BOUNDED = [
    Case("directory", "stall"),
    Case("nonce", "503"),
    Case("account", "truncate"),
    Case("order", "garble"),
    Case("authz", "500"),
    Case("challenge", "drop"),
    Case("finalize", "429"),
    Case("certificate", "badnonce"),
    Case("*", "badnonce", count=None, percent=90),
    Case("finalize", "truncate"),
    Case("challenge", "truncate"),
    Case("certificate", "garble"),
    Case("directory", "garble"),
    Case("poll", "500"),
    Case("poll", "garble"),
]
C_SUBSET = {"nonce-503-x2", "account-truncate-x2", "order-garble-x2", "finalize-truncate-x2",
            "certificate-garble-x2", "directory-garble-x2", "authz-500-x2"}


# Known failures of the reference, observed here (the C module is not ours to fix). strict: a
# case that starts passing is reported; not strict where the failure depends on chance.
_C_AUTHZ_SEGV = ("C mod_md 2.6: a failed authorization fetch ('ACME server authz: unable to "
                 "parse response for (null)') is followed by a segfault of the renewing child "
                 "(AH00052 exit signal Segmentation fault)")
XFAIL = {
    ("c", "certificate-garble-x2"): (
        "C mod_md 2.6: a garbled certificate download aborts the renewing child "
        "('[crit] Memory allocation failed, aborting process', AH00052 exit signal Abort)",
        True),
    **{("c", f"authz-{k}-x2"): (_C_AUTHZ_SEGV, True) for k in KINDS if k != "badnonce"},
    # 10 badNonce answers in a row (the C module resends 9 times) fail an authz fetch: then
    # the segfault above, in most runs
    ("c", "any-badnonce-90pct"): (_C_AUTHZ_SEGV + ", after 10 badNonce in a row", False),
}


def full_cases() -> list[Case]:
    cases = [Case(s, k) for s in STEPS for k in KINDS
             if not (k == "badnonce" and s in ("directory", "nonce"))]
    return cases + [Case("*", "badnonce", count=None, percent=90)]


def pytest_generate_tests(metafunc):
    if "fault_case" not in metafunc.fixturenames:
        return
    params = []
    for mod in selected_module_names(metafunc.config.getoption("--md-modules")):
        for case in (full_cases() if FULL else BOUNDED):
            if mod == "c" and not FULL and case.id not in C_SUBSET:
                continue
            xf = XFAIL.get((mod, case.id))
            marks = [pytest.mark.xfail(strict=xf[1], reason=xf[0])] if xf else []
            params.append(pytest.param(mod, case, id=f"{mod}-{case.id}", marks=marks))
    metafunc.parametrize("fault_mod, fault_case", params)


# ---- helpers ---------------------------------------------------------------------------

class AccountWatch:
    """Watches every account key file of the store (staging/<md>/account.pem, accounts/*/
    account.pem): the public key each path had when first seen, and any change of it later.
    The files are encrypted with a fresh salt at every write, so keys are compared by their
    public half."""

    def __init__(self, store: Path):
        self.store = store
        self.first: dict[str, str] = {}
        self.changes: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def paths(self):
        return list((self.store / "staging").glob("*/account.pem")) + \
            list((self.store / "accounts").glob("*/account.pem"))

    def scan(self):
        for p in self.paths():
            try:
                pub = public_key_of(p, self.store)
            except (OSError, ValueError, AssertionError):
                continue  # being written
            key = str(p.relative_to(self.store))
            if key not in self.first:
                self.first[key] = pub
            elif self.first[key] != pub and key not in self.changes:
                self.changes.append(key)

    def keys(self) -> int:
        return len(set(self.first.values()))

    def _run(self):
        while not self._stop.wait(0.05):
            self.scan()

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.scan()


def _pub(args: list[str]) -> str:
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def public_key_of(key: Path, store: Path) -> str:
    """The public key (PEM) of a private key file. Keys in staging/ and accounts/ are
    encrypted (PKCS#8) with the 48 bytes of md_store.json's "key" (both modules)."""
    data = key.read_bytes()
    if b"ENCRYPTED" not in data:
        return _pub(["pkey", "-in", str(key), "-pubout"])
    from cryptography.hazmat.primitives import serialization as ser
    k = json.loads((store / "md_store.json").read_text())["key"]
    raw = base64.urlsafe_b64decode(k + "=" * (-len(k) % 4))
    return ser.load_pem_private_key(data, raw).public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo).decode()


def key_matches_cert(key: Path, cert: Path, store: Path) -> bool:
    return public_key_of(key, store) == _pub(["x509", "-in", str(cert), "-noout", "-pubkey"])


def serial_of(cert: Path) -> int:
    return int(_pub(["x509", "-in", str(cert), "-noout", "-serial"]).strip().split("=")[1], 16)


def crashes(srv: HttpdServer) -> int:
    log = (srv.error_log() + srv.output()).lower()
    return log.count("segfault") + log.count("exit signal")


def conf(srv: HttpdServer, peb: Pebble, proxy: FaultProxy) -> str:
    return (f"MDCertificateAuthority {proxy.directory_url}\n"
            f"MDCACertificateFile {peb.ca_file}\n"
            "MDCertificateAgreement accepted\n"
            "MDContactEmail admin@example.test\n"
            f"MDPortMap http:{srv.http_port} https:{srv.https_port}\n"
            "MDCAChallenges http-01\n"
            "MDRetryDelay 1s\n"
            "MDCheckInterval 1s\n"
            f"MDomain {MD}\n" + vhosts(MD))


@contextlib.contextmanager
def proxied(module_name: str, *, status: bool = False):
    """(httpd server, pebble, fault proxy) for module_name; all stopped (by PID) at the end."""
    srv = HttpdServer(module_by_name(module_name), log_level="warn md:debug", status=status)
    peb = proxy = None
    try:
        peb = Pebble(str(srv.dir), srv.http_port, srv.https_port).start()
        proxy = FaultProxy(peb, rng_seed=1).start()
        yield srv, peb, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        srv.cleanup()
        if peb is not None:
            peb.stop()


# ---- the matrix ------------------------------------------------------------------------

def test_fault(request, fault_mod, fault_case: Case):
    case = fault_case
    # The case's figures travel in the test report (also from pytest-xdist workers);
    # conftest.py writes them to MD_FAULTS_JSON and prints the table at the end.
    rec: dict = {}
    request.node.user_properties.append(("fault_result", rec))
    with proxied(fault_mod) as (srv, peb, proxy):
        _fault_case(case, fault_mod, srv, peb, proxy, rec)


def _fault_case(case: Case, fault_mod: str, srv, peb, proxy, rec: dict):
    rec.update({"module": fault_mod, "step": case.step, "kind": case.kind,
                "asked": f"{case.percent:g}%" if case.percent is not None else str(case.count),
                "injected": 0, "survived": False, "orders": 0, "seconds_to_cert": None,
                "crashes": 0, "account_keys": 0, "account_key_changes": [], "requests": {},
                "checks": "fail", "error": None})
    if srv.keep:
        rec["dir"] = str(srv.dir)
    try:
        proxy.set_fault(case.step, case.kind, count=case.count, percent=case.percent,
                        retry_after=case.retry_after, stall=case.stall)
        srv.render(conf(srv, peb, proxy))
        with AccountWatch(srv.dir / "md") as watch:
            t0 = time.monotonic()
            res = srv.start()
            assert res.started, res.text[-3000:]
            try:
                wait_staged(srv, MD, timeout=LIMIT)
                rec["survived"] = True
                rec["seconds_to_cert"] = round(time.monotonic() - t0, 2)
            except AssertionError as e:
                rec["error"] = str(e)[-1500:]
            step = None if case.step == "*" else case.step
            rec["injected"] = proxy.injected(step, case.kind)
            rec["orders"] = len(peb.orders())
            rec["requests"] = dict(proxy.requests)
            proxy.clear_faults()
            staging = srv.dir / "md" / "staging" / MD
            staged_serial = None
            if rec["survived"]:
                staged_serial = serial_of(staging / "pubcert.pem")
                assert key_matches_cert(staging / "privkey.pem", staging / "pubcert.pem",
                                        srv.dir / "md")
                graceful(srv)
                domains = srv.dir / "md" / "domains" / MD
                time.sleep(0.5)  # the watch sees accounts/ after the activation
        rec["crashes"] = crashes(srv)
        rec["account_keys"] = watch.keys()
        rec["account_key_changes"] = watch.changes
        # -- the verdict --
        # k faults are asked for; fewer fire when the client makes fewer such requests (e.g.
        # an order that a resumed run finds finalized is not finalized again); none is a
        # broken case.
        assert 1 <= rec["injected"] <= (case.count or 10**6), rec
        assert rec["crashes"] == 0, srv.error_log()[-4000:]
        assert watch.changes == [], (watch.changes, watch.first.keys())
        assert watch.keys() <= 1, list(watch.first)
        if fault_mod == "rs":
            assert rec["survived"], rec["error"]
            allowed = 1 + (rec["injected"] if case.count is not None else 1)
            assert 1 <= rec["orders"] <= allowed, (peb.orders(), rec)
            # Tighter, for ours: an extra order only where the CA made one whose answer was
            # lost (newOrder truncated or garbled); any other fault is survived on the order
            # placed first (resumed from order.json; a lost challenge answer keeps the
            # challenge material for the CA's validation).
            if not (case.step == "order" and case.kind in ("truncate", "garble")):
                assert rec["orders"] == 1, (peb.orders(), rec)
        if rec["survived"]:
            assert watch.keys() == 1, list(watch.first)
            assert key_matches_cert(domains / "privkey.pem", domains / "pubcert.pem",
                                    srv.dir / "md")
            assert serial_of(domains / "pubcert.pem") == staged_serial
            leaf = served_chain_ok(srv, peb, MD)
            assert int(leaf["serialNumber"], 16) == staged_serial
            assert rec["crashes"] == crashes(srv) == 0
        rec["checks"] = "pass"
    except Exception as e:
        rec["error"] = rec["error"] or f"{type(e).__name__}: {str(e)[-1500:]}"
        raise


# ---- SIGKILL at each step ------------------------------------------------------------------

KILL_STALL = 60.0  # seconds a stalled request is held: far longer than the kill takes


@pytest.mark.parametrize("step", STEPS)
def test_rs_children_killed_at_each_step(step):
    """The renewing child SIGKILLed while its request of `step` hangs at the CA (the proxy
    holds it, pebble never sees it): every httpd child is killed, the parent starts new ones,
    and the renewal is completed by the next child. Asserted: exactly 1 order in total (the
    interrupted one is resumed from order.json, never placed again), one account key that
    never changes, the staged and activated key matches its certificate, the served chain
    verifies, and no httpd process crashed (the SIGKILLs aside). mod_md-rs only: the C module
    segfaults after several of these faults already (see XFAIL above)."""
    from lib.httpd import children_of
    with proxied("rs") as (srv, peb, proxy):
        proxy.set_fault(step, "stall", count=1, stall=KILL_STALL)
        srv.render(conf(srv, peb, proxy))
        with AccountWatch(srv.dir / "md") as watch:
            assert srv.start().started
            wait_until(lambda: proxy.injected(step, "stall") >= 1, 60, f"a stalled {step}")
            kids = children_of(srv.proc.pid)
            assert kids
            for pid in kids:
                os.kill(pid, 9)
            proxy.clear_faults()
            wait_staged(srv, MD, timeout=90)
            staging = srv.dir / "md" / "staging" / MD
            assert key_matches_cert(staging / "privkey.pem", staging / "pubcert.pem",
                                    srv.dir / "md")
            staged = serial_of(staging / "pubcert.pem")
            graceful(srv)
            time.sleep(0.5)
        assert len(peb.orders()) == 1, (step, peb.orders())
        assert watch.changes == [] and watch.keys() == 1, (watch.changes, list(watch.first))
        domains = srv.dir / "md" / "domains" / MD
        assert key_matches_cert(domains / "privkey.pem", domains / "pubcert.pem", srv.dir / "md")
        assert int(served_chain_ok(srv, peb, MD)["serialNumber"], 16) == staged
        log = (srv.error_log() + srv.output()).lower()
        assert "segfault" not in log
        assert all("killed" in line for line in log.splitlines() if "exit signal" in line)


# ---- hostile CA texts in the status pages ------------------------------------------------

HOSTILE = '<script>alert("md")</script><img src=x onerror=alert(1)> & "q" \'s\''


def test_hostile_ca_problem_text_in_status_pages(md_module):
    """A CA whose problem `detail` is markup (every newOrder answered 500 with it): the job's
    error reaches md-status (JSON, so quoted by construction) and the server-status page.
    Ours escapes it there; the C module prints it raw (a documented difference)."""
    from test_status import STATUS_LOCATIONS, get_json
    from test_serving import request
    with proxied(md_module.name, status=True) as (srv, peb, proxy):
        proxy.set_fault("order", "500", count=10**6, detail=HOSTILE)
        srv.render("MDServerStatus on\n" + conf(srv, peb, proxy) + STATUS_LOCATIONS)
        assert srv.start().started
        job = wait_until(lambda: (j := get_json(srv, f"/md-status/{MD}").get("renewal"))
                         and j.get("last", {}).get("detail") and j, 60, "a failed renewal")
        assert HOSTILE in job["last"]["detail"], job["last"]
        status, _, body = request(srv.http_port, "localhost", "/server-status")
        assert status == 200
        html = body.decode()
        assert "Managed Certificates" in html
        if md_module.name == "rs":
            assert "<script>" not in html and "<img" not in html, html
            assert "&lt;script&gt;alert(&quot;md&quot;)&lt;/script&gt;" in html, html
        else:
            assert '<script>alert("md")</script>' in html, html
        assert "exit signal" not in srv.error_log()


# ---- several MDs at once ---------------------------------------------------------------------

def test_rs_faults_with_three_mds_renewing_at_once():
    """Three MDs renewing concurrently through one faulty CA (authz 503 x3, finalize dropped
    x2, 30 % badNonce): each MD is staged with exactly one order, one shared account key that
    never changes, matching pairs, no crash."""
    mds = ("m1.test", "m2.test", "m3.test")
    with proxied("rs") as (srv, peb, proxy):
        proxy.set_fault("authz", "503", count=3)
        proxy.set_fault("finalize", "drop", count=2)
        body = conf(srv, peb, proxy).replace(f"MDomain {MD}\n" + vhosts(MD), "")
        srv.render(body + "".join(f"MDomain {m}\n" + vhosts(m) for m in mds))
        with AccountWatch(srv.dir / "md") as watch:
            assert srv.start().started
            proxy.set_fault("*", "badnonce", percent=30)
            for m in mds:
                wait_staged(srv, m, timeout=LIMIT)
            proxy.clear_faults()
            assert proxy.injected("authz", "503") == 3 and proxy.injected("finalize", "drop") == 2
            for m in mds:
                st = srv.dir / "md" / "staging" / m
                assert key_matches_cert(st / "privkey.pem", st / "pubcert.pem", srv.dir / "md")
        assert len(peb.orders()) == len(mds), peb.orders()
        assert watch.changes == [] and watch.keys() == 1, (watch.changes, list(watch.first))
        assert crashes(srv) == 0, srv.error_log()[-3000:]

