"""Self test of lib/faultproxy.py against a real pebble (no httpd): URLs are rewritten to the
proxy, faults are injected exactly as often as asked and then requests pass again."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import tempfile

import pytest

from lib.faultproxy import FaultProxy, rewrite, step_of
from lib.pebble import Pebble, free_port


@pytest.fixture
def peb_proxy():
    d = tempfile.mkdtemp(prefix="md-faultproxy-")
    peb = Pebble(d, free_port(), free_port()).start()
    proxy = FaultProxy(peb).start()
    try:
        yield peb, proxy
    finally:
        proxy.stop()
        peb.stop()
        shutil.rmtree(d, ignore_errors=True)


def _conn(peb, proxy):
    ctx = ssl.create_default_context(cafile=peb.ca_file)
    return http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ctx, timeout=10)


def _get(c, path, method="GET", body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r, r.read()


def test_rewrite_and_steps():
    ups = ["https://127.0.0.1:14000", "https://localhost:14000"]
    body = b'{"a":"https://127.0.0.1:14000/x","b":"https://localhost:14000/y","c":"https://127.0.0.1:140001/z"}'
    out = rewrite(body, ups, "https://127.0.0.1:5555")
    assert json.loads(out)["a"] == "https://127.0.0.1:5555/x"
    assert json.loads(out)["b"] == "https://127.0.0.1:5555/y"
    assert step_of("GET", "/dir") == "directory"
    assert step_of("HEAD", "/nonce-plz") == "nonce"
    assert step_of("POST", "/chalZ/abc") == "challenge"
    assert step_of("POST", "/finalize-order/abc") == "finalize"
    assert step_of("POST", "/my-order/abc") == "poll"
    assert step_of("POST", "/my-account/1") == "other"


def test_directory_via_proxy_is_rewritten(peb_proxy):
    peb, proxy = peb_proxy
    c = _conn(peb, proxy)
    r, body = _get(c, "/dir")
    assert r.status == 200
    d = json.loads(body)
    urls = [v for v in d.values() if isinstance(v, str)]
    assert {"newNonce", "newAccount", "newOrder"} <= set(d), d
    assert urls and all(u.startswith(proxy.base + "/") for u in urls), d
    assert f":{peb.port}" not in body.decode()
    # the nonce endpoint answers HEAD through the proxy (no body), on the same connection
    r, body = _get(c, "/nonce-plz", method="HEAD")
    assert r.status == 200 and r.getheader("Replay-Nonce") and body == b""
    assert proxy.requests["directory"] == 1 and proxy.requests["nonce"] == 1
    assert proxy.injected() == 0


def test_503_once_then_passes(peb_proxy):
    peb, proxy = peb_proxy
    proxy.set_fault("directory", "503", count=1, retry_after=7)
    c = _conn(peb, proxy)
    r, _ = _get(c, "/dir")
    assert r.status == 503 and r.getheader("Retry-After") == "7"
    r, body = _get(c, "/dir")
    assert r.status == 200 and "newOrder" in json.loads(body)
    assert proxy.injected("directory", "503") == 1 and proxy.requests["directory"] == 2


def test_badnonce_carries_a_fresh_nonce_and_only_hits_posts(peb_proxy):
    peb, proxy = peb_proxy
    proxy.set_fault("account", "badnonce", percent=100)
    c = _conn(peb, proxy)
    r, body = _get(c, "/sign-me-up", method="POST", body=b"{}",
                   headers={"Content-Type": "application/jose+json"})
    assert r.status == 400
    assert json.loads(body)["type"] == "urn:ietf:params:acme:error:badNonce"
    assert len(r.getheader("Replay-Nonce") or "") > 10
    r, _ = _get(c, "/dir")  # another step: passes
    assert r.status == 200
    assert proxy.injected("account", "badnonce") == 1


def test_truncate_garble_drop_stall(peb_proxy):
    peb, proxy = peb_proxy
    proxy.set_fault("directory", "truncate", count=1)
    with pytest.raises(http.client.IncompleteRead):
        _get(_conn(peb, proxy), "/dir")
    proxy.set_fault("directory", "garble", count=1)
    r, body = _get(_conn(peb, proxy), "/dir")
    assert r.status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    proxy.set_fault("directory", "drop", count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _get(_conn(peb, proxy), "/dir")
    proxy.set_fault("directory", "stall", count=1, stall=0.5)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _get(_conn(peb, proxy), "/dir")
    r, _ = _get(_conn(peb, proxy), "/dir")
    assert r.status == 200
    assert proxy.injected("directory") == 4 and proxy.requests["directory"] == 5
    proxy.set_fault("directory", "500", count=5)
    proxy.clear_faults()
    r, _ = _get(_conn(peb, proxy), "/dir")
    assert r.status == 200 and proxy.injected("directory") == 4
