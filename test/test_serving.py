"""What the module does for requests and handshakes, side by side with the C module:
http-01 answers, MDRequireHttps redirects and HSTS, tls-alpn-01 challenge certificates, the
fallback certificate with 503, loading without mod_ssl/mod_status, graceful restarts.

No CA is involved: challenge data and static certificates are put in place by the test.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from lib.httpd import HttpdServer, self_signed_pem

PORTMAP = "MDPortMap http:@HTTP_PORT@ https:@HTTPS_PORT@\n"


def http_vhost(name="a.test", extra=""):
    return (f"<VirtualHost 127.0.0.1:@HTTP_PORT@>\n    ServerName {name}\n{extra}"
            "</VirtualHost>\n")


def ssl_vhost(name="a.test", extra=""):
    return (f"<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n    ServerName {name}\n"
            f"    SSLEngine on\n{extra}</VirtualHost>\n")


def started(srv: HttpdServer, body: str) -> HttpdServer:
    srv.render(body)
    res = srv.start()
    assert res.started, f"httpd did not start:\n{res.text()}"
    return srv


def request(port, host, path="/", method="GET", tls=False):
    """(status, headers dict, body) of one request to 127.0.0.1:port with this Host/SNI."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
        # SNI = host: connect by hand so the handshake names the virtual host.
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sock = ctx.wrap_socket(sock, server_hostname=host)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def write_challenge(srv: HttpdServer, host: str, files: dict[str, bytes]):
    d = srv.dir / "md" / "challenges" / host
    d.mkdir(parents=True, exist_ok=True)
    for p in (srv.dir / "md", srv.dir / "md" / "challenges", d):
        os.chmod(p, 0o755)
    for name, data in files.items():
        (d / name).write_bytes(data)
        os.chmod(d / name, 0o644)


def peer_cert_cn(port, host, alpn=None):
    """Subject CN and negotiated ALPN of the certificate served for SNI `host`."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            proto = tls.selected_alpn_protocol()
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                          input=der, capture_output=True, check=True).stdout.decode()
    return text.strip(), proto


def test_loads_without_mod_ssl_and_mod_status(httpd_factory):
    srv = httpd_factory(ssl=False, status=False)
    started(srv, PORTMAP.replace(" https:@HTTPS_PORT@", "") + "MDomain a.test\n" + http_vhost())
    status, _, _ = request(srv.http_port, "a.test", "/")
    assert status in (200, 403, 404)


def test_http01_challenge_answers(httpd_factory):
    srv = httpd_factory()
    # Behind an access restriction: challenges are answered before authorization.
    deny = '    <Location "/">\n        Require all denied\n    </Location>\n'
    write_challenge(srv, "a.test", {"acme-http-01.txt": b"tok123.thumbprint"})
    started(srv, PORTMAP + "MDomain a.test www.a.test\n"
            + http_vhost(extra="    ServerAlias www.a.test other.test\n" + deny)
            + ssl_vhost())
    port = srv.http_port
    path = "/.well-known/acme-challenge/tok123"
    status, headers, body = request(port, "a.test", path)
    assert (status, body) == (200, b"tok123.thumbprint")
    assert headers["content-length"] == str(len(body))
    # Not GET: 501. A name of the MD without challenge data: 404.
    assert request(port, "a.test", path, method="POST")[0] == 501
    assert request(port, "www.a.test", path)[0] == 404
    # Not an MD name, other paths, nested paths: declined, so the vhost's own rules (deny).
    assert request(port, "other.test", path)[0] == 403
    assert request(port, "a.test", "/.well-known/acme-challenge/a/b")[0] == 403
    assert request(port, "a.test", "/.well-known/acme-challenge/../../etc/passwd")[0] in (
        400, 403, 404)
    assert request(port, "a.test", "/index.html")[0] == 403


def raw_request(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client-side normalisation); the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_http01_traversal_and_encoded_variants_reveal_nothing(httpd_factory, md_module):
    """Paths and Host headers that try to leave challenges/<host>/: never the planted secrets
    (store files one and two levels up, named as the challenge file), never a crash."""
    srv = httpd_factory()
    write_challenge(srv, "a.test", {"acme-http-01.txt": b"tok123.thumbprint"})
    for rel in ("md/acme-http-01.txt", "md/challenges/acme-http-01.txt"):
        (srv.dir / rel).write_bytes(b"SECRET-" + rel.encode())
    started(srv, PORTMAP + "MDomain a.test\n" + http_vhost() + ssl_vhost())
    port = srv.http_port
    pre = "/.well-known/acme-challenge/"
    paths = [pre + p for p in (
        "..", "../..", "%2e%2e", "%2e%2e/%2e%2e/md_store.json", "..%2f..%2fmd_store.json",
        "%2E%2E%2F%2E%2E%2Facme-http-01.txt", "tok%00", "tok%2f..", "....//....//",
        "tok/../../../md_store.json", "%c0%ae%c0%ae/", "tok;/..", "tok?x=../..")]
    paths += ["/.well-known/acme-challenge", "/.well-known//acme-challenge/tok",
              "/.well-known/acme-challenge/../acme-challenge/tok"]
    hosts = ["..", ".", "../..", "a.test/..", "a.test%2f..", ".a.test", "a.test.", "A.TEST",
             "a.test:80", "challenges", "*", "a.test\\..", "-", "a.test/../../md"]
    answers = []
    for path in paths:
        answers.append((path, raw_request(port, f"GET {path} HTTP/1.1\r\nHost: a.test\r\n"
                                          "Connection: close\r\n\r\n".encode())))
    for host in hosts:
        answers.append((host, raw_request(port, f"GET {pre}tok123 HTTP/1.1\r\nHost: {host}\r\n"
                                          "Connection: close\r\n\r\n".encode())))
    for what, answer in answers:
        assert answer.startswith(b"HTTP/1.1 "), (what, answer[:200])
        assert b"SECRET" not in answer and b'"key"' not in answer, (what, answer[:300])
    # the real challenge still works afterwards (no child crashed on the way)
    assert request(port, "a.test", pre + "tok123")[::2] == (200, b"tok123.thumbprint")
    assert "exit signal" not in srv.error_log()


def test_http01_declined_for_static_certificate_files(httpd_factory, md_module):
    """An MD with MDCertificateFile is never ordered by the module, so a challenge for it is
    another ACME client's (e.g. a webroot in DocumentRoot): the module declines and the file is
    served, as the C module does (PR62189), instead of answering 404."""
    srv = httpd_factory()
    cert, key = self_signed_pem("a.test")
    srv.write_file("conf/a.crt", cert)
    srv.write_file("conf/a.key", key, mode=0o600)
    srv.write_file("htdocs/.well-known/acme-challenge/tok", "webroot tok.thumb\n")
    started(srv, PORTMAP + "<MDomain a.test>\n    MDCertificateFile conf/a.crt\n"
            "    MDCertificateKeyFile conf/a.key\n</MDomain>\nMDomain b.test\n"
            + http_vhost() + http_vhost("b.test") + ssl_vhost() + ssl_vhost("b.test"))
    path = "/.well-known/acme-challenge/tok"
    status, _, body = request(srv.http_port, "a.test", path)
    assert (status, body) == (200, b"webroot tok.thumb\n")
    # An MD the module orders for keeps answering itself (404 without challenge data).
    assert request(srv.http_port, "b.test", path)[0] == 404
    # A stale challenge file of the module's own (e.g. from before the MD got static files):
    # the C module answers it, shadowing the other client's file; ours never answers for an
    # MD it does not order for (a deliberate difference, README).
    write_challenge(srv, "a.test", {"acme-http-01.txt": b"stale.ours"})
    status, _, body = request(srv.http_port, "a.test", path)
    if md_module.name == "c":
        assert (status, body) == (200, b"stale.ours")
    else:
        assert (status, body) == (200, b"webroot tok.thumb\n")


def test_require_https_redirects_and_hsts(httpd_factory):
    srv = httpd_factory()
    cert, key = self_signed_pem("a.test")
    srv.write_file("conf/a.crt", cert)
    srv.write_file("conf/a.key", key, mode=0o600)
    srv.write_file("htdocs/index.html", "hello\n")
    started(srv, PORTMAP + "<MDomain a.test>\n    MDCertificateFile conf/a.crt\n"
            "    MDCertificateKeyFile conf/a.key\n    MDRequireHttps permanent\n"
            "</MDomain>\n<MDomain b.test>\n    MDCertificateFile conf/a.crt\n"
            "    MDCertificateKeyFile conf/a.key\n    MDRequireHttps temporary\n"
            "</MDomain>\n" + http_vhost() + http_vhost("b.test") + ssl_vhost())
    port = srv.http_port
    status, headers, _ = request(port, "a.test", "/x?q=1")
    assert (status, headers["location"]) == (301, "https://a.test/x?q=1")
    status, headers, _ = request(port, "a.test", "/p", method="POST")
    assert (status, headers["location"]) == (308, "https://a.test/p")
    status, headers, _ = request(port, "b.test", "/")
    assert (status, headers["location"]) == (302, "https://b.test/")
    assert request(port, "b.test", "/p", method="POST")[0] == 307
    # /.well-known/ is never redirected.
    assert request(port, "a.test", "/.well-known/other")[0] == 404
    # On https: HSTS on success, not on errors (as the C module).
    status, headers, _ = request(srv.https_port, "a.test", "/index.html", tls=True)
    assert status == 200 and headers["strict-transport-security"] == "max-age=15768000"
    status, headers, _ = request(srv.https_port, "a.test", "/missing", tls=True)
    assert status == 404 and "strict-transport-security" not in headers


def test_tls_alpn01_challenge_certificate(httpd_factory, tmp_path):
    srv = httpd_factory()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=tls-alpn-01-challenge", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
    write_challenge(srv, "a.test", {
        "acme-tls-alpn-01-pubcert.pem": (tmp_path / "c.pem").read_bytes(),
        "acme-tls-alpn-01-privkey.pem": (tmp_path / "k.pem").read_bytes(),
    })
    started(srv, PORTMAP + "MDomain a.test\n" + http_vhost()
            + ssl_vhost(extra="    Protocols http/1.1 acme-tls/1\n"))
    subject, proto = peer_cert_cn(srv.https_port, "a.test", alpn=["acme-tls/1"])
    assert proto == "acme-tls/1" and "tls-alpn-01-challenge" in subject
    # A normal handshake still gets the (fallback) certificate, not the challenge one.
    subject, proto = peer_cert_cn(srv.https_port, "a.test")
    assert "tls-alpn-01-challenge" not in subject


def test_fallback_certificate_and_503(httpd_factory):
    srv = httpd_factory()
    started(srv, PORTMAP + "MDomain a.test www.a.test\n" + http_vhost()
            + ssl_vhost(extra="    ServerAlias www.a.test\n"))
    subject, _ = peer_cert_cn(srv.https_port, "a.test")
    assert "Apache Managed Domain Fallback" in subject
    assert request(srv.https_port, "a.test", "/", tls=True)[0] == 503
    fallback = srv.dir / "md" / "domains" / "a.test" / "fallback-pubcert.pem"
    assert fallback.is_file()
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                          str(fallback)], capture_output=True, text=True, check=True).stdout
    assert "DNS:a.test" in san and "DNS:www.a.test" in san


def test_graceful_restarts_keep_serving(httpd_factory):
    srv = httpd_factory()
    started(srv, PORTMAP + "MDomain a.test\n" + http_vhost() + ssl_vhost())
    for generation in range(3):
        os.kill(srv.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 15
        while srv.error_log().count("AH00489") < generation + 2:
            assert time.monotonic() < deadline, srv.error_log()
            time.sleep(0.1)
        assert request(srv.https_port, "a.test", "/", tls=True)[0] == 503
    log = srv.error_log()
    assert "exit signal" not in log and "Segmentation" not in log, log
    assert srv.proc.poll() is None


# ---- mod_md-rs only --------------------------------------------------------------------

@pytest.fixture
def rs_factory():
    from lib.httpd import module_by_name
    servers = []

    def make(**kw):
        srv = HttpdServer(module_by_name("rs"), **kw)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.cleanup()


def test_rs_logs_with_md_tag_and_level(rs_factory):
    srv = rs_factory(log_level="warn md:debug")
    started(srv, PORTMAP + "MDomain a.test\n" + http_vhost() + ssl_vhost())
    lines = [l for l in srv.error_log().splitlines() if "managed domain(s) configured" in l]
    assert lines and all("[md:debug]" in l for l in lines), srv.error_log()
    srv.stop()
    srv2 = rs_factory(log_level="warn md:info")
    started(srv2, PORTMAP + "MDomain a.test\n" + http_vhost() + ssl_vhost())
    assert "[md:debug]" not in srv2.error_log()


def test_rs_acts_on_stapling_and_ari_directives_without_warnings(rs_factory):
    """MDStapling and MDRenewViaARI were once accepted but inert (named in a startup warning);
    both are implemented now, so a config with them starts without any md warning."""
    srv = rs_factory(log_level="warn")
    started(srv, PORTMAP + "MDRenewViaARI on\n<MDomain a.test>\n    MDStapling on\n"
            "</MDomain>\n" + http_vhost() + ssl_vhost())
    warnings = [l for l in srv.error_log().splitlines() if "[md:warn]" in l]
    assert not any("MDStapling" in l or "MDRenewViaARI" in l or "not implemented" in l
                   for l in warnings), warnings


def test_rs_panic_in_directive_is_a_config_error(rs_factory, monkeypatch):
    srv = rs_factory()
    srv.render("MDRenewWindow 10d\n")
    monkeypatch.setenv("MD_RS_TEST_PANIC", "directive:MDRenewWindow")
    rc, out = srv.config_test()
    assert rc == 1, out  # an error exit, not a crash by signal
    assert "MDRenewWindow: internal error (panic)" in out


def test_rs_panic_in_post_config_fails_startup_cleanly(rs_factory, monkeypatch):
    srv = rs_factory()
    srv.render(PORTMAP + "MDomain a.test\n" + http_vhost())
    monkeypatch.setenv("MD_RS_TEST_PANIC", "post_config")
    res = srv.start()
    assert not res.started and res.exit_code not in (None, 0)
    assert res.exit_code > 0, "must exit with an error, not die by a signal"
    assert "panic caught in post_config" in res.error_log
    assert "AH00016" in res.error_log + res.output  # httpd's "Configuration Failed"


def test_rs_exports_only_what_httpd_needs():
    from lib.httpd import module_by_name
    so = module_by_name("rs").path
    out = subprocess.run(["nm", "-D", so], capture_output=True, text=True, check=True).stdout
    defined = {l.split()[-1] for l in out.splitlines() if l.split()[1:2] in (["D"], ["T"])}
    undefined = {l.split()[-1] for l in out.splitlines() if l.split()[0] == "U"}
    assert "md_module" in defined
    # Other modules' symbols must never be linked directly (LoadModule would fail without
    # them): mod_status, mod_watchdog and mod_ssl are reached through optional functions.
    for sym in undefined:
        assert not sym.startswith(("ap_hook_status", "ap_watchdog", "ssl_")), sym
    # One OpenSSL in the process: the system's, as mod_ssl uses.
    ldd = subprocess.run(["ldd", so], capture_output=True, text=True, check=True).stdout
    assert "libssl.so.3" in ldd and "libcrypto.so.3" in ldd


def test_rs_a2md_version():
    from lib.httpd import REPO_DIR
    a2md = REPO_DIR / "target" / "release" / "a2md"
    assert a2md.is_file(), "build with cargo build --release --workspace"
    out = subprocess.run([str(a2md), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("version: ")
    assert subprocess.run([str(a2md), "--help"], capture_output=True).returncode == 0


def test_rs_store_locks_held_elsewhere(rs_factory):
    """MDStoreLocks with the store lock held by another process (another server sharing the
    store): httpd still starts, warns AH10398 and serves; the sync/activation is left to the
    lock holder. (The C module logged no AH10398 in this setup at LogLevel warn, so this is
    checked for mod_md-rs only.)"""
    import fcntl

    srv = rs_factory()
    store = srv.dir / "md"
    store.mkdir(mode=0o755)
    with open(store / "store.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        started(srv, PORTMAP + "MDStoreLocks 1s\nMDomain a.test\n" + http_vhost() + ssl_vhost())
        assert "AH10398" in srv.error_log(), srv.error_log()
        assert request(srv.https_port, "a.test", "/", tls=True)[0] == 503
    srv.stop()
    srv2 = rs_factory()
    started(srv2, PORTMAP + "MDStoreLocks on\nMDomain a.test\n" + http_vhost() + ssl_vhost())
    assert "AH10398" not in srv2.error_log()
