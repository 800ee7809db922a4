"""A full disk and a read-only store under a running server (real httpd, real pebble, `User
www-data`, the store on a 1 MiB tmpfs mounted for the test).

Two MDs get their certificates; then the store's file system is filled to the last block (and
later remounted read-only) and a name is added to one MD, so that the graceful restart must
write md.json and the renewal must write its staging files. Ours: httpd keeps running, the
failed writes are logged with AH numbers and the errno text (AH10172 for md.json, AH10056 for
the renewal, "(28)No space left on device" / "Read-only file system"), both MDs keep serving
their certificates, and once space returns (or the store is writable again) the renewal
completes and is activated. The C module's parent exits at that graceful instead (AH10172,
then AH00020 "Configuration Failed, exiting": every site down), which is the documented
deliberate difference.
"""

from __future__ import annotations

import re
import os
import signal
import subprocess

import pytest

from test_lifecycle import CHECK, life, served_serial, settle  # noqa: F401
from test_renewal import graceful, md_conf, served_chain_ok, vhosts, wait_staged


def _body(a_aliases: str) -> str:
    return (CHECK + f"MDomain a.test {a_aliases}\n" + vhosts("a.test", a_aliases)
            + "MDomain b.test\n" + vhosts("b.test"))


@pytest.fixture
def tmpfs_store():
    mounted = []

    def mount(srv):
        mnt = srv.dir / "md"
        mnt.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", str(mnt)],
                       check=True)
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _new_lines(srv, since: int) -> str:
    return srv.error_log()[since:]


def _alive(srv) -> bool:
    return srv.proc is not None and srv.proc.poll() is None


def _names(srv, peb, host) -> set[str]:
    return {v for _, v in served_chain_ok(srv, peb, host)["subjectAltName"]}


def test_full_disk_then_read_only_store(life, tmpfs_store, md_module):
    srv, peb = life()
    mnt = tmpfs_store(srv)
    srv.render(md_conf(srv, peb, _body("")))
    assert srv.start().started
    for md in ("a.test", "b.test"):
        wait_staged(srv, md)
    graceful(srv)
    serials = {m: served_serial(srv, peb, m) for m in ("a.test", "b.test")}

    # -- full disk: fill the tmpfs to the last block, then add a name to a.test
    subprocess.run(f"dd if=/dev/zero of={mnt}/filler bs=4k 2>/dev/null", shell=True)
    at = len(srv.error_log())
    srv.render(md_conf(srv, peb, _body("www.a.test")))
    if md_module.name == "c":
        # the C parent cannot write md.json and exits
        os.kill(srv.proc.pid, signal.SIGUSR1)
        srv.proc.wait(timeout=20)
        log = _new_lines(srv, at)
        assert "No space left on device: AH10172" in log and "AH00020" in log, log[-2000:]
        return
    graceful(srv)
    settle(srv)
    log = _new_lines(srv, at)
    assert _alive(srv)
    assert re.search(r"AH10172: md\[a\.test\]: error syncing to store: .*a\.test/md\.json.*"
                     r"No space left on device", log), log[-3000:]
    assert re.search(r"\(28\)No space left on device: AH10056: processing a\.test", log), \
        log[-3000:]
    assert {m: served_serial(srv, peb, m) for m in serials} == serials
    # space returns: the renewal completes, the new name is served
    (mnt / "filler").unlink()
    graceful(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    assert _names(srv, peb, "www.a.test") == {"a.test", "www.a.test"}
    serials["a.test"] = served_serial(srv, peb, "a.test")

    # -- read-only store: remount, add another name
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    at = len(srv.error_log())
    srv.render(md_conf(srv, peb, _body("www.a.test x.a.test")))
    graceful(srv)
    settle(srv)
    log = _new_lines(srv, at)
    assert _alive(srv)
    assert re.search(r"AH10172: md\[a\.test\]: .*Read-only file system", log), log[-3000:]
    assert {m: served_serial(srv, peb, m) for m in serials} == serials
    # writable again: renewal completes
    subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
    graceful(srv)
    wait_staged(srv, "a.test")
    graceful(srv)
    assert _names(srv, peb, "x.a.test") == {"a.test", "www.a.test", "x.a.test"}
    assert not re.search(r"segfault|exit signal", srv.error_log())
