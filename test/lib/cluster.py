"""N httpd nodes sharing their MDs through PostgreSQL (mod_md-rs clusters), one pebble.

Node i (1-based) is an HttpdServer of its own (server dir, MDStoreDir = its local cache, error
log) listening on 127.0.0.<i>; all nodes listen on the SAME two ports, the http one being
pebble's httpPort (and the https one its tlsPort), so pebble's validation reaches whichever
node DNS names. pebble-challtestsrv answers every name with 127.0.0.1 (node 1) unless told
otherwise: `assign()` points each MD's name at a node of its choice (`Pebble.add_a`).

With a database (lib/postgres.py) every node gets the cluster directives:

    MDClusterDatabase <dir>/cluster/conninfo    one line, the libpq connection string
    MDClusterKeyFile  <dir>/cluster/keyfile     64 hex chars, the same file for all nodes
    MDClusterNode     node<i>
    MDClusterLease    <lease>
    MDClusterPoll     <poll>

Both files are root's, mode 0600 (the root parent reads them; the children run as www-data).
Without a database (`pg=None`) the nodes are plain file-store servers, each ordering on its
own (the fixture's self-test, test_cluster_fixture.py, runs so with any module).

The renewing child of a node is found by the lease it holds (`lease()`: md_rs_lease.owner is
`<node>:<pid>`), or, with the hold script (`hold_script()`), by the marker the script writes at
challenge setup: `<child pid> <script pid>` ($PPID is the httpd child that runs MDMessageCmd;
the module runs the command in a process group of its own, so the script outlives a killed
node and is killed by its own pid).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lib.httpd import HttpdServer, MdModule, children_of, free_ports
from lib.pebble import Pebble
from lib.postgres import Postgres
import lib.wait

AH10059 = re.compile(r"AH10059: The Managed Domain (\S+) has been setup")
# one debug line per completed renewal watchdog run (C: AH10107, ours: "next renewal check in")
WATCHDOG_RUN = re.compile(r"AH10107: next run in|next renewal check in")
# an error log line of the md module at a level above debug
MD_LINE = re.compile(r"^\[[^\]]*\] \[md:(emerg|alert|crit|error|warn|notice|info)\] .*$",
                     re.M)


def wait_for(cond, timeout: float, what, logs=lambda: ""):
    """lib.wait.wait_for, polled every 0.2 s."""
    return lib.wait.wait_for(cond, timeout, what, logs, interval=0.2)


@dataclass
class Node:
    name: str  # MDClusterNode
    ip: str
    srv: HttpdServer

    def error_log(self) -> str:
        return self.srv.error_log()

    def log_mark(self) -> int:
        """An offset into the error log: `log_since(mark)` is what was logged after."""
        return len(self.srv.error_log())

    def log_since(self, mark: int) -> str:
        return self.srv.error_log()[mark:]

    def setup_logged(self, mark: int = 0) -> set[str]:
        """MDs this node logged AH10059 for (staged: its own order or copied from the DB)."""
        return set(AH10059.findall(self.log_since(mark)))

    def watchdog_runs(self) -> int:
        return len(WATCHDOG_RUN.findall(self.srv.error_log()))

    @property
    def running(self) -> bool:
        return self.srv.proc is not None and self.srv.proc.poll() is None

    @property
    def parent_pid(self) -> int:
        return self.srv.proc.pid

    def children(self) -> list[int]:
        return children_of(self.parent_pid)


HOLD_SCRIPT = """#!/bin/sh
# MDMessageCmd: on the first challenge-setup note the renewing child's pid and our own, then
# hang: the order stands between placing the challenge and telling the CA.
case "$1" in
  challenge-setup:*)
    if [ ! -e "{mark}" ]; then
      echo "$PPID $$" > "{mark}.tmp" && mv "{mark}.tmp" "{mark}"
      exec sleep {hold}
    fi ;;
esac
exit 0
"""


class Cluster:
    def __init__(self, module: MdModule, n: int = 3, *, pg: Postgres | None = None,
                 lease: str = "15s", poll: str = "2s", log_level: str = "warn md:debug",
                 keep: bool | None = None):
        assert os.geteuid() == 0, "the cluster tests run as root (children as www-data)"
        assert n <= 250
        self.keep = keep if keep is not None else bool(os.environ.get("MD_KEEP_TMP"))
        self.dir = Path(tempfile.mkdtemp(prefix="md-e2e-cluster-"))
        os.chmod(self.dir, 0o755)
        self.pg, self.lease_time, self.poll_time = pg, lease, poll
        self.http_port, self.https_port = free_ports(2)
        self.nodes = [Node(f"node{i}", f"127.0.0.{i}",
                           HttpdServer(module, log_level=log_level, keep=self.keep,
                                       listen_ip=f"127.0.0.{i}",
                                       ports=(self.http_port, self.https_port)))
                      for i in range(1, n + 1)]
        self.peb = Pebble(str(self.dir), self.http_port, self.https_port)
        self.conninfo_file = self.dir / "cluster" / "conninfo"
        self.key_file = self.dir / "cluster" / "keyfile"
        if pg is not None:
            self.conninfo_file.parent.mkdir(mode=0o700)
            _write_private(self.conninfo_file, pg.conninfo() + "\n")
            _write_private(self.key_file, secrets.token_hex(32) + "\n")
        self.mds: dict[str, Node] = {}  # MD name -> the node DNS points it at

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start_pebble(self) -> "Cluster":
        self.peb.start()
        return self

    # ---- DNS and config ----------------------------------------------------------------------

    def assign(self, mds, to: list[Node] | None = None) -> dict[str, Node]:
        """Point each MD's name at a node: the i-th MD at to[i % len(to)] (default: all nodes,
        round robin starting with node 1). Returns the new assignments."""
        to = to or self.nodes
        new = {}
        for i, md in enumerate(mds):
            node = to[i % len(to)]
            self.peb.add_a(md, node.ip)
            new[md] = node
        self.mds.update(new)
        return new

    def cluster_conf(self, node: Node) -> str:
        if self.pg is None:
            return ""
        return (f"MDClusterDatabase {self.conninfo_file}\n"
                f"MDClusterKeyFile {self.key_file}\n"
                f"MDClusterNode {node.name}\n"
                f"MDClusterLease {self.lease_time}\n"
                f"MDClusterPoll {self.poll_time}\n")

    def conf(self, node: Node, mds, extra: str = "", plain: bool = False) -> str:
        """The config body of `node`: pebble, http-01, quick watchdog runs and retries, the
        cluster directives (not if `plain`), `extra`, one MDomain with an http and https vhost
        per MD."""
        peb = self.peb
        return (f"MDCertificateAuthority {peb.directory_url}\n"
                f"MDCACertificateFile {peb.ca_file}\n"
                "MDCertificateAgreement accepted\n"
                "MDContactEmail admin@example.test\n"
                f"MDPortMap http:{self.http_port} https:{self.https_port}\n"
                "MDCAChallenges http-01\n"
                "MDCheckInterval 1s\n"
                "MDRetryDelay 1s\n"
                + ("" if plain else self.cluster_conf(node)) + extra
                + "".join(f"MDomain {md}\n" for md in mds)
                + "".join(vhosts(md) for md in mds))

    def render(self, mds, extra: str = "", per_node: dict[str, str] | None = None,
               nodes: list[Node] | None = None, plain: bool = False) -> None:
        """Write the config of each node (default: all) with the MDs `mds`; `per_node` adds
        lines to single nodes (by name); `plain`: without the cluster directives."""
        for node in nodes or self.nodes:
            node.srv.render(self.conf(node, mds, extra + (per_node or {}).get(node.name, ""),
                                      plain))

    def hold_script(self, node: Node, hold: int = 20) -> tuple[str, Path]:
        """(MDMessageCmd line, marker path) for HOLD_SCRIPT on `node`."""
        mark = node.srv.dir / "run" / "renewing-child.pid"
        os.chmod(node.srv.dir / "run", 0o777)  # the script runs as www-data
        cmd = node.srv.write_file("conf/hold.sh", HOLD_SCRIPT.format(mark=mark, hold=hold),
                                  mode=0o755)
        return f"MDMessageCmd {cmd}\n", mark

    # ---- processes ---------------------------------------------------------------------------

    def start(self, nodes: list[Node] | None = None) -> None:
        for node in nodes or self.nodes:
            n = node.error_log().count("AH00489")
            res = node.srv.start(timeout=30)
            assert res.started, f"{node.name} did not start:\n{res.text[-4000:]}"
            wait_for(lambda: node.error_log().count("AH00489") > n, 20,
                     f"{node.name}: AH00489", self.logs)

    def graceful(self, nodes: list[Node] | None = None, timeout: float = 30) -> None:
        """SIGUSR1 to each node's parent; returns once every one logged a new AH00489."""
        nodes = nodes or [n for n in self.nodes if n.running]
        counts = {n.name: n.error_log().count("AH00489") for n in nodes}
        for node in nodes:
            os.kill(node.parent_pid, signal.SIGUSR1)
        for node in nodes:
            wait_for(lambda: node.error_log().count("AH00489") > counts[node.name], timeout,
                     f"{node.name}: graceful restart", self.logs)

    def restart(self, nodes: list[Node] | None = None) -> None:
        """Stop (SIGTERM) and start each node again."""
        for node in nodes or self.nodes:
            node.srv.stop()
            self.start([node])

    def kill_node(self, node: Node) -> None:
        """A crash: SIGKILL to the node's whole process group (parent and children), reaped."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.parent_pid, signal.SIGKILL)
        node.srv.stop()

    def settle(self, seconds: float, runs: int = 2) -> None:
        """Let time pass; every running node's renewal watchdog must have run `runs` times
        meanwhile (so "nothing happened" cannot come from a watchdog that did not run)."""
        nodes = [n for n in self.nodes if n.running]
        before = {n.name: n.watchdog_runs() for n in nodes}
        time.sleep(seconds)
        for n in nodes:
            ran = n.watchdog_runs() - before[n.name]
            assert ran >= runs, (f"{n.name}: the watchdog ran {ran} times in {seconds}s\n"
                                 f"{n.error_log()[-3000:]}")

    def logs(self, tail: int = 2500) -> str:
        """The end of every node's error log (for assertion messages)."""
        return "\n".join(f"==== {n.name} ({n.ip}) error.log ====\n{n.error_log()[-tail:]}"
                         for n in self.nodes)

    def cleanup(self) -> None:
        try:
            for node in self.nodes:
                node.srv.cleanup()
        finally:
            self.peb.stop()
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)

    # ---- serving -----------------------------------------------------------------------------

    def root_file(self) -> Path:
        root = self.dir / "pebble-root.pem"
        if not root.exists():
            root.write_text(self.peb.root_pem())
        return root

    def served(self, node: Node, host: str, timeout: float = 10) -> dict:
        """The leaf `node` serves for SNI `host`, verified against pebble's root (dict as
        ssl.getpeercert()). Right after a graceful an old child may still answer with the
        module's fallback certificate: retried for `timeout` seconds."""
        ctx = ssl.create_default_context(cafile=str(self.root_file()))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((node.ip, self.https_port), timeout=10) as s:
                    with ctx.wrap_socket(s, server_hostname=host) as tls:
                        return tls.getpeercert()
            except ssl.SSLCertVerificationError as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{node.name} serves no pebble certificate for "
                                         f"{host}: {e}") from e
                time.sleep(0.2)

    def served_serial(self, node: Node, host: str, timeout: float = 10) -> int:
        return int(self.served(node, host, timeout)["serialNumber"], 16)

    def served_serials(self, host: str) -> dict[str, int]:
        """{node name: serial} of the certificate each running node serves for `host`."""
        return {n.name: self.served_serial(n, host) for n in self.nodes if n.running}

    # ---- the database (read-only) ------------------------------------------------------------

    def certs(self) -> dict[str, dict]:
        """md_rs_cert: {md: {fence, owner, node, updated}}."""
        rows = self.pg.psql("SELECT md, fence, owner, updated FROM md_rs_cert ORDER BY md")
        return {md: {"fence": int(fence), "owner": owner, "node": owner.rsplit(":", 1)[0],
                     "updated": updated} for md, fence, owner, updated in rows}

    def cert_files(self, md: str) -> dict[str, str]:
        """{file: md5 of its data} of the set published for `md`."""
        return dict(self.pg.psql(
            f"SELECT file, md5(data) FROM md_rs_cert_file WHERE md = '{md}' ORDER BY file"))

    def lease(self, md: str) -> dict | None:
        """md_rs_lease of `md`: {owner, node, pid, fence, expired} or None."""
        rows = self.pg.psql("SELECT owner, fence, expires < now() FROM md_rs_lease "
                            f"WHERE md = '{md}'")
        if not rows:
            return None
        owner, fence, expired = rows[0]
        node, pid = owner.rsplit(":", 1)
        return {"owner": owner, "node": node, "pid": int(pid), "fence": int(fence),
                "expired": expired == "t"}

    def try_db(self, query):
        """query() or None while the database (or the module's schema) is not there."""
        try:
            return query()
        except RuntimeError:
            return None


def vhosts(name: str) -> str:
    """An http and an https vhost for `name` on the node's own address."""
    return (f"<VirtualHost @IP@:@HTTP_PORT@>\n    ServerName {name}\n</VirtualHost>\n"
            f"<VirtualHost @IP@:@HTTPS_PORT@>\n    ServerName {name}\n    SSLEngine on\n"
            "</VirtualHost>\n")


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
