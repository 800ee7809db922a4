"""A real forward HTTP proxy for e2e tests: Debian's tinyproxy on 127.0.0.1:<free port>.

tinyproxy runs in the foreground (`tinyproxy -d -c <conf>`) with its own config file, log file
and PID file in a directory of the test (nothing of Debian's /etc/tinyproxy is used). It
listens on 127.0.0.1 only, allows only 127.0.0.1 as client and allows CONNECT only to the
ports given (pebble's; a CONNECT to another port gets 403). The log is written at LogLevel
Connect, which has per client connection `Connect (file descriptor <n>): 127.0.0.1`, per
request `Request (file descriptor <n>): CONNECT 127.0.0.1:<port> HTTP/1.1` (`requests()`,
`connects(port)`) and per upstream connection opened `Established connection to host
"127.0.0.1" using file descriptor <n>.` (`established()`). Run as root it stays root (no
`User`: it logs a warning and keeps the current user).

tinyproxy speaks plain HTTP to its clients (no TLS on the listening side), so it can stand in
for an `http://` proxy URL only.

`stop()` ends it by PID (SIGTERM, wait, SIGKILL); `start()` again brings it back on the same
port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time

from lib.pebble import free_port

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"


class TinyProxy:
    def __init__(self, workdir, connect_ports, port: int | None = None):
        self.dir = os.path.join(str(workdir), "tinyproxy")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.connect_ports = list(connect_ports)
        self.conf_file = os.path.join(self.dir, "tinyproxy.conf")
        self.log_file = os.path.join(self.dir, "tinyproxy.log")
        self.pid_file = os.path.join(self.dir, "tinyproxy.pid")
        self.out_file = os.path.join(self.dir, "tinyproxy.out")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_conf(self):
        lines = [
            "Listen 127.0.0.1",
            f"Port {self.port}",
            "Timeout 30",
            "MaxClients 50",
            "Allow 127.0.0.1",
            *[f"ConnectPort {p}" for p in self.connect_ports],
            f'LogFile "{self.log_file}"',
            "LogLevel Connect",
            f'PidFile "{self.pid_file}"',
            "DisableViaHeader Yes",
        ]
        with open(self.conf_file, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10) -> "TinyProxy":
        if not os.path.exists(TINYPROXY):
            raise RuntimeError("tinyproxy is not installed (scripts/deps.sh installs it)")
        self.write_conf()
        self.proc = subprocess.Popen([TINYPROXY, "-d", "-c", self.conf_file],
                                     stdout=open(self.out_file, "a"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited ({self.proc.returncode}): "
                                   f"{self._read(self.out_file)[-2000:]}"
                                   f"{self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tinyproxy did not listen on {self.port}: {self.log()[-2000:]}")

    def stop(self):
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    @staticmethod
    def _read(path) -> str:
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        return self._read(self.log_file)

    def requests(self) -> list[str]:
        """Every request line tinyproxy received (`CONNECT 127.0.0.1:14000 HTTP/1.1`,
        `GET http://... HTTP/1.1`), oldest first."""
        return re.findall(r"Request \(file descriptor \d+\): (.+)", self.log())

    def connects(self, port: int | None = None) -> int:
        """CONNECT requests (to `port`, or to any port) seen so far."""
        n = 0
        for r in self.requests():
            m = re.match(r"CONNECT \S+:(\d+) ", r)
            if m and (port is None or int(m.group(1)) == port):
                n += 1
        return n

    def established(self) -> int:
        """Upstream connections tinyproxy opened (for CONNECT: tunnels)."""
        return len(re.findall(r'Established connection to host "[^"]+" using file descriptor',
                              self.log()))
