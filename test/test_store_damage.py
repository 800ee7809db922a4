"""Damaged store files at startup, side by side with the C module (real httpd, real pebble,
`User www-data`).

A server with six MDs gets its certificates and activates them; then, with httpd stopped, one
file per MD is damaged:

    d1.test  domains/d1.test/md.json        truncated JSON
    d2.test  domains/d2.test/pubcert.pem    truncated in the middle of the chain
    d3.test  domains/d3.test/privkey.pem    garbage inside valid PEM armour
    d4.test  domains/d4.test/privkey.pem    the key of another MD (a mismatched pair)
    d5.test  staging/d5.test/job.json       truncated JSON
    d6.test  (untouched)

Ours: httpd starts; each damaged certificate or key is named in an error line and left out
(the MD gets its fallback certificate and a new order), the other MDs keep their serials; after
the new certificates are activated every MD serves a valid certificate and the damaged files
are in archive/ (nothing lost). The C module refuses to start on the damaged certificate or
key (mod_ssl AH02562/AH02564/AH02565: one bad file takes every site down), which is the documented
deliberate difference. Separately: a garbled account.json (no order needed: both start and
order nothing) and a garbled md_store.json (both refuse to start, naming the file: the store's
key is in it and nothing may be guessed).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from test_lifecycle import (CHECK, life, md_body, n_orders, restart, served_serial,  # noqa: F401
                            settle, start, wait_for)
from test_renewal import graceful, md_conf, wait_staged

MDS = tuple(f"d{i}.test" for i in range(1, 7))
CRASH = re.compile(r"segfault|exit signal|AH00052|AH00060")


def _obtain(srv, peb, mds) -> dict[str, int]:
    srv.render(md_conf(srv, peb, md_body(mds, CHECK)))
    start(srv)
    for m in mds:
        wait_staged(srv, m)
    graceful(srv)
    serials = {m: served_serial(srv, peb, m) for m in mds}
    srv.stop()
    return serials


def _damage(store: Path) -> dict[str, tuple[Path, bytes]]:
    """Damage one file per MD d1..d5; return md -> (file, its damaged content)."""
    dom = store / "domains"
    pub = (dom / "d2.test" / "pubcert.pem").read_bytes()
    other_key = (dom / "d6.test" / "privkey.pem").read_bytes()
    job = store / "staging" / "d5.test" / "job.json"
    job.parent.mkdir(exist_ok=True)
    damage = {
        "d1.test": (dom / "d1.test" / "md.json", b'{"name": "d1.test", "domains": ['),
        "d2.test": (dom / "d2.test" / "pubcert.pem", pub[: len(pub) * 2 // 3]),
        "d3.test": (dom / "d3.test" / "privkey.pem",
                    b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n"),
        "d4.test": (dom / "d4.test" / "privkey.pem", other_key),
        "d5.test": (job, b'{"name": "d5.test", "finished": tr'),
    }
    for path, data in damage.values():
        path.write_bytes(data)
    return damage


def test_damaged_store_files_at_startup(life, md_module):
    srv, peb = life()
    serials = _obtain(srv, peb, MDS)
    assert n_orders(peb) == 6
    damage = _damage(srv.dir / "md")
    log_at = len(srv.error_log())
    res = srv.start()
    log = lambda: srv.error_log()[log_at:]  # noqa: E731
    if md_module.name == "c":
        # the C module hands the damaged pair to mod_ssl, which stops the whole server
        assert not res.started
        assert re.search(r"AH0256[245]: .*d[234]\.test/p(ubcert|rivkey)\.pem", res.text), res.text
        return
    assert res.started, res.text[-3000:]
    # each damaged certificate/key is named; the damaged md.json and job.json too
    for md in ("d1.test", "d2.test", "d3.test", "d4.test", "d5.test"):
        path = str(damage[md][0])
        wait_for(lambda: path in log(), 10, f"an error naming {path}", srv)
    assert "d6.test" not in "".join(ln for ln in log().splitlines() if "[md:error]" in ln)
    # the intact and the merely confused MDs keep their certificates
    for md in ("d1.test", "d5.test", "d6.test"):
        assert served_serial(srv, peb, md) == serials[md], md
    # the MDs whose pair was unusable get a new one (1 order each), nothing else is ordered
    for md in ("d2.test", "d3.test", "d4.test"):
        wait_staged(srv, md)
    settle(srv)
    assert n_orders(peb) == 6 + 3, peb.orders()
    graceful(srv)
    for md in MDS:
        s = served_serial(srv, peb, md)  # a valid chain from pebble for every MD
        assert (s == serials[md]) == (md in ("d1.test", "d5.test", "d6.test")), md
    # the damaged files were archived at activation, not deleted
    for md in ("d2.test", "d3.test", "d4.test"):
        path, data = damage[md]
        kept = [p for p in glob.glob(str(srv.dir / "md" / "archive" / f"{md}.*" / path.name))
                if Path(p).read_bytes() == data]
        assert kept, f"{md}: damaged {path.name} not in archive/"
    settle(srv)
    assert n_orders(peb) == 9, peb.orders()
    assert not CRASH.search(srv.error_log()), CRASH.search(srv.error_log())


def test_garbled_account_json_orders_nothing(life, md_module):
    srv, peb = life()
    serials = _obtain(srv, peb, MDS[:2])
    (acct,) = glob.glob(str(srv.dir / "md" / "accounts" / "*" / "account.json"))
    Path(acct).write_text('{"url": ')
    start(srv)
    settle(srv)
    assert n_orders(peb) == 2
    assert {m: served_serial(srv, peb, m) for m in MDS[:2]} == serials
    assert not CRASH.search(srv.error_log())


def test_garbled_md_store_json_refuses_to_start_naming_it(life, md_module):
    srv, peb = life()
    _obtain(srv, peb, MDS[:1])
    store_json = srv.dir / "md" / "md_store.json"
    store_json.write_text('{"store.version": 3, "key": ')
    res = srv.start()
    assert not res.started
    assert "AH10046" in res.text and "md_store.json" in res.text, res.text[-2000:]
    # nothing was rewritten: the admin can still restore or inspect it
    assert store_json.read_text() == '{"store.version": 3, "key": '
    assert os.path.exists(srv.dir / "md" / "domains" / "d1.test" / "pubcert.pem")
