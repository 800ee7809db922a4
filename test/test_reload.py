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
import signal
import time
from pathlib import Path

import pytest

from lib.httpd import HttpdServer, module_by_name


def mapped(pid: int, so: Path) -> set[int]:
    """Inodes of `so` (also when replaced since) that process `pid` has mapped."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].removesuffix(" (deleted)") == str(so):
            found.add(int(parts[4]))
    return found


def graceful(srv: HttpdServer, timeout=60):
    n = srv.error_log().count("AH00489")
    os.kill(srv.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while srv.error_log().count("AH00489") <= n:
        assert time.monotonic() < deadline, srv.error_log()[-3000:]
        time.sleep(0.1)


def body(n: int, keys: str) -> str:
    out = f"MDRenewMode manual\nMDPrivateKeys {keys}\n"
    for i in range(n):
        out += (f"MDomain r{i}.test\n<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n"
                f"    ServerName r{i}.test\n    SSLEngine on\n</VirtualHost>\n")
    return out


@pytest.mark.parametrize("n,keys", [(1, "RSA 2048"), (1, "secp256r1"), (80, "secp256r1")],
                         ids=["rsa-fallback", "p256", "many-mds"])
def test_rs_graceful_restart_loads_a_replaced_module(tmp_path, n, keys):
    so = tmp_path / "mod_md_rs.so"
    shutil.copy(module_by_name("rs").path, so)
    srv = HttpdServer(dataclasses.replace(module_by_name("rs"), path=str(so)), log_level="warn")
    try:
        srv.render(body(n, keys))
        assert srv.start(timeout=120).started, srv.error_log()[-3000:]
        pid = srv.proc.pid
        first = so.stat().st_ino
        assert mapped(pid, so) == {first}
        # an upgrade: the new file under the same name, a new inode
        new = tmp_path / "mod_md_rs.so.new"
        shutil.copy(so, new)
        os.rename(new, so)
        second = so.stat().st_ino
        assert second != first
        graceful(srv)
        # the second start of the first generation's config made the same keys, pairs and
        # files again: the reload must still drop the old mapping
        assert mapped(pid, so) == {second}, (first, second, mapped(pid, so))
    finally:
        srv.cleanup()
