"""a2md (SPEC 7) end to end: the tool against real pebble on loopback, and the stores it
writes served by httpd with our module and with the C module.

The binary is env A2MD_BIN, default <repo>/target/release/a2md, else target/debug/a2md; a
missing binary FAILS the tests. Servers listen on 127.0.0.1 only, on ports chosen at run time,
and are stopped by PID at the end of each test.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from lib.httpd import REPO_DIR, free_ports
from lib.pebble import Pebble


def a2md_bin() -> str:
    env = os.environ.get("A2MD_BIN")
    if env:
        return env
    for p in (REPO_DIR / "target" / "release" / "a2md", REPO_DIR / "target" / "debug" / "a2md"):
        if p.is_file():
            return str(p)
    return str(REPO_DIR / "target" / "release" / "a2md")


def a2md(*args, check=True, timeout=120):
    """Run a2md; returns (rc, stdout, stderr)."""
    exe = a2md_bin()
    assert os.path.isfile(exe), f"a2md binary missing: {exe} (cargo build -p a2md)"
    p = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, f"a2md {args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="a2md-e2e-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pebble(workdir):
    """pebble validating http-01 on a port where a2md's --listen responder answers."""
    http_port, tls_port = free_ports(2)
    p = Pebble(str(workdir), http_port, tls_port)
    p.start()
    yield p
    p.stop()


def store_of(workdir):
    return workdir / "md"


def served_cert_names(pem: str) -> list[str]:
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return sorted(x.strip()[4:] for x in out.split("\n")[1].split(",") if x.strip())


# ---- no CA needed ------------------------------------------------------------------------

def test_add_list_update_store_cmds(workdir):
    st = store_of(workdir)
    rc, out, _ = a2md("-d", st, "add", "Example.ORG", "www.example.org")
    assert out == "md: example.org [example.org, www.example.org]\n"
    a2md("-d", st, "add", "*.wild.test", "xn--bcher-kva.example")
    rc, out, _ = a2md("-d", st, "list")
    assert out.splitlines() == ["md: *.wild.test [*.wild.test, xn--bcher-kva.example]",
                                "md: example.org [example.org, www.example.org]"]
    rc, out, _ = a2md("-d", st, "-j", "list")
    doc = json.loads(out)
    assert doc["status"] == 0 and [m["name"] for m in doc["output"]] == ["*.wild.test",
                                                                        "example.org"]
    assert all(m["renew"] is True for m in doc["output"])
    md = json.loads((st / "domains" / "example.org" / "md.json").read_text())
    assert md["domains"] == ["example.org", "www.example.org"] and md["ca"]["proto"] == "ACME"
    assert stat.S_IMODE((st / "md_store.json").stat().st_mode) == 0o600
    assert (st / "store.lock").exists()
    rc, out, _ = a2md("-d", st, "update", "example.org", "contacts", "admin@example.org")
    assert out == "md: example.org [example.org, www.example.org]\n"
    rc, out, _ = a2md("-d", st, "-a", "https://ca.test/dir", "update", "example.org",
                      "agreement", "accepted")
    md = json.loads((st / "domains" / "example.org" / "md.json").read_text())
    assert md["contacts"] == ["mailto:admin@example.org"]
    assert md["ca"]["urls"] == ["https://ca.test/dir"] and md["ca"]["agreement"] == "accepted"
    a2md("-d", st, "update", "example.org", "domains", "example.org", "a.example.org")
    a2md("-d", st, "store", "add", "raw.test")
    rc, out, _ = a2md("-d", st, "store", "list")
    assert "md: raw.test [raw.test]" in out.splitlines()
    a2md("-d", st, "store", "update", "raw.test", "domains", "raw.test", "b.raw.test")
    a2md("-d", st, "store", "remove", "raw.test")
    rc, _, err = a2md("-d", st, "store", "remove", "raw.test", check=False)
    assert rc == 1 and "unknown Managed Domain 'raw.test'" in err
    a2md("-d", st, "store", "remove", "-f", "raw.test")
    rc, out, _ = a2md("-d", st, "-j", "store", "list")
    assert [m["name"] for m in json.loads(out)["output"]] == ["*.wild.test", "example.org"]


@pytest.mark.parametrize("args, rc, text", [
    (["bogus"], 2, "unrecognized subcommand"),
    (["list"], 2, "no store directory given"),
    (["-d", "@ST@", "add", "bad_name.test"], 1, "invalid domain name 'bad_name.test'"),
    (["-d", "@ST@", "add", "single"], 1, "invalid domain name 'single'"),
    (["-d", "@ST@", "add", "a.*.test"], 1, "invalid domain name"),
    (["-d", "@ST@", "add", "-x.test"], 2, "unexpected argument"),
    (["-d", "@ST@", "add", "www.one.test"], 1, "overlaps with"),
    (["-d", "@ST@", "add", "*.one.test"], 1, "overlaps with"),
    (["-d", "@ST@", "update", "nope.test", "contacts", "a@b.c"], 1, "unknown Managed Domain"),
    (["-d", "@ST@", "acme", "newreg", "a@b.c"], 2, "needs the CA's directory URL"),
    (["-d", "@ST@", "-a", "https://127.0.0.1:9/dir", "acme", "newreg", "a@b.c"], 1,
     "Unsuccessful in contacting ACME server"),
    (["-d", "@ST@", "acme", "validate", "ACME-nope-0000"], 1, "unknown account"),
])
def test_errors_are_one_line(workdir, args, rc, text):
    st = store_of(workdir)
    a2md("-d", st, "add", "one.test", "*.one.test")
    args = [str(st) if a == "@ST@" else a for a in args]
    got, out, err = a2md(*args, check=False)
    assert got == rc, (out, err)
    assert text in err, err
    assert "panicked" not in err
    if rc == 1:
        assert len(err.strip().splitlines()) == 1, err


def test_json_error_document(workdir):
    st = store_of(workdir)
    a2md("-d", st, "add", "one.test")
    rc, out, _ = a2md("-d", st, "-j", "add", "one.test", check=False)
    doc = json.loads(out)
    assert rc == 1 and doc["status"] == 22 and doc["description"] == "Invalid argument"
    assert doc["output"] == []


def test_unknown_store_version_and_unreadable_secret(workdir):
    st = store_of(workdir)
    a2md("-d", st, "add", "one.test")
    meta = json.loads((st / "md_store.json").read_text())
    meta["store"]["version"] = 9.0
    (st / "md_store.json").write_text(json.dumps(meta))
    rc, _, err = a2md("-d", st, "list", check=False)
    assert rc == 1 and "newer than the supported version" in err
    # a user who cannot read the secret is refused with a clear message (run as nobody)
    meta["store"]["version"] = 3.0
    (st / "md_store.json").write_text(json.dumps(meta))
    if os.geteuid() == 0:
        os.chmod(workdir, 0o755)
        os.chmod(st, 0o755)
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            a2md_bin(), "-d", str(st), "add", "two.test"],
                           capture_output=True, text=True)
        assert p.returncode == 1 and "permission denied" in p.stderr, p.stderr
        assert "run a2md as the store's owner" in p.stderr


def test_version_help_man():
    rc, out, _ = a2md("-V")
    assert out.startswith("version: ")
    rc, out, _ = a2md("--help")
    for word in ("acme", "add", "update", "drive", "list", "store", "status", "check",
                 "--acme", "--ca-certs", "--dir", "--json", "--proxy", "--quiet", "--terms",
                 "--verbose", "--version"):
        assert word in out
    rc, out, _ = a2md("--man")
    assert out.startswith(".ie") or ".TH a2md 1" in out


# ---- against pebble ----------------------------------------------------------------------

def test_newreg_drive_http01_listen(workdir, pebble):
    st = store_of(workdir)
    ca = ["-a", pebble.directory_url, "-C", pebble.ca_file]
    rc, out, _ = a2md("-d", st, *ca, "-t", "accepted", "acme", "newreg", "admin@a2md.test")
    assert out.startswith("registered: ACME-127.0.0.1-0000"), out
    acct = out.split()[1]
    a = json.loads((st / "accounts" / acct / "account.json").read_text())
    assert a["status"] == "valid" and a["ca-url"] == pebble.directory_url
    assert a["contact"] == ["mailto:admin@a2md.test"]
    assert b"ENCRYPTED" in (st / "accounts" / acct / "account.pem").read_bytes()
    rc, out, _ = a2md("-d", st, "-C", pebble.ca_file, "acme", "validate", acct)
    assert out == f"account valid: {acct}\n"
    rc, out, _ = a2md("-d", st, "-C", pebble.ca_file, "-t", "accepted", "acme", "agree", acct)
    assert out.startswith("agreed terms-of-service: ")

    a2md("-d", st, "-a", pebble.directory_url, "add", "a2md.test", "www.a2md.test")
    t0 = time.time()
    rc, out, err = a2md("-d", st, *ca, "drive", "-c", "http-01",
                        "--listen", f"127.0.0.1:{pebble.http_port}")
    assert out.startswith("activated: a2md.test (valid until "), (out, err)
    dom = st / "domains" / "a2md.test"
    pem = (dom / "pubcert.pem").read_text()
    assert served_cert_names(pem) == ["a2md.test", "www.a2md.test"]
    assert stat.S_IMODE((dom / "privkey.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in (dom / "privkey.pem").read_bytes()
    md = json.loads((dom / "md.json").read_text())
    assert md["ca"]["account"] == acct, "the newreg account was used"
    assert md["state"] == 2
    assert not (st / "staging" / "a2md.test").exists()
    assert len(pebble.orders()) == 1
    # not due: nothing ordered; -f renews
    rc, out, _ = a2md("-d", st, *ca, "drive", "--listen", f"127.0.0.1:{pebble.http_port}")
    assert "not due for renewal" in out and len(pebble.orders()) == 1
    rc, out, _ = a2md("-d", st, *ca, "-j", "drive", "-f",
                      "--listen", f"127.0.0.1:{pebble.http_port}", "a2md.test")
    doc = json.loads(out)
    assert doc["status"] == 0 and doc["output"][0]["activated"] is True
    assert len(pebble.orders()) == 2 and (st / "archive" / "a2md.test.1").is_dir()
    rc, out, _ = a2md("-d", st, "-j", "list")
    assert json.loads(out)["output"][0]["renew"] is False
    rc, out, _ = a2md("-d", st, "check")
    assert rc == 0, out
    print(f"drive took {time.time() - t0:.1f}s")
    # delreg deactivates at the CA and removes it from the store
    rc, out, _ = a2md("-d", st, "-C", pebble.ca_file, "acme", "delreg", acct)
    assert out == f"deleted: {acct}\n" and not (st / "accounts" / acct).exists()


def test_drive_dns01_with_command(workdir, pebble):
    st = store_of(workdir)
    script = workdir / "dns.sh"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {workdir}/dns.log
if [ "$1" = setup ]; then
  curl -s -X POST -d '{{"host":"_acme-challenge.'$2'.","value":"'$3'"}}' \\
    http://127.0.0.1:{pebble.chall_mgmt_port}/set-txt
fi
exit 0
""")
    script.chmod(0o755)
    a2md("-d", st, "-a", pebble.directory_url, "add", "*.dns.test", "dns.test")
    a2md("-d", st, "update", "*.dns.test", "contacts", "admin@dns.test")
    a2md("-d", st, "update", "*.dns.test", "agreement", "accepted")
    rc, out, err = a2md("-d", st, "-C", pebble.ca_file, "drive", "-c", "dns-01",
                        "--dns01-cmd", script, check=False)
    assert rc == 0, (out, err)
    assert out.startswith("activated: *.dns.test"), out
    pem = (st / "domains" / "*.dns.test" / "pubcert.pem").read_text()
    assert served_cert_names(pem) == ["*.dns.test", "dns.test"]
    log = (workdir / "dns.log").read_text()
    assert "setup dns.test" in log and "teardown dns.test" in log
    # a new account was registered with the MD's contact and promoted into accounts/
    assert len(list((st / "accounts").iterdir())) == 1


def test_drive_failure_is_reported(workdir, pebble):
    st = store_of(workdir)
    a2md("-d", st, "-a", pebble.directory_url, "add", "fail.test")
    a2md("-d", st, "update", "fail.test", "contacts", "admin@fail.test")
    rc, _, err = a2md("-d", st, "-C", pebble.ca_file, "drive", check=False)
    assert rc == 1 and "accept its terms of service" in err, err
    # nobody answers http-01 (no --listen, no httpd): the CA cannot validate
    rc, out, err = a2md("-d", st, "-C", pebble.ca_file, "-t", "accepted", "drive",
                        "-c", "http-01", check=False)
    assert rc == 1 and "failed: fail.test" in out, (out, err)
    assert not (st / "domains" / "fail.test" / "pubcert.pem").exists()
    # -r drops the staged state; with a responder it works now
    rc, out, err = a2md("-d", st, "-C", pebble.ca_file, "-t", "accepted", "drive", "-r",
                        "-c", "http-01",
                        "--listen", f"127.0.0.1:{pebble.http_port}")
    assert out.startswith("activated: fail.test"), (out, err)


def test_status_and_check(workdir, pebble):
    st = store_of(workdir)
    a2md("-d", st, "-a", pebble.directory_url, "add", "s.test")
    a2md("-d", st, "add", "later.test")
    a2md("-d", st, "update", "s.test", "contacts", "admin@s.test")
    a2md("-d", st, "-C", pebble.ca_file, "-t", "accepted", "drive",
         "--listen", f"127.0.0.1:{pebble.http_port}", "s.test")
    rc, out, _ = a2md("-d", st, "status")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["MD", "STATE", "VALID"]
    assert any(l.startswith("s.test") and "complete" in l for l in lines[1:]), out
    assert any(l.startswith("later.test") and "incomplete" in l for l in lines[1:]), out
    rc, out, _ = a2md("-d", st, "-j", "status")
    doc = json.loads(out)
    assert "version" in doc
    mds = {m["name"]: m for m in doc["managed-domains"]}
    assert "rsa" in mds["s.test"]["cert"] and mds["later.test"].get("renew") is True
    rc, out, _ = a2md("-d", st, "-j", "status", "s.test")
    one = json.loads(out)
    assert one["name"] == "s.test" and "renew-at" in one
    rc, _, err = a2md("-d", st, "status", "nope.test", check=False)
    assert rc == 1 and "unknown Managed Domain" in err
    rc, out, _ = a2md("-d", st, "check")
    assert rc == 0 and "0 error(s)" in out, out
    # damage: a key that does not match, a broken job.json, an open key file
    dom = st / "domains" / "s.test"
    before = {p: p.read_bytes() for p in dom.iterdir()}
    other = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:2048"], capture_output=True, check=True).stdout
    (dom / "privkey.pem").write_bytes(other)
    os.chmod(dom / "privkey.pem", 0o644)
    (st / "staging").mkdir(exist_ok=True)
    (st / "staging" / "s.test").mkdir()
    (st / "staging" / "s.test" / "job.json").write_text("{not json")
    rc, out, _ = a2md("-d", st, "check", check=False)
    assert rc == 1, out
    assert "does not match" in out and "job.json" in out and "mode 0644" in out, out
    assert (dom / "privkey.pem").read_bytes() == other, "check changes nothing"
    assert set(dom.iterdir()) == set(before)


def c_or_rs_conf(peb, mds: str, vhosts: str) -> str:
    return (f"MDCertificateAuthority {peb.directory_url}\n"
            f"MDCACertificateFile {peb.ca_file}\n"
            "MDCertificateAgreement accepted\n"
            "MDContactEmail admin@served.test\n"
            "MDPortMap http:@HTTP_PORT@ https:@HTTPS_PORT@\n"
            "MDStoreDir @DIR@/md\n" + mds + vhosts)


def served_serial(srv, host) -> int:
    with socket.create_connection(("127.0.0.1", srv.https_port), timeout=10) as s:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(s, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().split("=")[1], 16)


def file_serial(path) -> int:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().split("=")[1], 16)


def wait_finished(srv, st, md: str, timeout=60):
    """Wait until the module's renewal of `md` in store `st` has finished (staged)."""
    job = st / "staging" / md / "job.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if job.exists() and json.loads(job.read_text()).get("finished"):
            return
        time.sleep(0.5)
    pytest.fail(f"{md} not staged:\n{srv.error_log()[-3000:]}")


def test_module_serves_a2md_certificate_and_uses_its_account(md_module, httpd_factory):
    """a2md registers an account and drives served.test into a fresh store; httpd (C module
    and ours) then serves that certificate without ordering again, and obtains fresh.test
    (not driven by a2md) with the account a2md registered."""
    srv = httpd_factory(md_defaults=False)
    peb = Pebble(str(srv.dir), srv.http_port, srv.https_port)
    try:
        peb.start()
        st = srv.dir / "md"
        rc, out, _ = a2md("-d", st, "-a", peb.directory_url, "-C", peb.ca_file, "-t",
                          "accepted", "acme", "newreg", "admin@served.test")
        acct = out.split()[1]
        a2md("-d", st, "-a", peb.directory_url, "add", "served.test")
        rc, out, err = a2md("-d", st, "-C", peb.ca_file, "-t", "accepted", "drive",
                            "--listen", f"127.0.0.1:{srv.http_port}")
        assert out.startswith("activated: served.test"), (out, err)
        want = file_serial(st / "domains" / "served.test" / "pubcert.pem")
        orders = len(peb.orders())
        srv.render(c_or_rs_conf(peb, "MDomain served.test\nMDomain fresh.test\n",
                                "<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n ServerName served.test\n"
                                " SSLEngine on\n</VirtualHost>\n"
                                "<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n ServerName fresh.test\n"
                                " SSLEngine on\n</VirtualHost>\n"))
        res = srv.start()
        assert res.started, res.text()
        assert served_serial(srv, "served.test") == want
        # fresh.test is obtained by the module with a2md's account
        wait_finished(srv, st, "fresh.test")
        staged = json.loads((st / "staging" / "fresh.test" / "md.json").read_text())
        assert staged["ca"]["account"] == acct
        assert len(peb.orders()) == orders + 1, "served.test was not ordered again"
        assert sorted(os.listdir(st / "accounts")) == [acct]
    finally:
        srv.stop()
        peb.stop()


def test_list_json_on_module_written_store(md_module, httpd_factory):
    """`a2md list -j` on a store the module wrote lists every MD with md.json's keys."""
    srv = httpd_factory(md_defaults=False)
    srv.render("MDCertificateAuthority https://127.0.0.1:9/directory\n"
               "MDStoreDir @DIR@/md\nMDCertificateAgreement accepted\n"
               "MDomain one.test www.one.test\n<MDomain two.test>\n"
               "  MDPrivateKeys secp256r1 rsa2048\n</MDomain>\n"
               "<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n ServerName one.test\n SSLEngine on\n"
               "</VirtualHost>\n<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n ServerName two.test\n"
               " SSLEngine on\n</VirtualHost>\n")
    res = srv.start()
    assert res.started, res.text()
    srv.stop()
    st = srv.dir / "md"
    rc, out, _ = a2md("-d", st, "-j", "list")
    doc = json.loads(out)
    assert doc["status"] == 0
    got = {m["name"]: m for m in doc["output"]}
    assert sorted(got) == ["one.test", "two.test"]
    for name, m in got.items():
        on_disk = json.loads((st / "domains" / name / "md.json").read_text())
        assert set(on_disk) <= set(m), f"{name}: keys {set(on_disk) - set(m)} missing"
        assert m["domains"] == on_disk["domains"] and m["renew"] is True
    rc, out, _ = a2md("-d", st, "list")
    assert out.splitlines() == ["md: one.test [one.test, www.one.test]",
                                "md: two.test [two.test]"]
    rc, out, _ = a2md("-d", st, "check")
    assert rc == 0, out


def test_md_added_by_a2md_is_obtained_by_the_module(md_module, httpd_factory):
    """`a2md add` writes md.json (names, CA, contact) into a fresh store; httpd with that MD in
    its config (C module and ours) takes the stored MD as it is and obtains its certificate:
    one order, the names a2md gave, no rename or second MD in the store."""
    srv = httpd_factory(md_defaults=False)
    peb = Pebble(str(srv.dir), srv.http_port, srv.https_port)
    try:
        peb.start()
        st = srv.dir / "md"
        a2md("-d", st, "-a", peb.directory_url, "add", "added.test", "www.added.test")
        before = json.loads((st / "domains" / "added.test" / "md.json").read_text())
        assert before["domains"] == ["added.test", "www.added.test"]
        srv.render(c_or_rs_conf(peb, "MDomain added.test www.added.test\n",
                                "<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n ServerName added.test\n"
                                " ServerAlias www.added.test\n SSLEngine on\n</VirtualHost>\n"))
        res = srv.start()
        assert res.started, res.text()
        wait_finished(srv, st, "added.test")
        assert len(peb.orders()) == 1
        assert sorted(os.listdir(st / "domains")) == ["added.test"]
        rc, out, _ = a2md("-d", st, "list")
        assert "added.test" in out
    finally:
        srv.stop()
        peb.stop()
