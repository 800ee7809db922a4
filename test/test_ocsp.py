"""OCSP stapling end to end, side by side with the C module: real httpd, real pebble with
`ocspResponderURL`, the test responder of lib/ocsp.py (see compat/ocsp-c-observations.md for
what the C module was seen doing; the expectations here are those observations).

Responses are valid 1 minute (`-nmin 1`) unless a test needs more, so the first OCSP request
comes right after the graceful restart that activates the certificate. Where mod_md-rs differs on
purpose (README "Deliberate differences"), the expectation names both: the failure detail says
why (C: only "OCSP status update failed (N. time)"), in our own words.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import time
import urllib.request
from email.utils import parsedate_to_datetime

import pytest

from lib.httpd import HttpdServer
from lib.ocsp import OcspResponder, cert_ocsp_url, cert_sha1_hex, response_text
from lib.pebble import Pebble
from lib.wait import wait_for
from test_renewal import graceful, md_conf, vhosts, wait_staged


class Env:
    def __init__(self, srv: HttpdServer, peb: Pebble, resp: OcspResponder, ocsp_url: bool):
        self.srv, self.peb, self.resp, self.ocsp_url = srv, peb, resp, ocsp_url
        self.messages = srv.dir / "messages.txt"

    @property
    def store(self):
        return self.srv.dir / "md"

    def conf(self, extra: str = "", stapling: str = "on", body_extra: str = "") -> str:
        script = self.srv.write_file(
            "msg.sh", f'#!/bin/sh\necho "$@" >> {self.messages}\n', mode=0o755)
        if not self.messages.exists():
            self.messages.write_text("")
            os.chmod(self.messages, 0o666)
        body = (f"MDStapling {stapling}\nMDServerStatus on\nMDMessageCmd {script}\n{extra}\n"
                "<Location /md-status>\n  SetHandler md-status\n</Location>\n"
                "<Location /server-status>\n  SetHandler server-status\n</Location>\n"
                "MDomain a.test\n" + vhosts("a.test") + body_extra)
        return md_conf(self.srv, self.peb, body)

    def start(self, extra: str = "", add: bool = True, mode: str = "pass"):
        """Start httpd, get the certificate, put it into the index (unless add=False), set the
        responder mode, graceful restart to activate it. Returns the time of the graceful."""
        self.srv.render(self.conf(extra))
        r = self.srv.start()
        assert r.started, r.text
        wait_staged(self.srv, "a.test")
        self.pubcert_staged = self.store / "staging" / "a.test" / "pubcert.pem"
        if add:
            self.resp.add_cert(str(self.pubcert_staged))
        self.resp.set_mode(mode)
        t = time.time()
        graceful(self.srv)
        return t

    @property
    def pubcert(self):
        return self.store / "domains" / "a.test" / "pubcert.pem"

    def cert_id(self) -> str:
        return cert_sha1_hex(str(self.pubcert))

    def ocsp_file(self, group="a.test"):
        return self.store / "ocsp" / group / f"ocsp-{self.cert_id()}.json"

    def job(self, group="a.test") -> dict:
        return json.loads((self.store / "ocsp" / group / "job.json").read_text())

    def get(self, path: str) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.srv.http_port}{path}",
                                      timeout=10).read().decode()

    def md_status(self, name: str = "") -> dict:
        return json.loads(self.get("/md-status" + (f"/{name}" if name else "")))

    def stapled(self, host="a.test") -> str:
        p = subprocess.run(["openssl", "s_client", "-status", "-servername", host, "-connect",
                            f"127.0.0.1:{self.srv.https_port}"], input=b"",
                           capture_output=True, timeout=20)
        return p.stdout.decode(errors="replace")

    def messages_list(self) -> list[str]:
        return [l for l in self.messages.read_text().splitlines() if l.strip()] \
            if self.messages.exists() else []


@pytest.fixture
def ocsp_env(httpd_factory):
    made = []

    def make(ocsp_url=True, nmin=1):
        srv = httpd_factory(status=True, log_level="warn md:debug")
        resp = OcspResponder(str(srv.dir), nmin=nmin)
        peb = Pebble(str(srv.dir), srv.http_port, srv.https_port,
                     config=resp.pebble_config() if ocsp_url else {})
        made.append((peb, resp))
        peb.start()
        resp.start(pebble=peb)
        return Env(srv, peb, resp, ocsp_url)

    yield make
    for peb, resp in made:
        resp.stop()
        peb.stop()


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _owner(p) -> str:
    return pwd.getpwuid(os.stat(p).st_uid).pw_name


RFC1123 = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")


def test_good_response_files_status_and_staple(ocsp_env, md_module):
    """(a) files, (b) md-status, (c) server-status, (d) stapled response + first request."""
    env = ocsp_env()
    t_graceful = env.start()
    assert cert_ocsp_url(str(env.pubcert)) == env.resp.url
    assert env.pubcert.read_text().count("BEGIN CERTIFICATE") == 2  # leaf + issuer
    # (d) first request right after the graceful (C: 0.03 s)
    env.resp.wait_requests(1, timeout=10)
    assert env.resp.request_count() >= 1
    assert env.resp.requests[0].when - t_graceful < 5
    req = env.resp.requests[0]
    assert req.method == "POST"
    assert req.headers.get("Content-Type") == "application/ocsp-request"
    f = wait_for(lambda: env.ocsp_file().exists() and env.ocsp_file(), what="ocsp file")
    # (a) files
    cid = env.cert_id()
    assert re.fullmatch(r"[0-9a-f]{40}", cid)
    wait_for(lambda: env.job().get("last", {}).get("status") == 0, what="job success")
    data = json.loads(f.read_text())
    assert list(data) == ["response", "status", "valid"]
    assert data["status"] == "good"
    assert RFC1123.match(data["valid"]["from"]) and RFC1123.match(data["valid"]["until"])
    b64 = data["response"]
    assert "=" not in b64 and "+" not in b64 and "/" not in b64  # base64url, no padding
    der = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    assert "Cert Status: good" in response_text(der)
    job = env.job()
    assert job["name"] == "a.test" and job["finished"] is True and job["errors"] == 0
    assert "next-run" not in job
    assert RFC1123.match(job["last-run"])
    assert job["last"]["status"] == 0
    assert job["last"]["detail"].startswith("certificate status is GOOD, status valid ")
    assert job["last"]["activity"] == f"status of certid {cid}, reading response"
    types = [e["type"] for e in job["log"]["entries"]]
    assert types[:6] == ["message-ocsp-renewed", "finished", "progress", "progress", "progress",
                         "starting"], types
    details = [e.get("detail") for e in job["log"]["entries"][2:5]]
    assert details[2] == f"status of certid {cid}, contacting {env.resp.url}"
    if os.geteuid() == 0:
        gdir = env.store / "ocsp" / "a.test"
        assert _mode(gdir) == 0o755 and _owner(gdir) == "www-data"
        assert _mode(f) == 0o644 and _owner(f) == "www-data"
        assert _mode(gdir / "job.json") == 0o644
    assert "ocsp-renewed a.test" in env.messages_list()
    # (b) md-status
    md = env.md_status("a.test")
    assert md["stapling"] is True
    o = md["cert"]["rsa"]["ocsp"]
    assert o["status"] == "good" and o["valid"] == data["valid"]
    assert o["renewal"]["name"] == "a.test" and "log" in o["renewal"]
    assert o["renewal"]["last"] == env.job()["last"] or o["renewal"]["last"]["status"] == 0
    all_md = env.md_status()["managed-domains"][0]["cert"]["rsa"]["ocsp"]
    assert all_md["status"] == "good" and "log" not in all_md["renewal"]
    # (c) server-status
    auto = env.get("/server-status?auto")
    for line in ("ManagedDomain[0]Stapling: on", "ManagedStaplingsTotal: 1",
                 "ManagedStaplingsOK: 1", "ManagedStaplingsRenew: 0",
                 "ManagedStaplingsErrored: 0", "ManagedStapling[0]Domain: a.test",
                 f"ManagedStapling[0]CertificateID: {cid}", "ManagedStapling[0]OCSPStatus: good",
                 "ManagedStapling[0]ResponderName: 127.0.0.1",
                 f"ManagedStapling[0]ResponderURL: {env.resp.url}"):
        assert line in auto.splitlines(), (line, auto)
    assert re.search(r"^ManagedStapling\[0\]StaplingValidUntil: \d{4}-\d\d-\d\d$", auto, re.M)
    assert re.search(r"^ManagedStapling\[0\]ActivityRefresh: -?\d+$", auto, re.M)
    html = env.get("/server-status")
    assert "<h3>Managed Staplings</h3>\n<table class='md_ocsp_status'><thead><tr>" in html
    assert ('<th class="Domain">Domain</th><th class="CertificateID">CertificateID</th>'
            '<th class="OCSPStatus">OCSPStatus</th><th class="StaplingValid">StaplingValid</th>'
            '<th class="Responder">Responder</th><th class="Activity">Activity</th>') in html
    assert (f"<tr class=\"even\"><td>a.test</td><td>{cid}</td><td>good</td><td>until <span "
            f"title='{data['valid']['from']} - {data['valid']['until']}'") in html
    assert f"<td><a href='{env.resp.url}'>127.0.0.1</a></td><td>Refresh <span title=" in html
    # (d) stapled
    out = env.stapled()
    assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
    # stapling off: no ocsp in md-status, no table, nothing stapled
    env.srv.render(env.conf(stapling="off"))
    graceful(env.srv)
    md = env.md_status("a.test")
    assert md["stapling"] is False and "ocsp" not in md["cert"]["rsa"]
    auto = env.get("/server-status?auto")
    assert "ManagedStaplingsTotal: 0" in auto and "ManagedStapling[0]" not in auto
    assert "Managed Staplings" not in env.get("/server-status")
    assert "OCSP response: no response sent" in env.stapled()


def test_responder_down_keeps_last_good_response(ocsp_env, md_module):
    """A good response, then the responder goes down: the last good response stays stapled
    while it is valid, the refresh attempts (from the renew window on) fail with growing
    pauses (MDRetryDelay 1s doubled per error), nothing is stored over the good response."""
    env = ocsp_env(nmin=1)
    # the renew window starts 6 s into the 60 s response
    env.start(extra="MDRetryDelay 1s\nMDStaplingRenewWindow 90%")
    wait_for(lambda: env.ocsp_file().exists(), what="ocsp file")
    good = env.ocsp_file().read_text()
    until = json.loads(good)["valid"]["until"]
    env.resp.set_mode("down")
    fails = re.compile(r"^\[[^\]]*?(\d\d):(\d\d):(\d\d)\.(\d+) \d{4}\].*"
                       r"OCSP status update failed \((\d+)\. time\)")

    def failures() -> dict[int, float]:
        out = {}
        for line in env.srv.error_log().splitlines():
            m = fails.match(line)
            if m:
                h, mi, sec, frac, n = m.groups()
                out.setdefault(int(n), int(h) * 3600 + int(mi) * 60 + int(sec)
                               + float("0." + frac))
        return out

    wait_for(lambda: len(failures()) >= 4, timeout=40, what="4 failed refreshes")
    f = failures()
    # backoff: 1 s doubled per error, +-50 % jitter: the 3 pauses after the first failure
    # take at least 0.5 + 1 + 2 s; an unbounded retry loop would take milliseconds
    assert f[4] - f[1] >= 3.0, f
    assert len(f) < 10, f
    assert env.ocsp_file().read_text() == good, "the good response is not replaced"
    # still within its validity (60 s; the failures began 6 s in): still stapled
    assert time.time() < parsedate_to_datetime(until).timestamp() - 2
    assert "Cert Status: good" in env.stapled()
    assert env.job()["last"]["status"] == 111


# the job's failure detail: the C module's counter; ours adds the reason
FAILED_DETAIL = {"c": r"OCSP status update failed \(\d+\. time\)",
                 "rs": r"OCSP status update failed \(\d+\. time\): .*Connection refused.*"}


def test_responder_down_then_up(ocsp_env, md_module):
    """(f) errors while the responder refuses connections; recovery when it answers again."""
    env = ocsp_env()
    env.start(extra="MDRetryDelay 1s", mode="down")
    wait_for(lambda: (env.store / "ocsp" / "a.test" / "job.json").exists()
             and env.job().get("last", {}).get("status") == 111, what="job error")
    job = env.job()
    cid = env.cert_id()
    assert job["last"]["status-description"] == "Connection refused"
    assert re.fullmatch(FAILED_DETAIL[md_module.name], job["last"]["detail"]), job["last"]
    assert job["last"]["activity"] == f"status of certid {cid}, contacting {env.resp.url}"
    types = [e["type"] for e in job["log"]["entries"]]
    assert "ocsp-error" in types
    err = next(e for e in job["log"]["entries"] if e["type"] == "ocsp-error")
    assert re.fullmatch(FAILED_DETAIL[md_module.name], err["detail"]), err
    assert not env.ocsp_file().exists()  # nothing stored without an answer
    wait_for(lambda: "ocsp-errored a.test" in env.messages_list(), what="ocsp-errored event")
    o = env.md_status("a.test")["cert"]["rsa"]["ocsp"]
    assert o["status"] == "unknown" and "valid" not in o
    assert o["renewal"]["last"]["status"] == 111
    assert "OCSP response: no response sent" in env.stapled()
    auto = env.get("/server-status?auto")
    assert "ManagedStapling[0]OCSPStatus: unknown" in auto
    assert "ManagedStapling[0]ActivityLastStatus: Connection refused" in auto
    assert "ManagedStaplingsErrored: 1" in auto
    # back up: the backoff (MDRetryDelay 1s) brings a good response within seconds
    env.resp.set_mode("pass")
    wait_for(lambda: env.ocsp_file().exists(), timeout=40, what="ocsp file after recovery")
    wait_for(lambda: env.job()["last"]["status"] == 0, what="job success")
    assert "Cert Status: good" in env.stapled()
    wait_for(lambda: "ocsp-renewed a.test" in env.messages_list(), what="ocsp-renewed event")


@pytest.mark.parametrize("fault,detail", [
    ("garbage", {"c": "response body does not parse as OCSP response, status=200",
                 "rs": "OCSP response does not parse"}),
    ("500", {"c": "response body does not parse as OCSP response, status=500",
             "rs": "answered HTTP status 500"}),
    ("wrong-nonce", {"c": "OCSP nonce mismatch in response",
                     "rs": "OCSP response nonce does not match the request's nonce"}),
])
def test_bad_answers_are_not_stored(ocsp_env, md_module, fault, detail):
    """Garbage, HTTP 500 and a response to another nonce are errors: nothing stored or
    stapled, job.json `last` says why (C: status 22, a `progress` entry with the reason)."""
    env = ocsp_env()
    env.start(extra="MDRetryDelay 1s", mode=fault)
    wait_for(lambda: (env.store / "ocsp" / "a.test" / "job.json").exists()
             and env.job().get("errors", 0) >= 1, what="job error")
    job = env.job()
    assert job["last"]["status"] == 22 and job["last"]["status-description"] == "Invalid argument"
    detail = detail[md_module.name]
    assert any(detail in (e.get("detail") or "") for e in job["log"]["entries"]), job
    assert "next-run" in job
    assert not env.ocsp_file().exists()
    assert "OCSP response: no response sent" in env.stapled()


def test_oversized_answer_is_refused(ocsp_env, md_module):
    """A 2 MiB body (CVE-2026-29168 bounds OCSP responses): the transfer is cut off, nothing
    stored or stapled, the job says EGENERAL while contacting the responder (both modules)."""
    env = ocsp_env()
    env.start(extra="MDRetryDelay 1s", mode="oversized")
    wait_for(lambda: (env.store / "ocsp" / "a.test" / "job.json").exists()
             and env.job().get("last", {}).get("status") == 20014, what="job error")
    job = env.job()
    assert ", contacting " in job["last"]["activity"], job["last"]
    if md_module.name == "rs":
        assert "exceeds the limit of 65536 bytes" in job["last"]["detail"], job["last"]
    assert not env.ocsp_file().exists()
    assert "OCSP response: no response sent" in env.stapled()


def test_revoked_triggers_renewal_at_next_watchdog_start(ocsp_env, md_module):
    """(g) a revoked answer is stored and stapled; the renewal watchdog renews the MD when it
    runs next (here: the graceful restart), not before."""
    env = ocsp_env()
    env.srv.render(env.conf())
    assert env.srv.start().started
    wait_staged(env.srv, "a.test")
    env.resp.revoke(str(env.store / "staging" / "a.test" / "pubcert.pem"))
    graceful(env.srv)
    wait_for(lambda: env.ocsp_file().exists(), what="ocsp file")
    assert json.loads(env.ocsp_file().read_text())["status"] == "revoked"
    assert env.job()["last"]["detail"].startswith("certificate status is REVOKED")
    out = env.stapled()
    assert "Cert Status: revoked" in out, out
    auto = env.get("/server-status?auto")
    assert "ManagedStapling[0]OCSPStatus: revoked" in auto
    assert "ManagedStaplingsRenew: 1" in auto and "ManagedStaplingsOK: 0" in auto
    assert env.md_status("a.test")["cert"]["rsa"]["ocsp"]["status"] == "revoked"
    assert len(env.peb.orders()) == 1
    graceful(env.srv)
    wait_for(lambda: len(env.peb.orders()) == 2, timeout=30, what="a second order")
    wait_staged(env.srv, "a.test")
    # the new certificate is activated and stapled `good`; no third order
    old_id = env.cert_id()
    env.resp.add_cert(str(env.store / "staging" / "a.test" / "pubcert.pem"))
    graceful(env.srv)
    assert env.cert_id() != old_id
    wait_for(lambda: env.ocsp_file().exists(), what="ocsp file of the new certificate")
    assert json.loads(env.ocsp_file().read_text())["status"] == "good"
    wait_for(lambda: "Cert Status: good" in env.stapled(), what="new certificate stapled")
    time.sleep(2)
    assert len(env.peb.orders()) == 2


def test_no_ocsp_url_nothing_stapled(ocsp_env, md_module):
    """(h) pebble without ocspResponderURL: no AIA, no OCSP files, no ocsp in md-status."""
    env = ocsp_env(ocsp_url=False)
    env.start(add=False)
    assert cert_ocsp_url(str(env.pubcert)) == ""
    time.sleep(2)
    assert env.resp.request_count() == 0
    ocsp_dir = env.store / "ocsp"
    assert not ocsp_dir.exists() or list(ocsp_dir.iterdir()) == []
    md = env.md_status("a.test")
    assert md["stapling"] is True and "ocsp" not in md["cert"]["rsa"]
    auto = env.get("/server-status?auto")
    assert "ManagedStaplingsTotal: 0" in auto
    assert "OCSP response: no response sent" in env.stapled()
    assert not any(m.startswith("ocsp-") for m in env.messages_list())


def test_stored_response_survives_restarts(ocsp_env, md_module):
    """(k) a stored response far from its refresh: neither a graceful nor a full restart makes
    a new request; the stored response is stapled right away."""
    env = ocsp_env(nmin=60)
    env.start()
    wait_for(lambda: env.ocsp_file().exists(), what="ocsp file")
    n = env.resp.wait_requests(1)
    assert n == 1
    graceful(env.srv)
    time.sleep(3)
    assert env.resp.request_count() == 1
    env.srv.stop()
    assert env.srv.start().started
    assert "Cert Status: good" in env.stapled()
    time.sleep(3)
    assert env.resp.request_count() == 1


def test_short_lived_response_is_refreshed_at_each_graceful(ocsp_env, md_module):
    """(k) with 1-minute responses the refresh is always due within a minute, so the C
    module's watchdog asks again right after each graceful."""
    env = ocsp_env(nmin=1)
    env.start()
    env.resp.wait_requests(1)
    wait_for(lambda: env.ocsp_file().exists(), what="ocsp file")
    n = env.resp.request_count()
    t = time.time()
    graceful(env.srv)
    assert env.resp.wait_requests(n + 1, timeout=10) == n + 1
    assert env.resp.requests[-1].when - t < 5


def test_staple_others(ocsp_env, md_module):
    """(i) a plain SSL vhost with a certificate of pebble's intermediate: group `other`."""
    env = ocsp_env()
    env.start()
    conf = env.srv.dir / "conf"
    (conf / "other.ext").write_text(f"subjectAltName=DNS:b.test\n"
                                    f"authorityInfoAccess=OCSP;URI:{env.resp.url}\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(conf / "other.key"), "-out", str(conf / "other.csr"), "-subj",
                    "/CN=b.test"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(conf / "other.csr"), "-CA",
                    env.resp.issuer_path, "-CAkey", env.resp.key_path, "-set_serial",
                    "0x0B7E57", "-days", "5", "-extfile", str(conf / "other.ext"), "-out",
                    str(conf / "other.crt")], check=True, capture_output=True)
    (conf / "other.pem").write_text((conf / "other.crt").read_text() + env.resp.issuer_pem())
    env.resp.add_cert(str(conf / "other.crt"))
    vh = ("<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n  ServerName b.test\n  SSLEngine on\n"
          f"  SSLCertificateFile {conf}/other.pem\n  SSLCertificateKeyFile {conf}/other.key\n"
          "</VirtualHost>\n")
    env.srv.render(env.conf(body_extra=vh))
    graceful(env.srv)
    oid = cert_sha1_hex(str(conf / "other.crt"))
    f = env.store / "ocsp" / "other" / f"ocsp-{oid}.json"
    wait_for(lambda: f.exists(), what="other ocsp file")
    assert json.loads(f.read_text())["status"] == "good"
    # the response file comes first, job.json right after it
    wait_for(lambda: (env.store / "ocsp" / "other" / "job.json").exists()
             and env.job("other").get("last", {}).get("status") == 0, what="other job")
    assert env.job("other")["name"] == "other"
    assert "Cert Status: good" in env.stapled("b.test")
    auto = env.get("/server-status?auto")
    assert "ManagedStapling[1]Domain: other" in auto and "ManagedStaplingsTotal: 2" in auto
    wait_for(lambda: "ocsp-renewed other" in env.messages_list(), what="ocsp-renewed other")
    # MDStapleOthers off: nothing stapled for the plain vhost
    env.srv.render(env.conf(extra="MDStapleOthers off", body_extra=vh))
    graceful(env.srv)
    assert "OCSP response: no response sent" in env.stapled("b.test")
    assert "ManagedStaplingsTotal: 1" in env.get("/server-status?auto")


def test_keep_response_purges_old_files(ocsp_env, md_module):
    """MDStaplingKeepResponse: at a (graceful) restart, response files older than this (by
    mtime) are deleted; newer ones and the job stay."""
    env = ocsp_env(nmin=60)
    env.start(extra="MDStaplingKeepResponse 2d")
    wait_for(lambda: env.ocsp_file().exists() and (env.ocsp_file().parent / "job.json").exists(),
             what="ocsp file")
    group = env.ocsp_file().parent
    old, young = group / f"ocsp-{'0' * 40}.json", group / f"ocsp-{'1' * 40}.json"
    for f, days in ((old, 3), (young, 1)):
        f.write_text(env.ocsp_file().read_text())
        t = time.time() - days * 86400
        os.utime(f, (t, t))
    graceful(env.srv)
    wait_for(lambda: not old.exists(), timeout=10, what="old response file removed")
    assert young.exists() and env.ocsp_file().exists() and (group / "job.json").exists()
