"""The life of a server, not one episode: how many ACME orders a server makes over restarts,
gracefuls, config changes and time, counted in pebble's log (lib/pebble.py: one
`Added order "<id>" to the db` line per order pebble created, one `Issued certificate serial`
line per certificate).

Each scenario runs for both modules (C mod_md 2.6 is the reference: its numbers are the stated
ones); the store-takeover tests use both modules on one server directory, and the
MDActivationRestart test is for mod_md-rs only (the C module has no such directive). As root
the harness runs the children as `User www-data`, so the renewal runs unprivileged and the
root-only domains/ tree is not readable by it.

Scenarios and the numbers (orders placed at pebble):

1. three MDs: 3 orders; activation, then 3 gracefuls and 2 stop+start: 0 more, same serials.
2. a name added to an MD: 1 more order; served with the new SAN; a further graceful: 0 more.
   Likewise a ServerAlias picked up by MDMembers auto, which md.json records.
3. a second key spec added (rsa2048 -> secp256r1 rsa2048): C 2 more orders (it renews the
   whole set of an incomplete MD), ours exactly 1 (only the missing key spec; the valid RSA
   certificate is carried over).
4. a store made by one module, run by the other and back again: 0 orders, same serials.
5. static certificate (MDCertificateFile in a root-only 0700 dir) inside MDWarnWindow: 0 orders,
   `expiring` sent exactly once (the C module rate-limits it to once a day), also across a
   graceful.
6. the renewing child SIGKILLed in the middle of its order: exactly 1 order for the MD in total,
   staged and served after a graceful.
7. MDActivationRestart on (rs): the module's own restart activates; then 0 more orders.
8. a "lying" staging/<md>/job.json (finished, notified, no staged files; C 2.6.10 #420) for an
   MD inside its renew window: 1 new order, staged.
9. short-lived certificates (pebble `certificateValidityPeriod`): each renewal happens once,
   right after its renew window opens and never before; three cycles = 1 + 3 orders; the warn
   window (wider than the renew window) raises `expiring` once per certificate.

Timing: `MDCheckInterval 1s` (jittered to 0.5-1.5 s) and SETTLE seconds after each (re)start; both
modules log one debug line per completed watchdog run (C: AH10107 "next run in", ours: "next
renewal check in"), and each settle checks that the watchdog really ran meanwhile, so "0 orders"
cannot come from a watchdog that did not run.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from lib.httpd import HttpdServer, check_prerequisites, children_of, module_by_name
from lib.pebble import Pebble
import lib.wait
from test_renewal import graceful, md_conf, served_chain_ok, vhosts, wait_staged

CHECK = "MDCheckInterval 1s\n"
SETTLE = 4.0  # seconds after a (re)start: the first watchdog run is at once, then every 0.5-1.5 s
MDS = ("a.test", "b.test", "c.test")
WATCHDOG_RUN = re.compile(r"AH10107: next run in|next renewal check in")


# ---- environment -----------------------------------------------------------------------

def _new_pebble(srv: HttpdServer, config=None) -> Pebble:
    # The point of these tests is a renewal running unprivileged: as root the harness makes the
    # children `User www-data` (see children_users()).
    assert os.geteuid() == 0, "the lifecycle tests run as root (children as www-data)"
    return Pebble(str(srv.dir), srv.http_port, srv.https_port, config=config).start()


@pytest.fixture
def life(httpd_factory):
    """make(pebble_config=None) -> (httpd server, running pebble) for the module under test."""
    pebbles = []

    def make(pebble_config=None):
        srv = httpd_factory(log_level="warn md:debug")
        pebbles.append(_new_pebble(srv, pebble_config))
        return srv, pebbles[-1]

    yield make
    for peb in pebbles:
        peb.stop()


@pytest.fixture
def life_of():
    """make(module name) -> (httpd server, running pebble), for tests that choose modules."""
    made = []

    def make(name: str, pebble_config=None):
        srv = HttpdServer(module_by_name(name), log_level="warn md:debug")
        made.append([srv, None])
        made[-1][1] = _new_pebble(srv, pebble_config)
        return tuple(made[-1])

    yield make
    for srv, peb in made:
        srv.cleanup()
        if peb is not None:
            peb.stop()


# ---- helpers ---------------------------------------------------------------------------

def md_body(mds, extra: str = "") -> str:
    """One MDomain per name, each with its own http + https vhost."""
    return extra + "".join(f"MDomain {m}\n" for m in mds) + "".join(vhosts(m) for m in mds)


def n_orders(peb: Pebble) -> int:
    return len(peb.orders())


def wait_for(cond, timeout: float, what: str, srv: HttpdServer | None = None):
    return lib.wait.wait_for(cond, timeout, what,
                             logs=lambda: srv.error_log()[-4000:] if srv is not None else "")


def start(srv: HttpdServer):
    """Start a (stopped) server; return once this start logged its own AH00489."""
    n = srv.error_log().count("AH00489")
    res = srv.start()
    assert res.started, res.text[-4000:]
    wait_for(lambda: srv.error_log().count("AH00489") > n, 20, "AH00489", srv)


def restart(srv: HttpdServer):
    """A full restart: stop the parent (SIGTERM), start the same server dir again."""
    srv.stop()
    start(srv)


def watchdog_runs(srv: HttpdServer) -> int:
    return len(WATCHDOG_RUN.findall(srv.error_log()))


def settle(srv: HttpdServer, seconds: float = SETTLE, runs: int = 2):
    """Let the renewal watchdog run; check it ran at least `runs` times meanwhile."""
    before = watchdog_runs(srv)
    time.sleep(seconds)
    ran = watchdog_runs(srv) - before
    assert ran >= runs, f"the watchdog ran {ran} times in {seconds}s\n{srv.error_log()[-3000:]}"


def served_serial(srv: HttpdServer, peb: Pebble, host: str, **kw) -> int:
    return int(served_chain_ok(srv, peb, host, **kw)["serialNumber"], 16)


def served_serials(srv: HttpdServer, peb: Pebble, hosts) -> dict[str, int]:
    return {h: served_serial(srv, peb, h) for h in hosts}


def wait_served_serial_change(srv, peb, host, old: int, timeout=15, **kw) -> int:
    """Right after a graceful an old child may still answer: wait for the new certificate."""
    return wait_for(lambda: (s := served_serial(srv, peb, host, **kw)) != old and s, timeout,
                    f"{host}: a certificate other than serial {old:x}", srv)


def md_stage(srv: HttpdServer, md: str) -> Path:
    return srv.dir / "md" / "staging" / md


def calls_of(log: Path, reason: str) -> list[str]:
    return [c for c in log.read_text().splitlines() if c.split(" ")[1:2] == [reason]]


MSG_LOG_SCRIPT = """#!/bin/sh
# MDMessageCmd: one line per call: <unix time> <reason> <md>
echo "$(date +%s) $*" >> "{log}"
"""


def message_cmd(srv: HttpdServer, script: str = MSG_LOG_SCRIPT, **fmt) -> tuple[Path, Path]:
    """An MDMessageCmd script and the log it appends to (writable by the child's user)."""
    log = srv.write_file("messages.log", "", mode=0o666)
    cmd = srv.write_file("conf/message.sh", script.format(log=log, **fmt), mode=0o755)
    return cmd, log


def children_users(srv: HttpdServer) -> set[str]:
    """The users httpd's children run as."""
    users = set()
    for pid in children_of(srv.proc.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # gone meanwhile
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
        users.add(pwd.getpwuid(uid).pw_name)
    return users


# ---- 1. first certificates, then restarts ------------------------------------------------

def test_life_first_certificates_then_restarts_order_nothing(life, md_module):
    """3 MDs: 3 orders. Activated, then 3 gracefuls and 2 stop+start with the watchdog running
    after each: 0 more orders and the served serials never change. (C: 3, 3, 3, ...)"""
    srv, peb = life()
    srv.render(md_conf(srv, peb, md_body(MDS, CHECK)))
    start(srv)
    for md in MDS:
        wait_staged(srv, md)
    assert n_orders(peb) == 3, peb.orders()
    graceful(srv)
    serials = served_serials(srv, peb, MDS)
    assert sorted(serials.values()) == sorted(peb.issued_serials())
    assert children_users(srv) == {"www-data"}
    for step in ("graceful 1", "graceful 2", "graceful 3", "restart 1", "restart 2"):
        graceful(srv) if step.startswith("graceful") else restart(srv)
        settle(srv)
        assert n_orders(peb) == 3, f"after {step}: {n_orders(peb)} orders"
        assert served_serials(srv, peb, MDS) == serials, f"after {step}"
    assert len(peb.issued_serials()) == 3


# ---- 2. a name added -----------------------------------------------------------------------

def test_life_name_added_orders_once(life, md_module):
    """`MDomain a.test` -> `MDomain a.test www.a.test`: exactly 1 more order, the new name is
    served after the next graceful, and a further graceful orders nothing. (C: 1, 2, 2)"""
    srv, peb = life()
    srv.render(md_conf(srv, peb, CHECK + "MDomain a.test\n" + vhosts("a.test")))
    start(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    first = served_serial(srv, peb, "a.test")
    assert n_orders(peb) == 1
    srv.render(md_conf(srv, peb, CHECK + "MDomain a.test www.a.test\n"
                       + vhosts("a.test", "www.a.test")))
    graceful(srv)
    wait_staged(srv, "a.test")
    assert n_orders(peb) == 2, peb.orders()
    graceful(srv)
    cert = served_chain_ok(srv, peb, "www.a.test")
    assert {v for _, v in cert["subjectAltName"]} == {"a.test", "www.a.test"}
    assert int(cert["serialNumber"], 16) != first
    settle(srv)
    assert n_orders(peb) == 2, "after the activating graceful"
    graceful(srv)
    settle(srv)
    assert n_orders(peb) == 2, "after one more graceful"
    assert served_serial(srv, peb, "a.test") == int(cert["serialNumber"], 16)


def test_life_alias_added_members_auto(life, md_module):
    """MDMembers auto (the default): a ServerAlias added to the MD's vhost joins the MD.
    md.json records it at the next start (the C module finishes its store sync after linking
    vhosts), exactly 1 more order covers it, and after the activating graceful nothing more is
    ordered. (C: 1, 2, 2)"""
    srv, peb = life()
    srv.render(md_conf(srv, peb, CHECK + "MDomain a.test\n" + vhosts("a.test")))
    start(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    assert n_orders(peb) == 1
    srv.render(md_conf(srv, peb, CHECK + "MDomain a.test\n" + vhosts("a.test", "www.a.test")))
    graceful(srv)
    md_json = json.loads((srv.dir / "md" / "domains" / "a.test" / "md.json").read_text())
    assert md_json["domains"] == ["a.test", "www.a.test"], md_json
    wait_staged(srv, "a.test")
    assert n_orders(peb) == 2, peb.orders()
    graceful(srv)
    cert = served_chain_ok(srv, peb, "www.a.test")
    assert {v for _, v in cert["subjectAltName"]} == {"a.test", "www.a.test"}
    settle(srv)
    assert n_orders(peb) == 2, "after the activating graceful"


# ---- 3. a key spec added -------------------------------------------------------------------

def test_life_key_spec_added(life, md_module):
    """`MDPrivateKeys rsa2048` -> `MDPrivateKeys secp256r1 rsa2048`: the MD is incomplete.
    The C module renews its whole set: 2 more orders, the RSA certificate is replaced too
    (C: 1, 3, 3). Ours orders only the missing key spec: exactly 1 more order; the valid RSA
    certificate is carried over into the new set (a deliberate difference, README). Both
    certificates are served after the graceful, then nothing more is ordered."""
    srv, peb = life()
    more = {"c": 2, "rs": 1}[md_module.name]

    def conf(keys):
        return md_conf(srv, peb, CHECK + f"<MDomain a.test>\n    MDPrivateKeys {keys}\n"
                       "</MDomain>\n" + vhosts("a.test"))

    srv.render(conf("rsa2048"))
    start(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    rsa = served_serial(srv, peb, "a.test", ecdsa=False)
    assert n_orders(peb) == 1
    srv.render(conf("secp256r1 rsa2048"))
    graceful(srv)
    wait_staged(srv, "a.test")
    assert n_orders(peb) == 1 + more, peb.orders()
    graceful(srv)
    ec = served_serial(srv, peb, "a.test", ecdsa=True)
    if more == 2:
        new_rsa = wait_served_serial_change(srv, peb, "a.test", rsa, ecdsa=False)
        assert sorted([rsa, ec, new_rsa]) == sorted(peb.issued_serials())
    else:
        assert served_serial(srv, peb, "a.test", ecdsa=False) == rsa, "carried over"
        assert sorted([rsa, ec]) == sorted(peb.issued_serials())
    settle(srv)
    assert n_orders(peb) == 1 + more, "after the activating graceful"
    graceful(srv)
    settle(srv)
    assert n_orders(peb) == 1 + more, "after one more graceful"


# ---- 4. one module's store taken over by the other -----------------------------------------

def _store_taken_over(make, first: str, second: str):
    srv, peb = make(first)
    body = md_conf(srv, peb, md_body(MDS, CHECK))
    srv.render(body)
    start(srv)
    for md in MDS:
        wait_staged(srv, md)
    graceful(srv)
    serials = served_serials(srv, peb, MDS)
    settle(srv)
    assert n_orders(peb) == 3, f"{first} after its activation: {peb.orders()}"
    srv.stop()
    for name in (second, first):
        module = module_by_name(name)
        check_prerequisites(module)
        srv.module = module
        srv.render(body)
        start(srv)
        settle(srv, runs=3)
        assert n_orders(peb) == 3, f"{name} on the {first} store: {n_orders(peb)} orders"
        assert served_serials(srv, peb, MDS) == serials, f"{name} on the {first} store"
        srv.stop()


def test_life_c_store_taken_over_by_rs(life_of):
    """C obtains and activates 3 certificates; ours runs the same server dir, then C again:
    0 orders after the first 3, the same serials served by both. (C alone: 3, 3)"""
    _store_taken_over(life_of, "c", "rs")


def test_life_rs_store_taken_over_by_c(life_of):
    """The reverse: our store run by the C module, then by ours again: 0 orders after 3."""
    _store_taken_over(life_of, "rs", "c")


# ---- 5. static certificate inside the warn window ------------------------------------------

def test_life_static_cert_expiring_once(life, md_module):
    """MDCertificateFile/KeyFile in a root-only dir (like certbot's live/), 10 days left,
    `MDWarnWindow 20d`: 0 orders; `expiring a.test` exactly once over several watchdog runs
    and a graceful (C: once a day at most). (C: 0 orders, 1 expiring)"""
    srv, peb = life()
    live = srv.dir / "live"
    live.mkdir(mode=0o700)
    os.chmod(live, 0o700)
    cert, key = live / "cert.pem", live / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "10", "-subj", "/CN=a.test",
                    "-addext", "subjectAltName=DNS:a.test"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    cmd, log = message_cmd(srv)
    srv.render(md_conf(srv, peb, CHECK + f"MDWarnWindow 20d\nMDMessageCmd {cmd}\n"
                       f"<MDomain a.test>\n    MDCertificateFile {cert}\n"
                       f"    MDCertificateKeyFile {key}\n</MDomain>\n" + vhosts("a.test")))
    start(srv)
    settle(srv, runs=3)
    assert len(calls_of(log, "expiring")) == 1, log.read_text()
    graceful(srv)
    settle(srv)
    assert [c.split(" ", 1)[1] for c in calls_of(log, "expiring")] == ["expiring a.test"], \
        log.read_text()
    assert n_orders(peb) == 0
    static_serial = int(subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(cert)],
                                       check=True, capture_output=True, text=True
                                       ).stdout.split("=")[1], 16)
    assert unverified_serial(srv, "a.test") == static_serial


def unverified_serial(srv: HttpdServer, host: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", srv.https_port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         check=True, capture_output=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


# ---- 6. the renewing child killed mid-order ------------------------------------------------

HANG_SCRIPT = """#!/bin/sh
# MDMessageCmd: log every call; on the first challenge-setup note the renewing child's pid and
# hang, so that the test can kill the child in the middle of its order.
echo "$(date +%s) $*" >> "{log}"
case "$1" in
  challenge-setup:*)
    if [ ! -e "{mark}" ]; then
      echo "$PPID $$" > "{mark}.tmp" && mv "{mark}.tmp" "{mark}"
      exec sleep 60
    fi ;;
esac
exit 0
"""


def test_life_child_killed_mid_order(life, md_module):
    """All children SIGKILLed while the order waits in challenge-setup: the renewal resumes in a
    new child and the MD gets exactly 1 order in total, staged and served. (C: 1)"""
    srv, peb = life()
    mark = srv.dir / "run" / "renewing-child.pid"
    os.chmod(srv.dir / "run", 0o777)
    cmd, log = message_cmd(srv, HANG_SCRIPT, mark=mark)
    srv.render(md_conf(srv, peb, CHECK + f"MDRetryDelay 1s\nMDMessageCmd {cmd}\n"
                       "MDomain a.test\n" + vhosts("a.test")))
    start(srv)
    wait_for(lambda: mark.exists() and mark.read_text().strip(), 30, "challenge-setup", srv)
    child, script = (int(x) for x in mark.read_text().split())
    assert n_orders(peb) == 1
    kids = children_of(srv.proc.pid)
    assert child in kids, (child, kids)
    assert children_users(srv) == {"www-data"}
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
    os.kill(script, signal.SIGKILL)  # the hanging script (orphaned by its child)
    wait_staged(srv, "a.test", timeout=90)
    assert n_orders(peb) == 1, (peb.orders(), log.read_text())
    graceful(srv)
    assert served_serial(srv, peb, "a.test") in peb.issued_serials()
    settle(srv)
    assert n_orders(peb) == 1, peb.orders()
    assert len(peb.issued_serials()) == 1


# ---- 7. MDActivationRestart (mod_md-rs only) ----------------------------------------------

def test_life_rs_activation_restart_then_no_orders(life_of):
    """MDActivationRestart on: our module restarts httpd itself once the renewals are staged;
    after that restart 0 more orders (total == number of MDs)."""
    srv, peb = life_of("rs")
    mds = MDS[:2]
    srv.render(md_conf(srv, peb, md_body(mds, CHECK + "MDActivationRestart on\n")))
    start(srv)
    for md in mds:
        wait_staged(srv, md)
    assert n_orders(peb) == 2
    wait_for(lambda: srv.error_log().count("AH10068") >= 2, 60, "activation by restart", srv)
    serials = wait_for(lambda: _try_served(srv, peb, mds), 30, "the certificates served", srv)
    for _ in range(2):
        settle(srv)
        assert n_orders(peb) == 2, peb.orders()
    assert served_serials(srv, peb, mds) == serials


def _try_served(srv, peb, hosts):
    try:
        return served_serials(srv, peb, hosts)
    except (ssl.SSLError, OSError):
        return None


# ---- 8. a lying job.json ------------------------------------------------------------------

def test_life_lying_job_json_recovers(life, md_module):
    """staging/a.test/job.json claims finished + notified + notified-renewed, but nothing is
    staged; the MD is put into its renew window (MDRenewWindow 2000d > pebble's 5 years): the
    job is not believed, 1 new order, staged, served after a graceful. (C 2.6.10: 1, 2, 2)"""
    srv, peb = life()

    def conf(window=""):
        return md_conf(srv, peb, CHECK + window + "MDomain a.test\n" + vhosts("a.test"))

    srv.render(conf())
    start(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    first = served_serial(srv, peb, "a.test")
    assert n_orders(peb) == 1
    srv.stop()
    stage = md_stage(srv, "a.test")
    assert not stage.exists()
    stage.mkdir(parents=True)
    lie = {"name": "a.test", "finished": True, "notified": True, "notified-renewed": True,
           "errors": 0, "log": {"entries": []}}
    (stage / "job.json").write_text(json.dumps(lie))
    www = pwd.getpwnam("www-data")  # staging/ belongs to the children's user
    for p in (stage, stage / "job.json"):
        os.chown(p, www.pw_uid, www.pw_gid)
    srv.render(conf("MDRenewWindow 2000d\n"))
    start(srv)
    wait_for(lambda: (stage / "pubcert.pem").exists(), 60, "a staged certificate", srv)
    wait_staged(srv, "a.test")
    assert n_orders(peb) == 2, peb.orders()
    settle(srv)
    assert n_orders(peb) == 2, peb.orders()
    srv.render(conf())  # out of the window again, so the activated one is not renewed
    graceful(srv)
    assert wait_served_serial_change(srv, peb, "a.test", first) == peb.issued_serials()[-1]
    settle(srv)
    assert n_orders(peb) == 2, peb.orders()


# ---- 9. time: renew windows and the warn window over three renewals ------------------------

LIFETIME = 30  # seconds (pebble `certificateValidityPeriod`)
# The renew window opens RENEW of the lifetime before notAfter (7.5 s after notBefore), the warn
# window WARN before it (3 s after notBefore). A wide renew window leaves 22 s for ordering,
# staging, the graceful and the first handshake before the old certificate expires: under a
# loaded CI machine half of the lifetime was once not enough.
RENEW, WARN = 0.75, 0.9


def cert_times(cert: dict) -> tuple[float, float]:
    return (ssl.cert_time_to_seconds(cert["notBefore"]),
            ssl.cert_time_to_seconds(cert["notAfter"]))


def test_life_renewal_cycles(life, md_module):
    """Certificates living LIFETIME s, `MDRenewWindow 75%`, `MDWarnWindow 90%`, the server left
    running with a graceful after each staged renewal: each certificate is renewed exactly once,
    not before its renew window opens and at most a few seconds after; three cycles = 1 + 3
    orders. `expiring` is raised once per certificate, between its warn window (90%: 3 s in)
    and its renewal (the job that rate-limits it is a new one after each activation).
    (C: orders 1, 2, 3, 4; expiring 1 per certificate)"""
    srv, peb = life({"certificateValidityPeriod": LIFETIME})
    cmd, log = message_cmd(srv)
    srv.render(md_conf(srv, peb, "MDCheckInterval 1s\n"
                       f"MDRenewWindow {RENEW:.0%}\nMDWarnWindow {WARN:.0%}\n"
                       f"MDMessageCmd {cmd}\nMDomain a.test\n" + vhosts("a.test")))
    start(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    cert = served_chain_ok(srv, peb, "a.test")
    assert n_orders(peb) == 1
    for cycle in (1, 2, 3):
        not_before, not_after = cert_times(cert)
        assert not_after - not_before == pytest.approx(LIFETIME, abs=1.5)
        window = not_after - (not_after - not_before) * RENEW
        wait_for(lambda: n_orders(peb) > cycle, LIFETIME, f"renewal {cycle}", srv)
        ordered = time.time()
        assert n_orders(peb) == cycle + 1
        # whole seconds in the certificate: allow 1 s early
        assert ordered >= window - 1, f"renewal {cycle} {window - ordered:.1f}s before its window"
        assert ordered <= window + 6, f"renewal {cycle} {ordered - window:.1f}s after its window"
        expiring = calls_of(log, "expiring")
        assert len(expiring) == cycle, log.read_text()
        assert float(expiring[-1].split()[0]) >= not_after - WARN * LIFETIME - 1, expiring
        wait_staged(srv, "a.test")
        graceful(srv)
        cert = wait_for(lambda: (c := served_chain_ok(srv, peb, "a.test"))["serialNumber"]
                        != cert["serialNumber"] and c, 15, "the renewed certificate", srv)
        assert n_orders(peb) == cycle + 1
    assert len(peb.issued_serials()) == 4
    assert len(calls_of(log, "expiring")) == 3
