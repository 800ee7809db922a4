"""The Debian package mod-md-rs in a fresh Debian 12 root (issue 17).

One test, in order: build the package (scripts/build-deb.sh, or take MDRS_DEB), unpack a
Debian 12 minbase root with apache2 (debootstrap; the downloaded packages are cached as a
tarball in /var/cache/mod-md-rs-test/, so only the first run downloads), install the .deb with
apt, check the conflict with Debian's md module (a2enmod refuses; both enabled anyway fails
apache2ctl -t with our message), enable it (`a2enmod ssl md_rs`), start apache2 in the root on
127.0.0.1 with one MD against pebble (on the host, same network namespace), wait until the
certificate is staged, restart gracefully and check the served certificate is pebble's; then
upgrade to a new build (apache2 keeps running, reloaded gracefully, same parent PID, which then
maps the newly installed module file, not the replaced one; the store unchanged), upgrade again with a configuration that fails `apache2ctl -t` (no reload), and purge:
no file of the package is left, the store is, apache2 still runs.

Run (as root; about 1-2 min with the tarball cached and MDRS_DEB given):
    python3 -m pytest -q test/test_package.py
    MDRS_DEB=target/debian/mod-md-rs_0.1.0-1_amd64.deb python3 -m pytest -q test/test_package.py
MDRS_DEB_UPGRADE: the .deb to upgrade to (default: a build with --deb-version <v>+1, or, with
MDRS_DEB, MDRS_DEB repacked with a bumped version). MDRS_SKIP_PACKAGE_TEST=1 skips it (CI,
scripts/test-all.sh, runs it unless that is set); a missing tool (debootstrap, cargo-deb,
pebble, chroot) FAILS.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib.pebble import Pebble, free_port  # noqa: E402
import lib.wait  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MDRS_DEBOOTSTRAP_CACHE", "/var/cache/mod-md-rs-test"))
MIRROR = os.environ.get("MDRS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
INCLUDE = "apache2"
TARBALL = CACHE / f"{SUITE}-minbase-{INCLUDE}.tgz"
MD = "pkg.test"
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}

pytestmark = pytest.mark.skipif(os.environ.get("MDRS_SKIP_PACKAGE_TEST") == "1",
                                reason="MDRS_SKIP_PACKAGE_TEST=1 (explicitly skipped)")


def run(cmd, check=True, timeout=900, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-6000:]}")
    return p


def need_tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/work/tools/bin")
    assert path, f"{name} is required for the package test (not found); see test/README.md"
    return path


class Root:
    """A Debian 12 root in a temporary directory; /proc mounted while in use."""

    def __init__(self, path: Path):
        self.path = path
        self.mounted = False

    def sh(self, script, check=True, timeout=600):
        return run(["chroot", str(self.path), "/bin/sh", "-c", script], check=check,
                   timeout=timeout, env=CHROOT_ENV)

    def p(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def apache_pid(self) -> int | None:
        # /run, not /var/run: that is an absolute symlink, it would name the host's /run here
        f = self.p("/run/apache2/apache2.pid")
        try:
            pid = int(f.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def error_log(self) -> str:
        f = self.p("/var/log/apache2/error.log")
        return f.read_text(errors="replace") if f.exists() else ""


def make_root(tmp: Path) -> Root:
    debootstrap = need_tool("debootstrap")
    need_tool("chroot")
    CACHE.mkdir(parents=True, exist_ok=True)
    if not TARBALL.exists():
        work = Path(tempfile.mkdtemp(prefix="mdrs-dbs-", dir="/var/tmp"))
        try:
            run([debootstrap, "--variant=minbase", f"--include={INCLUDE}",
                 f"--make-tarball={TARBALL}.part", SUITE, str(work), MIRROR], timeout=1800)
            os.replace(f"{TARBALL}.part", TARBALL)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    root = Root(tmp / "root")
    run([debootstrap, "--variant=minbase", f"--include={INCLUDE}",
         f"--unpack-tarball={TARBALL}", SUITE, str(root.path), MIRROR], timeout=1800)
    run(["mount", "-t", "proc", "proc", str(root.p("/proc"))])
    root.mounted = True
    # Without an init system invoke-rc.d blocks every action unless policy-rc.d allows it (as on
    # a real server, where systemd or sysvinit runs): let the maintainer scripts' reloads run.
    policy = root.p("/usr/sbin/policy-rc.d")
    policy.write_text("#!/bin/sh\nexit 0\n")
    policy.chmod(0o755)
    return root


def build_debs(tmp: Path) -> tuple[Path, Path]:
    """(the package, an upgrade to it)."""
    deb = os.environ.get("MDRS_DEB")
    if deb:
        deb = Path(deb).resolve()
        assert deb.is_file(), f"MDRS_DEB={deb} does not exist"
        up = os.environ.get("MDRS_DEB_UPGRADE")
        return deb, Path(up).resolve() if up else bump(deb, tmp, "+upgrade1")
    out = tmp / "debs"
    p = run(["bash", str(REPO / "scripts/build-deb.sh"), "-o", str(out / "v1")], timeout=3600)
    deb = Path(p.stdout.strip().splitlines()[-1])
    version = deb_field(deb, "Version")
    p = run(["bash", str(REPO / "scripts/build-deb.sh"), "-o", str(out / "v2"),
             "--deb-version", f"{version}+upgrade1"], timeout=3600)
    return deb, Path(p.stdout.strip().splitlines()[-1])


def deb_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), field]).stdout.strip()


def bump(deb: Path, tmp: Path, suffix: str) -> Path:
    """The same package (same files) with the version <v><suffix>, repacked with dpkg-deb."""
    d = tmp / f"repack{suffix}"
    run(["dpkg-deb", "-R", str(deb), str(d)])
    control = d / "DEBIAN" / "control"
    text = control.read_text()
    version = re.search(r"^Version: (\S+)$", text, re.M).group(1)
    control.write_text(re.sub(r"^Version: \S+$", f"Version: {version}{suffix}", text, flags=re.M))
    out = tmp / f"{deb.stem}{suffix}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "-b", str(d), str(out)])
    return out


def store_hashes(root: Root) -> dict[str, str]:
    store = root.p("/etc/apache2/md")
    res = {}
    for f in sorted(store.rglob("*")):
        st = f.lstat()
        key = str(f.relative_to(store))
        if f.is_file() and not f.is_symlink():
            res[key] = (hashlib.sha256(f.read_bytes()).hexdigest()
                        + f" {oct(st.st_mode)} {st.st_uid}:{st.st_gid}")
        else:
            res[key] = f"{oct(st.st_mode)} {st.st_uid}:{st.st_gid}"
    return res


def wait_for(cond, timeout, what, root: Root):
    return lib.wait.wait_for(cond, timeout, what, logs=lambda: root.error_log()[-4000:],
                             interval=0.2)


def served_issuer(port: int, root_pem: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(root_pem))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=MD) as tls:
            cert = tls.getpeercert()
    return dict(x[0] for x in cert["issuer"])["commonName"]


def gracefuls(root: Root) -> int:
    return root.error_log().count("AH00493")  # SIGUSR1 received.  Doing graceful restart


def install(root: Root, deb: Path) -> str:
    shutil.copy(deb, root.p(f"/tmp/{deb.name}"))
    return root.sh(f"apt-get install -y --no-install-recommends /tmp/{deb.name} 2>&1").stdout


SITE = """\
ServerName localhost
MDCertificateAuthority https://127.0.0.1:{ca_port}/dir
MDCACertificateFile /etc/apache2/pebble-ca.pem
MDCertificateAgreement accepted
MDContactEmail admin@example.test
MDPortMap http:{http} https:{https}
MDCAChallenges http-01
MDomain {md}
<VirtualHost 127.0.0.1:{http}>
    ServerName {md}
</VirtualHost>
<VirtualHost 127.0.0.1:{https}>
    ServerName {md}
    SSLEngine on
</VirtualHost>
"""


def test_package_install_serve_upgrade_purge():
    assert os.geteuid() == 0, "the package test needs root (debootstrap, chroot)"
    need_tool("pebble")
    need_tool("dpkg-deb")
    tmp = Path(tempfile.mkdtemp(prefix="mdrs-pkg-", dir="/var/tmp"))
    root = None
    peb = None
    try:
        deb, deb_up = build_debs(tmp)
        assert deb_field(deb, "Package") == "mod-md-rs"
        root = make_root(tmp)

        # -- install: not enabled by itself; a2enmod refuses while Debian's md is enabled
        out = install(root, deb)
        assert root.p("/usr/lib/apache2/modules/mod_md_rs.so").is_file(), out
        assert not root.p("/etc/apache2/mods-enabled/md_rs.load").exists()
        files = root.sh("dpkg -L mod-md-rs").stdout.split()
        root.sh("a2enmod -q md")
        p = root.sh("a2enmod md_rs", check=False)
        assert p.returncode != 0 and "Module md is enabled - cannot proceed due to conflicts" \
            in p.stdout, p.stdout
        assert not root.p("/etc/apache2/mods-enabled/md_rs.load").exists()
        # both enabled by hand: apache2ctl -t fails with our message instead of loading md only
        os.symlink("../mods-available/md_rs.load", root.p("/etc/apache2/mods-enabled/md_rs.load"))
        p = root.sh("apache2ctl -t", check=False)
        assert p.returncode != 0 and "both are md_module" in p.stdout, p.stdout
        root.p("/etc/apache2/mods-enabled/md_rs.load").unlink()
        root.sh("a2dismod -q md && a2enmod -q ssl md_rs")

        # -- configure apache2 in the root: 127.0.0.1 only, one MD against pebble on the host
        http, https = free_port(), free_port()
        peb = Pebble(str(tmp), http_port=http, tls_port=https).start()
        shutil.copy(peb.ca_file, root.p("/etc/apache2/pebble-ca.pem"))
        root.p("/etc/apache2/ports.conf").write_text(
            f"Listen 127.0.0.1:{http}\n<IfModule ssl_module>\n    Listen 127.0.0.1:{https}\n"
            "</IfModule>\n")
        root.p("/etc/apache2/sites-available/md-test.conf").write_text(
            SITE.format(ca_port=peb.port, http=http, https=https, md=MD))
        root.sh("a2dissite -q 000-default && a2ensite -q md-test && apache2ctl -t")
        # apache2ctl would hand "start" to systemctl when the host's PID 1 is systemd
        root.sh("APACHE_STARTED_BY_SYSTEMD=1 apache2ctl start")
        pid = wait_for(root.apache_pid, 20, "apache2 pid file", root)

        stage = root.p(f"/etc/apache2/md/staging/{MD}")
        wait_for(lambda: (stage / "job.json").exists() and '"finished": true' in
                 (stage / "job.json").read_text() and any(stage.glob("pubcert*.pem")),
                 90, "the staged certificate", root)
        n = gracefuls(root)
        os.kill(pid, signal.SIGUSR1)
        wait_for(lambda: gracefuls(root) > n and root.p(
            f"/etc/apache2/md/domains/{MD}/pubcert.pem").exists(), 30, "activation", root)
        pebble_root = tmp / "pebble-root.pem"
        pebble_root.write_text(peb.root_pem())
        issuer = wait_for(lambda: _try_issuer(https, pebble_root), 20, "pebble's cert", root)
        assert issuer.startswith("Pebble Intermediate CA"), issuer
        store = store_hashes(root)
        assert f"domains/{MD}/pubcert.pem" in store

        # -- upgrade: apache2 keeps running (same parent), reloaded gracefully, store unchanged
        so = root.p(MODULE_SO)
        mapped_before = mapped_module(pid)
        assert mapped_before == (so.stat().st_ino, False), mapped_before
        n = gracefuls(root)
        out = install(root, deb_up)
        assert root.sh("dpkg-query -W -f '${Version}' mod-md-rs").stdout == \
            deb_field(deb_up, "Version")
        assert "md_rs is enabled: graceful reload of apache2 if apache2ctl -t passes" in out, out
        assert "Not reloading" not in out, out
        wait_for(lambda: gracefuls(root) > n, 20, "the graceful reload after upgrade", root)
        assert root.apache_pid() == pid
        # dpkg put a new file in place (a new inode) and the reload loaded it: the parent maps
        # the installed file, not the replaced one
        assert so.stat().st_ino != mapped_before[0]
        wait_for(lambda: mapped_module(pid) == (so.stat().st_ino, False), 20,
                 "the upgraded module mapped by apache2", root)
        assert wait_for(lambda: _try_issuer(https, pebble_root), 20, "serving", root) == issuer
        assert store_hashes(root) == store

        # -- upgrade with a configuration that fails apache2ctl -t: no reload, still running
        conf = root.p("/etc/apache2/conf-enabled/broken.conf")
        conf.write_text("ThisIsNotADirective on\n")
        n = gracefuls(root)
        out = install(root, bump(deb_up, tmp, "+upgrade2"))
        # apache2-maintscript-helper's apache2_reload: config test failed, no reload
        assert "Your configuration is broken. Not reloading Apache 2" in out, out
        assert "ThisIsNotADirective" in out, out
        time.sleep(2)
        assert gracefuls(root) == n and root.apache_pid() == pid
        conf.unlink()
        assert store_hashes(root) == store

        # -- purge: the package's files are gone, the store is not, apache2 still runs
        out = root.sh("apt-get purge -y mod-md-rs 2>&1").stdout
        assert root.sh("dpkg -s mod-md-rs", check=False).returncode != 0, out
        left = []
        for f in files:
            if f in ("/.",) or not os.path.lexists(root.p(f)):
                continue
            if root.p(f).is_dir() and not root.p(f).is_symlink() and \
                    root.sh(f"dpkg -S '{f}'", check=False).returncode == 0:
                continue  # a directory of another package (/usr/bin, /etc/apache2, ...)
            left.append(f)
        assert not left, f"left after purge: {left}\n{out}"
        for f in ("/etc/apache2/mods-enabled/md_rs.load", "/etc/apache2/mods-enabled/md_rs.conf",
                  "/var/lib/apache2/module/enabled_by_admin/md_rs",
                  "/var/lib/apache2/module/disabled_by_maint/md_rs"):
            assert not os.path.lexists(root.p(f)), f
        assert store_hashes(root) == store
        assert root.apache_pid() == pid
    finally:
        if root is not None:
            pid = root.apache_pid()
            if pid:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.1)
            if root.mounted:
                subprocess.run(["umount", str(root.p("/proc"))])
        if peb is not None:
            peb.stop()
        if os.environ.get("MDRS_KEEP_ROOT") != "1" and not (root and root.mounted and
                                                            _is_mounted(root.p("/proc"))):
            shutil.rmtree(tmp, ignore_errors=True)


MODULE_SO = "/usr/lib/apache2/modules/mod_md_rs.so"


def mapped_module(pid: int) -> tuple[int, bool] | None:
    """(inode, replaced) of the mod_md_rs.so that process `pid` has mapped, or None."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6:
            continue
        # seen from outside the chroot, the path has the root's directory in front
        path = parts[5].removesuffix(" (deleted)")
        if path.endswith(MODULE_SO):
            return int(parts[4]), path != parts[5]
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _is_mounted(p: Path) -> bool:
    return os.path.ismount(p)


def _try_issuer(port, pebble_root):
    try:
        return served_issuer(port, pebble_root)
    except (OSError, ssl.SSLError):
        return None
