"""Self-checks of the harness (lib/httpd.py) that later e2e tests rely on."""

from __future__ import annotations

import http.client
import os
import ssl

from lib.httpd import port_listening


def test_start_serve_stop(httpd_factory, md_module):
    srv = httpd_factory()
    srv.write_file("htdocs/index.html", "hello\n")
    srv.render("MDPortMap http:@HTTP_PORT@ https:@HTTPS_PORT@\nMDomain a.org\n"
               "<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n    ServerName other.org\n"
               "    SSLEngine on\n    SSLCertificateFile @CERT@\n"
               "    SSLCertificateKeyFile @KEY@\n</VirtualHost>\n")
    res = srv.start()
    assert res.started, f"httpd did not start:\n{res.error_log}\n{res.output}"
    pid = srv.proc.pid
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=5)
    conn.request("GET", "/index.html")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"hello\n"
    conn.close()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", srv.https_port, timeout=5, context=ctx)
    conn.request("GET", "/index.html", headers={"Host": "other.org"})
    assert conn.getresponse().status == 200
    conn.close()
    srv.stop()
    assert srv.proc is None
    try:
        os.killpg(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "httpd processes survived stop()"
    assert not port_listening(srv.http_port)


def test_startup_failure_is_reported(httpd_factory, md_module):
    srv = httpd_factory()
    # mod_ssl fails in post_config: an SSL vhost without certificate and without any MD
    srv.render("<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n    ServerName nomd.org\n"
               "    SSLEngine on\n</VirtualHost>\n")
    res = srv.start()
    assert not res.started and not res.timed_out and res.exit_code not in (None, 0), (
        f"{res.error_log}\n{res.output}")
    assert "AH02572" in res.error_log


def test_config_test_reports_syntax_error(httpd_factory, md_module):
    srv = httpd_factory()
    srv.render("NoSuchDirective on")
    rc, out = srv.config_test()
    assert rc != 0 and "NoSuchDirective" in out
