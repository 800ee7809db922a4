"""Self test of lib/ocsp.py (no httpd): a real pebble with `ocspResponderURL`, the responder
signing as pebble's intermediate (fetched from pebble's management API), leaf certificates
signed locally with that intermediate's key, and the openssl OCSP client asking."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from lib.ocsp import (OcspResponder, cert_ocsp_url, cert_serial_hex, cert_sha1_hex, ocsp_query,
                      request_text, response_text)
from lib.pebble import Pebble, free_port


def _leaf(d, name, serial, responder_url=None):
    """A leaf for CN=name signed by the responder's issuer (pebble's intermediate)."""
    key, csr, pem = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                    csr, "-subj", f"/CN={name}"], check=True, capture_output=True)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{name}\n")
        if responder_url:
            f.write(f"authorityInfoAccess=OCSP;URI:{responder_url}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(d, "inter.pem"),
                    "-CAkey", os.path.join(d, "inter.key"), "-set_serial", serial, "-days", "2",
                    "-extfile", ext, "-out", pem], check=True, capture_output=True)
    return pem


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="md-ocsp-fixture-")
    resp = OcspResponder(d, nmin=1)
    peb = Pebble(d, free_port(), free_port(), config=resp.pebble_config())
    try:
        peb.start()
        resp.start(pebble=peb)
        shutil.copy(resp.issuer_path, os.path.join(d, "inter.pem"))
        shutil.copy(resp.key_path, os.path.join(d, "inter.key"))
        leaves = {n: _leaf(d, n, s, resp.url) for n, s in
                  (("good.test", "0x1234ABCD"), ("rev.test", "0x0A0B"), ("unk.test", "0x77"))}
        yield d, resp, peb, leaves
    finally:
        resp.stop()
        peb.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def responder(env):
    d, resp, peb, leaves = env
    resp.set_mode("pass")
    yield resp
    resp.set_mode("pass")


def test_pebble_config_and_issuer(env):
    d, resp, peb, leaves = env
    assert resp.pebble_config() == {"ocspResponderURL": f"http://127.0.0.1:{resp.port}/"}
    with open(resp.issuer_path) as f:
        assert "BEGIN CERTIFICATE" in f.read()
    assert oct(os.stat(resp.key_path).st_mode & 0o777) == "0o600"
    assert cert_ocsp_url(leaves["good.test"]) == resp.url
    assert cert_serial_hex(leaves["rev.test"]) == "0A0B"
    assert len(cert_sha1_hex(leaves["good.test"])) == 40


def test_good_revoked_unknown(env, responder):
    d, resp, peb, leaves = env
    resp.add_cert(leaves["good.test"])
    resp.add_cert(leaves["rev.test"])
    n0 = resp.request_count()
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)[0] == "good"
    assert ocsp_query(resp.issuer_path, leaves["rev.test"], resp.url)[0] == "good"
    resp.revoke(leaves["rev.test"], reason="keyCompromise")
    st, out = ocsp_query(resp.issuer_path, leaves["rev.test"], resp.url)
    assert st == "revoked", out
    assert "Reason: keyCompromise" in out
    assert ocsp_query(resp.issuer_path, leaves["unk.test"], resp.url)[0] == "unknown"
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url, nonce=False)[0] == "good"
    assert resp.request_count() == n0 + 5
    idx = resp.index_text().splitlines()
    assert any(l.startswith("V\t") and "\t1234ABCD\tunknown\t" in l for l in idx), idx
    assert any(l.startswith("R\t") and "\t0A0B\tunknown\t" in l for l in idx), idx
    # a valid response: nonce echoed, nextUpdate = thisUpdate + 1 minute, signed by pebble's
    # intermediate (verifies against the intermediate as the trust anchor)
    st, out = ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)
    assert "OCSP Nonce" in out and "Next Update" in out
    st, out = ocsp_query(resp.issuer_path, leaves["good.test"], resp.url,
                         cafile=resp.issuer_path)
    assert st == "good" and "Response verify OK" in out and "Nonce Verify" not in out, out
    resp.forget(leaves["good.test"])
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)[0] == "unknown"
    resp.add_cert(leaves["good.test"])


def test_requests_are_recorded(env, responder):
    d, resp, peb, leaves = env
    resp.add_cert(leaves["good.test"])
    ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)
    r = resp.requests[-1]
    assert r.method == "POST" and r.status == 200
    assert r.headers.get("Content-Type") == "application/ocsp-request"
    txt = request_text(r.body)
    assert "Serial Number: 1234ABCD" in txt and "OCSP Nonce" in txt
    assert "Cert Status: good" in response_text(resp.last_response)


def test_get_request(env, responder):
    d, resp, peb, leaves = env
    resp.add_cert(leaves["good.test"])
    ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)
    import base64
    import urllib.parse
    path = "/" + urllib.parse.quote(base64.b64encode(resp.requests[-1].body).decode(), safe="")
    c = http.client.HTTPConnection("127.0.0.1", resp.port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and "Cert Status: good" in response_text(body)
    assert resp.requests[-1].method == "GET"


def _post(resp, body=b"\x30\x00"):
    c = http.client.HTTPConnection("127.0.0.1", resp.port, timeout=10)
    c.request("POST", "/", body=body, headers={"Content-Type": "application/ocsp-request"})
    r = c.getresponse()
    return r.status, r.getheader("Content-Type"), r.read()


def test_mode_garbage(env, responder):
    d, resp, peb, leaves = env
    resp.set_mode("garbage")
    st, out = ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)
    assert st == "error", out
    status, ctype, body = _post(resp)
    assert status == 200 and ctype == "application/ocsp-response" and body[:1] != b"\x30"
    assert resp.request_count(mode="garbage") == 2


def test_mode_oversized(env, responder):
    d, resp, peb, leaves = env
    resp.set_mode("oversized")
    status, ctype, body = _post(resp)
    assert status == 200 and len(body) == 2 * 1024 * 1024
    assert body[:2] == b"\x30\x83" and int.from_bytes(body[2:5], "big") == len(body) - 5
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)[0] == "error"


def test_mode_500(env, responder):
    d, resp, peb, leaves = env
    resp.set_mode("500")
    status, ctype, body = _post(resp)
    assert status == 500
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)[0] == "error"


def test_mode_down_and_restart(env, responder):
    d, resp, peb, leaves = env
    resp.add_cert(leaves["good.test"])
    n = resp.request_count()
    resp.set_mode("down")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", resp.port), timeout=2).close()
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url, timeout=3)[0] == "error"
    assert resp.request_count() == n
    resp.set_mode("pass")
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)[0] == "good"
    resp.restart()
    assert ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)[0] == "good"
    assert resp.request_count() == n + 2


def test_mode_wrong_nonce_and_replay(env, responder):
    d, resp, peb, leaves = env
    resp.add_cert(leaves["good.test"])
    ocsp_query(resp.issuer_path, leaves["good.test"], resp.url)  # something to replay
    for mode in ("wrong-nonce", "replay"):
        resp.set_mode(mode)
        st, out = ocsp_query(resp.issuer_path, leaves["good.test"], resp.url,
                             cafile=resp.issuer_path)
        # the verifying client checks the nonce: a signed, good response for another nonce
        assert "Nonce Verify error" in out, (mode, out)
        assert "Cert Status: good" in out
        # no nonce in the request: the same responses are fine for the client
        st, out = ocsp_query(resp.issuer_path, leaves["good.test"], resp.url, nonce=False)
        assert st == "good", out


def test_stop_refuses_and_is_idempotent():
    d = tempfile.mkdtemp(prefix="md-ocsp-fixture-")
    try:
        key = os.path.join(d, "k.pem")
        cert = os.path.join(d, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=test issuer"],
                       check=True, capture_output=True)
        with OcspResponder(d).start(issuer_pem=open(cert).read(),
                                    issuer_key=open(key).read()) as resp:
            port = resp.port
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        resp.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
