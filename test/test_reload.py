"""A graceful restart loads the module file anew: an upgrade that replaces mod_md-rs's .so
(a new inode, as dpkg and `install` do) is running in the parent after the reload.

glibc keeps a shared object mapped after dlclose when a thread-local with a destructor was
registered from it on a thread that is still alive (the parent's main thread); threads
started in the parent did that (FFI-NOTES, "Does httpd really unload the DSO?"). Each case
below makes the parent do one piece of work that was once done on threads: an RSA fallback
key, the pair checks of many MDs, md.json files of many MDs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from lib.httpd import HttpdServer, module_by_name
from lib.pebble import Pebble
from test_renewal import graceful, md_conf, vhosts, wait_staged


def mapped(pid: int, so: Path) -> set[int]:
    """Inodes of `so` (also when replaced since) that process `pid` has mapped."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].removesuffix(" (deleted)") == str(so):
            found.add(int(parts[4]))
    return found


def body(n: int, keys: str) -> str:
    out = f"MDRenewMode manual\nMDPrivateKeys {keys}\n"
    for i in range(n):
        out += (f"MDomain r{i}.test\n<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n"
                f"    ServerName r{i}.test\n    SSLEngine on\n</VirtualHost>\n")
    return out


@pytest.mark.parametrize("n,keys", [(1, "RSA 2048"), (1, "secp256r1"), (80, "secp256r1")],
                         ids=["rsa-fallback", "p256", "many-mds"])
def test_rs_graceful_restart_loads_a_replaced_module(tmp_path, n, keys):
    srv, so = server_with_own_copy(tmp_path)
    try:
        srv.render(body(n, keys))
        assert srv.start(timeout=120).started, srv.error_log()[-3000:]
        pid = srv.proc.pid
        first = so.stat().st_ino
        assert mapped(pid, so) == {first}
        second = replace(so)  # an upgrade
        assert second != first
        graceful(srv, timeout=60)
        # the second start of the first generation's config made the same keys, pairs and
        # files again: the reload must still drop the old mapping
        assert mapped(pid, so) == {second}, (first, second, mapped(pid, so))
    finally:
        srv.cleanup()


def server_with_own_copy(tmp_path: Path) -> tuple[HttpdServer, Path]:
    """A server loading its own copy of the module, which the test can replace."""
    so = tmp_path / "mod_md_rs.so"
    shutil.copy(module_by_name("rs").path, so)
    return HttpdServer(dataclasses.replace(module_by_name("rs"), path=str(so)),
                       log_level="warn"), so


def replace(so: Path) -> int:
    """Put a copy of `so` in its place (a new inode, as an upgrade does); the new inode."""
    new = so.with_name(so.name + ".new")
    shutil.copy(so, new)
    os.rename(new, so)
    return so.stat().st_ino


def test_rs_reload_after_an_installed_command(tmp_path):
    """The parent runs MDMessageCmd `installed` when it activates a certificate (its stderr
    is read by a thread): the next reload still loads a replaced module file."""
    srv, so = server_with_own_copy(tmp_path)
    peb = Pebble(str(srv.dir), srv.http_port, srv.https_port)
    try:
        peb.start()
        calls = srv.write_file("calls.log", "", mode=0o666)
        cmd = srv.write_file("conf/msg.sh", f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                             "echo 'a word on stderr' >&2\n", mode=0o755)
        srv.render(md_conf(srv, peb, f"MDMessageCmd {cmd}\nMDPrivateKeys secp256r1\n"
                           "MDomain a.test\n"
                           + vhosts("a.test")))
        assert srv.start().started, srv.error_log()[-3000:]
        pid = srv.proc.pid
        wait_staged(srv, "a.test")
        graceful(srv)  # activates: `installed`, run by the parent
        assert "installed a.test" in calls.read_text(), calls.read_text()
        second = replace(so)
        graceful(srv)
        assert mapped(pid, so) == {second}, mapped(pid, so)
    finally:
        srv.cleanup()
        peb.stop()
