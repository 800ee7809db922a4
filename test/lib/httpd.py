"""A small harness to run Apache httpd (Debian's apache2) on loopback for e2e tests.

Everything lives in one temporary server directory: conf/, logs/, run/, htdocs/, the md
store (MDStoreDir) and a throw-away self-signed certificate for plain SSL vhosts. Ports are
picked at run time by binding port 0 on 127.0.0.1; nothing listens outside loopback and
the ACME CA URL points at an unreachable loopback port, so nothing leaves the machine.

Two ways to use a server directory:
  * ``config_test()`` runs ``apache2 -t`` (parse the config, no post_config) and returns
    (exit code, combined output);
  * ``start()`` runs ``apache2 -D FOREGROUND`` in the background and waits until httpd either
    exits (startup failure) or reports "resuming normal operations"; ``stop()`` ends it by PID
    (SIGTERM, wait, then SIGKILL to the process group it leads).

A server listens on 127.0.0.1 unless given another loopback address (``listen_ip``, e.g.
127.0.0.2); servers on different loopback addresses may share the same ports (``ports``), as
the nodes of a cluster do (lib/cluster.py).

Snippets and bodies may use the tokens @DIR@, @IP@ (the listen address), @HTTP_PORT@,
@HTTPS_PORT@, @CERT@, @KEY@, which are replaced when the config is rendered.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lib.ports import free_ports  # noqa: F401 (lib.httpd.free_ports: used by tests and lib)

TEST_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = TEST_DIR.parent

APACHE2 = os.environ.get("APACHE2_BIN", "/usr/sbin/apache2")
MODULES_DIR = Path(os.environ.get("APACHE2_MODULES_DIR", "/usr/lib/apache2/modules"))
C_MODULE_PATH = os.environ.get("MD_C_MODULE", str(MODULES_DIR / "mod_md.so"))
RS_MODULE_DEFAULT = REPO_DIR / "target" / "release" / "libmod_md.so"

# An ACME directory URL that is guaranteed to be unreachable (discard port on loopback).
UNREACHABLE_CA = "https://127.0.0.1:9/directory"

# httpd logs this NOTICE (always logged, regardless of LogLevel) once the parent is up.
STARTED_MARKER = "AH00489"


@dataclass(frozen=True)
class MdModule:
    """One implementation of md_module under test."""

    name: str  # "c" or "rs"
    path: str

    @property
    def loadmodule(self) -> str:
        return f'LoadModule md_module "{self.path}"'

    def exists(self) -> bool:
        return os.path.isfile(self.path)


def rs_module_path() -> str:
    return os.environ.get("MD_RS_MODULE") or str(RS_MODULE_DEFAULT)


def module_by_name(name: str) -> MdModule:
    if name == "c":
        return MdModule("c", C_MODULE_PATH)
    if name == "rs":
        return MdModule("rs", rs_module_path())
    raise ValueError(f"unknown md module {name!r} (expected 'c' or 'rs')")


def selected_module_names(value: Optional[str] = None) -> list[str]:
    """Parse MD_MODULES / --md-modules ("c,rs", "c", "rs")."""
    raw = value if value is not None else os.environ.get("MD_MODULES", "c,rs")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for n in names:
        module_by_name(n)  # validate
    return names


def port_listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


_CERT_CACHE: dict[str, tuple[bytes, bytes]] = {}


def self_signed_pem(cn: str = "localhost") -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) of a throw-away self-signed cert, made once per process."""
    if cn not in _CERT_CACHE:
        with tempfile.TemporaryDirectory(prefix="md-e2e-cert-") as d:
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
                 "-addext", f"subjectAltName=DNS:{cn}"],
                check=True, capture_output=True, timeout=60)
            _CERT_CACHE[cn] = (Path(cert).read_bytes(), Path(key).read_bytes())
    return _CERT_CACHE[cn]


@dataclass
class StartResult:
    started: bool  # True: httpd reported it is running; False: it exited (or timed out)
    exit_code: Optional[int]  # exit code if the process ended
    error_log: str
    output: str  # httpd's stdout+stderr so far
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.output + "\n" + self.error_log


class ModuleMissing(Exception):
    """The md module (or apache2) under test does not exist: the test must fail."""


def check_prerequisites(module: MdModule) -> None:
    if not os.path.isfile(APACHE2):
        raise ModuleMissing(f"apache2 binary not found at {APACHE2} (env APACHE2_BIN)")
    if not module.exists():
        hint = ("build it (cargo build --release) or set MD_RS_MODULE"
                if module.name == "rs" else "install apache2-bin or set MD_C_MODULE")
        raise ModuleMissing(f"md module '{module.name}' not found at {module.path}: {hint}")


class HttpdServer:
    """One self-contained httpd instance in its own temporary directory."""

    def __init__(self, module: MdModule, *, ssl: bool = True, status: bool = False,
                 md_defaults: bool = True, log_level: str = "warn",
                 keep: Optional[bool] = None, listen_ip: str = "127.0.0.1",
                 ports: Optional[tuple[int, int]] = None):
        check_prerequisites(module)  # raised inside the test: a missing module FAILS it
        self.module = module
        self.ssl = ssl
        self.status = status
        self.md_defaults = md_defaults
        self.log_level = log_level
        self.keep = keep if keep is not None else bool(os.environ.get("MD_KEEP_TMP"))
        self.dir = Path(tempfile.mkdtemp(prefix=f"md-e2e-{module.name}-"))
        os.chmod(self.dir, 0o755)  # children run as www-data and must traverse it
        for sub in ("conf", "logs", "run", "htdocs"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        self.listen_ip = listen_ip
        self.http_port, self.https_port = ports or free_ports(2)
        self.conf_path = self.dir / "conf" / "httpd.conf"
        self.error_log_path = self.dir / "logs" / "error.log"
        self.output_path = self.dir / "logs" / "httpd-output.log"
        self.proc: Optional[subprocess.Popen] = None
        self._out_fh = None
        self._cert_written = False

    # ---- files -----------------------------------------------------------------------

    @property
    def cert_file(self) -> Path:
        return self.dir / "conf" / "selfsigned.crt"

    @property
    def key_file(self) -> Path:
        return self.dir / "conf" / "selfsigned.key"

    def ensure_cert(self) -> None:
        if not self._cert_written:
            cert, key = self_signed_pem()
            self.cert_file.write_bytes(cert)
            self.key_file.write_bytes(key)
            os.chmod(self.key_file, 0o600)
            self._cert_written = True

    def substitute(self, text: str) -> str:
        if "@CERT@" in text or "@KEY@" in text:
            self.ensure_cert()
        return (text.replace("@DIR@", str(self.dir))
                .replace("@IP@", self.listen_ip)
                .replace("@HTTP_PORT@", str(self.http_port))
                .replace("@HTTPS_PORT@", str(self.https_port))
                .replace("@CERT@", str(self.cert_file))
                .replace("@KEY@", str(self.key_file)))

    def write_file(self, relpath: str, content: str | bytes, mode: int = 0o644) -> Path:
        p = self.dir / relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = self.substitute(content).encode()
        p.write_bytes(content)
        os.chmod(p, mode)
        return p

    # ---- config ----------------------------------------------------------------------

    def render(self, body: str = "") -> Path:
        """Write conf/httpd.conf: the fixed base plus ``body`` (after the md defaults)."""
        mods = MODULES_DIR
        lines = [
            "# generated by test/lib/httpd.py",
            f'ServerRoot "{self.dir}"',
            f'DefaultRuntimeDir "{self.dir}/run"',
            f'PidFile "{self.dir}/run/httpd.pid"',
            f'ErrorLog "{self.error_log_path}"',
            f"LogLevel {self.log_level}",
            "ServerName localhost",
            f"Listen {self.listen_ip}:{self.http_port}",
        ]
        if self.ssl:
            lines.append(f"Listen {self.listen_ip}:{self.https_port}")
        lines += [
            f'LoadModule mpm_event_module "{mods}/mod_mpm_event.so"',
            f'LoadModule authz_core_module "{mods}/mod_authz_core.so"',
        ]
        if self.ssl:
            lines.append(f'LoadModule ssl_module "{mods}/mod_ssl.so"')
        if self.status:
            lines.append(f'LoadModule status_module "{mods}/mod_status.so"')
        lines.append(self.module.loadmodule)
        if os.geteuid() == 0:
            lines += ["User www-data", "Group www-data"]
        lines += [
            "StartServers 1",
            "ServerLimit 2",
            "ThreadLimit 8",
            "ThreadsPerChild 8",
            "MinSpareThreads 8",
            "MaxSpareThreads 16",
            "MaxRequestWorkers 16",
            "GracefulShutdownTimeout 2",
            f'DocumentRoot "{self.dir}/htdocs"',
            "<Directory />",
            "    Require all granted",
            "</Directory>",
        ]
        if self.md_defaults:
            lines += [
                f'MDStoreDir "{self.dir}/md"',
                f"MDCertificateAuthority {UNREACHABLE_CA}",
            ]
        lines += ["# ---- test body ----", self.substitute(body), ""]
        self.conf_path.write_text("\n".join(lines))
        return self.conf_path

    def body_line_offset(self) -> int:
        """Line number in httpd.conf of the first body line (after render())."""
        for i, line in enumerate(self.conf_path.read_text().splitlines(), start=1):
            if line == "# ---- test body ----":
                return i + 1
        raise RuntimeError("config not rendered")

    def _cmd(self, *extra: str) -> list[str]:
        return [APACHE2, "-d", str(self.dir), "-f", str(self.conf_path), *extra]

    def config_test(self, timeout: float = 30) -> tuple[int, str]:
        """``apache2 -t``: (exit code, stdout+stderr)."""
        p = subprocess.run(self._cmd("-t"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=_httpd_env())
        return p.returncode, p.stdout.decode(errors="replace")

    # ---- running ---------------------------------------------------------------------

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20) -> StartResult:
        """Start httpd in the foreground (background process) and wait for the verdict."""
        assert self.proc is None, "already started"
        # a restart appends to the same error log: only this start's lines count
        base = len(self.error_log())
        self._out_fh = open(self.output_path, "wb")
        self.proc = subprocess.Popen(self._cmd("-D", "FOREGROUND"), stdout=self._out_fh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=_httpd_env(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                return StartResult(False, rc, self.error_log(), self.output())
            log = self.error_log()
            if STARTED_MARKER in log[base:] and port_listening(self.http_port, self.listen_ip):
                return StartResult(True, None, log, self.output())
            if time.monotonic() > deadline:
                return StartResult(False, None, log, self.output(), timed_out=True)
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> Optional[int]:
        """Stop what start() started: SIGTERM to its PID, wait, then SIGKILL its group."""
        proc, self.proc = self.proc, None
        rc = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    rc = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)  # the group httpd leads
                    except ProcessLookupError:
                        pass
                    rc = proc.wait(timeout=10)
            else:
                rc = proc.returncode
            # children of a stopped parent (same process group) must not linger
            _wait_group_gone(proc.pid, timeout=5)
        if self._out_fh is not None:
            self._out_fh.close()
            self._out_fh = None
        return rc

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _httpd_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_")}
    env.setdefault("LANG", "C")
    return env


def syntax_error_message(output: str) -> str:
    """The error text of ``apache2 -t`` output, without httpd's "Syntax error on line N of F:".

    httpd prints either "AH00526: Syntax error on line N of F:" followed by the message on the
    next line(s), or (for section nesting errors) "apache2: Syntax error on line N of F: msg".
    """
    m = re.search(r"Syntax error on line \d+ of [^\n]*?\.conf:[ ]?", output)
    if not m:
        return output.strip()
    return output[m.end():].strip()


def children_of(pid: int) -> list[int]:
    """PIDs of the processes whose parent is `pid` (from /proc)."""
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(p.name))
    return kids
