"""ACME Renewal Information (RFC 9773) and profiles in the server, side by side with the C module.

Debian's pebble 2.4.0 has neither: the fault proxy (lib/faultproxy.py) adds `renewalInfo` and
`meta.profiles` to its directory, answers renewalInfo with a window the test sets, and records
each newOrder's payload (`replaces`, `profile`).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from lib.faultproxy import wait_until
from test_faults import proxied
from test_renewal import graceful, vhosts, wait_staged

FUTURE = (dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc),
          dt.datetime(2099, 1, 2, tzinfo=dt.timezone.utc))


def conf(srv, peb, proxy, mds, extra=""):
    body = "".join(f"MDomain {m}\n" + vhosts(m) for m in mds)
    return (f"MDCertificateAuthority {proxy.directory_url}\n"
            f"MDCACertificateFile {peb.ca_file}\n"
            "MDCertificateAgreement accepted\n"
            "MDContactEmail admin@example.test\n"
            f"MDPortMap http:{srv.http_port} https:{srv.https_port}\n"
            "MDCAChallenges http-01\n"
            "MDRetryDelay 1s\n"
            "MDCheckInterval 1s\n" + extra + body)


def serving(srv, peb, proxy, mds):
    """Start httpd for `mds` (ARI window in the future), wait until every MD is staged, and
    activate the certificates with a graceful restart."""
    proxy.set_ari_window(*FUTURE, retry_after=1)
    srv.render(conf(srv, peb, proxy, mds))
    assert srv.start().started
    for m in mds:
        wait_staged(srv, m)
    graceful(srv)


def active_ari_id(srv, md: str) -> str:
    """The ARI id (RFC 9773 §4.1) of the active certificate, computed here from the PEM."""
    import base64
    import subprocess
    pem = (srv.dir / "md" / "domains" / md / "pubcert.pem").read_text()
    leaf = pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-serial"], input=leaf,
                          capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    i = next(n for n, ln in enumerate(lines) if "Authority Key Identifier" in ln)
    aki = lines[i + 1].strip().removeprefix("keyid:").replace(":", "")
    serial = next(ln for ln in lines if ln.startswith("serial=")).split("=", 1)[1]
    serial = serial.lstrip("0") or "0"
    serial = ("0" if len(serial) % 2 else "") + serial
    b64 = lambda h: base64.urlsafe_b64encode(bytes.fromhex(h)).decode().rstrip("=")  # noqa
    return f"{b64(aki)}.{b64(serial)}"


@pytest.mark.parametrize("impl", ["c", "rs"])
def test_ari_window_now_renews_once_with_replaces(impl):
    """A window in the future: no renewal. Moved into the past: exactly one new order per MD,
    carrying `replaces` = the active certificate's ARI id; then no more."""
    mds = ["a.test", "b.test"]
    with proxied(impl) as (srv, peb, proxy):
        serving(srv, peb, proxy, mds)
        ids = {m: active_ari_id(srv, m) for m in mds}
        wait_until(lambda: all(i in proxy.ari_requests for i in ids.values()), 30,
                   "renewalInfo asked for both certificates")
        time.sleep(3)
        assert len(proxy.new_orders) == 2, proxy.new_orders
        assert not any("replaces" in o for o in proxy.new_orders)
        now = dt.datetime.now(dt.timezone.utc)
        proxy.set_ari_window(now - dt.timedelta(days=2), now - dt.timedelta(days=1),
                             retry_after=1, explanation="https://ca.test/why")
        wait_until(lambda: len(proxy.new_orders) == 4, 60, "one renewal per MD")
        replaced = sorted(o.get("replaces", "") for o in proxy.new_orders[2:])
        assert replaced == sorted(ids.values()), (replaced, ids)
        for m in mds:
            wait_staged(srv, m)
        time.sleep(3)
        assert len(proxy.new_orders) == 4, "no second renewal while the new set is staged"
        if impl == "rs":
            log = srv.error_log()
            assert "AH10515: a.test: the CA advises renewal via ARI now, for explanation see " \
                   "https://ca.test/why" in log


def test_ari_directory_fetched_once_for_many_mds():
    """The C module fetches the CA's directory for every MD at every check (its issue #403);
    ours once per CA and check at most (longer when the CA's Cache-Control allows)."""
    mds = [f"m{i}.test" for i in range(6)]
    counts = {}
    for impl in ("c", "rs"):
        with proxied(impl) as (srv, peb, proxy):
            serving(srv, peb, proxy, mds)
            n0, a0 = proxy.directory_fetches, len(proxy.ari_requests)
            time.sleep(8)
            counts[impl] = (proxy.directory_fetches - n0, len(proxy.ari_requests) - a0)
            assert len(proxy.new_orders) == len(mds)
    c_dirs, c_infos = counts["c"]
    rs_dirs, rs_infos = counts["rs"]
    # both keep asking for the windows (Retry-After: 1 s) ...
    assert c_infos >= len(mds) and rs_infos >= len(mds), counts
    # ... but ours fetches the directory once per check (pebble says `max-age=0`, so it is
    # not kept longer; with MDCheckInterval 1s that is at most ~10 in 8 s), the C module once
    # per MD and check
    assert 1 <= rs_dirs <= 10, counts
    assert c_dirs >= 2 * len(mds) and c_dirs >= 3 * rs_dirs, counts


@pytest.mark.parametrize("impl", ["c", "rs"])
def test_profile_offered_is_sent(impl):
    """MDProfile naming a profile the CA offers (meta.profiles): newOrder carries it."""
    with proxied(impl) as (srv, peb, proxy):
        proxy.profiles = {"classic": "the default", "shortlived": "6 days"}
        srv.render(conf(srv, peb, proxy, ["a.test"], extra="MDProfile shortlived\n"))
        assert srv.start().started
        wait_staged(srv, "a.test")
        assert [o.get("profile") for o in proxy.new_orders] == ["shortlived"]


@pytest.mark.parametrize("impl", ["c", "rs"])
def test_profile_not_offered_is_dropped(impl):
    """A profile the CA does not offer is left out of the order (with a warning), unless
    MDProfileMandatory (tested in test_job_errors.py)."""
    with proxied(impl) as (srv, peb, proxy):
        proxy.profiles = {"classic": "the default"}
        srv.render(conf(srv, peb, proxy, ["a.test"], extra="MDProfile shortlived\n"))
        assert srv.start().started
        wait_staged(srv, "a.test")
        assert [o.get("profile") for o in proxy.new_orders] == [None]
