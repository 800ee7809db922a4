"""A throw-away PostgreSQL 15 (Debian's) on 127.0.0.1 for the cluster tests.

Everything lives in one temporary directory owned by the `postgres` user (initdb and the
server refuse to run as root): data/ (initdb), sock/ (the unix socket, mode 0700, so only
`postgres` and root reach it) and postgres.log (the server's stderr). The server listens on
127.0.0.1 only, on a port chosen at run time; the role `md` (LOGIN, a random password,
scram-sha-256 over TCP) owns the database `md`. pg_hba.conf allows nothing else but the
superuser `postgres` on the private socket (used once, to create the role and database).

The postmaster is started directly (`postgres -D data`, as the `postgres` user, in its own
session) and not with `pg_ctl start`: pg_ctl daemonizes it, so it would be no child of the
test and, where PID 1 does not reap orphans (this machine's init does not), it would stay a
zombie after it exits. As our child it is stopped by PID and reaped like httpd in
lib/httpd.py: `stop()` sends SIGINT (fast shutdown: clients disconnected, no waiting for them),
waits, then SIGQUIT, then SIGKILL to its process group (its backends). A finalizer does the
same if a started instance is dropped or the interpreter exits without stop().

The data survives stop()/start() (same port), so `stop_for(seconds)` is an outage:

    with pg.stop_for(20):
        ...  # the database is down here, and for at least 20 s in total

Binaries: env MDRS_PG_BIN (default /usr/lib/postgresql/15/bin, Debian's `postgresql-15`;
scripts/deps.sh installs it). Missing binaries raise PostgresMissing, so a test FAILS.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from lib.ports import free_ports

PG_BIN = Path(os.environ.get("MDRS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


class PostgresMissing(RuntimeError):
    """PostgreSQL (or its `postgres` user) is not installed: the test must fail."""


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_alive(pgid: int) -> bool:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _stop_postmaster(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL to its process group;
    reap it. Safe to call for a postmaster that already exited."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5)):
        if proc.poll() is not None:
            break
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # backends left behind by a killed postmaster (same process group) must not linger
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)


class Postgres:
    def __init__(self, workdir=None, *, log_statements: bool = False, avoid_ports=(),
                 keep: bool | None = None):
        for tool in ("initdb", "postgres", "psql", "pg_isready"):
            if not (PG_BIN / tool).is_file():
                raise PostgresMissing(
                    f"{PG_BIN / tool} not found: install Debian's postgresql-15 "
                    "(scripts/deps.sh) or set MDRS_PG_BIN")
        try:
            self._pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise PostgresMissing(f"no user {PG_USER!r} (Debian's postgresql package makes it)")
        if os.geteuid() != 0:
            raise PostgresMissing("the PostgreSQL fixture runs as root (it runs the server as "
                                  f"{PG_USER!r})")
        self.keep = keep if keep is not None else bool(os.environ.get("MD_KEEP_TMP"))
        self._own_workdir = workdir is None
        base = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="md-e2e-pg-"))
        os.chmod(base, 0o755)  # `postgres` must traverse it
        self.dir = base / "postgres"
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.log_file = self.dir / "postgres.log"
        self.port = free_ports(1, avoid=set(avoid_ports))[0]
        self.user = self.database = "md"
        self.password = secrets.token_hex(16)
        self.log_statements = log_statements
        self.proc: subprocess.Popen | None = None
        self._finalizer = None
        self._initialized = False
        self.queries = 0  # psql() calls against the md database (the caller's own load)

    # ---- connection ----------------------------------------------------------------------

    def conninfo(self) -> str:
        """A libpq key=value connection string for the role `md` (with its password)."""
        return (f"host=127.0.0.1 port={self.port} dbname={self.database} user={self.user} "
                f"password={self.password}")

    def url(self) -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{self.database}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # ---- setup -----------------------------------------------------------------------------

    def _as_postgres(self, *cmd, timeout=120) -> str:
        p = subprocess.run(["runuser", "-u", PG_USER, "--", *map(str, cmd)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           env=_env(), cwd=self.dir)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): "
                               f"{p.stdout.decode(errors='replace')[-3000:]}")
        return p.stdout.decode(errors="replace")

    def _initdb(self) -> None:
        self.dir.mkdir(mode=0o700)
        os.chown(self.dir, self._pw.pw_uid, self._pw.pw_gid)
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-U", PG_USER, "-E", "UTF8",
                          "--locale=C", "--no-sync", "--auth-local=trust",
                          "--auth-host=scram-sha-256")
        self.sock.mkdir(mode=0o700)
        os.chown(self.sock, self._pw.pw_uid, self._pw.pw_gid)
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.sock}'",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
            # a throw-away database: durability is not what is tested
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 32MB",
            "max_connections = 200",
            # app=: tells the module's statements from psql's (test/bench/cluster.py)
            "log_line_prefix = '%m [%p] app=%a %q%u@%d '",
        ]
        if self.log_statements:
            settings.append("log_statement = 'all'")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# lib/postgres.py\n" + "\n".join(settings) + "\n")
        (self.data / "pg_hba.conf").write_text(
            "# lib/postgres.py: the superuser only on the private socket, `md` only over TCP\n"
            f"local all {PG_USER} trust\n"
            f"host {self.database} {self.user} 127.0.0.1/32 scram-sha-256\n")

    def _create_role(self) -> None:
        sql = (f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}';"
               f"CREATE DATABASE {self.database} OWNER {self.user};")
        for stmt in sql.split(";")[:-1]:  # CREATE DATABASE cannot run in a transaction block
            self._as_postgres(PG_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                              "-h", self.sock, "-p", self.port, "-d", "postgres", "-c", stmt)

    # ---- running ---------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> "Postgres":
        assert self.proc is None, "already started"
        if not self._initialized:
            self._initdb()
        log = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.data)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, user=PG_USER, group=self._pw.pw_gid,
                extra_groups=[], env=_env(), cwd=self.dir, start_new_session=True)
        finally:
            log.close()
        self._finalizer = weakref.finalize(self, _stop_postmaster, self.proc)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not start: {self.log()[-3000:]}")
            time.sleep(0.1)
        if not self._initialized:
            self._create_role()
            self._initialized = True
        return self

    def _ready(self) -> bool:
        p = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                            str(self.port), "-d", "postgres", "-t", "1"], env=_env())
        return p.returncode == 0

    def stop(self) -> None:
        """Stop the postmaster by PID (see _stop_postmaster); nothing of it is left after."""
        proc, self.proc = self.proc, None
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_postmaster(proc) once and disarms itself
            self._finalizer = None
        assert proc is None or not pid_alive(proc.pid)

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def stop_for(self, seconds: float):
        """Down for at least `seconds`: stopped on entry, started again on leaving the block
        (after the rest of the time has passed). Yields the monotonic time it is due back.
        When the block raises, the database stays down (the test's teardown stops it)."""
        self.stop()
        back = time.monotonic() + seconds
        yield back
        time.sleep(max(0.0, back - time.monotonic()))
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if not self.keep:
                shutil.rmtree(self.dir.parent if self._own_workdir else self.dir,
                              ignore_errors=True)

    # ---- queries ---------------------------------------------------------------------------

    def psql(self, sql: str, timeout: float = 30) -> list[list[str]]:
        """Run `sql` as `md` over TCP (password auth, as the module connects); the rows of
        the last statement as lists of strings (NULL is ""). Raises RuntimeError on failure."""
        self.queries += 1
        p = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", self.database,
             "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
            env=dict(_env(), PGPASSWORD=self.password, PGCONNECT_TIMEOUT="5"))
        if p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}): {sql}\n"
                               f"{p.stderr.decode(errors='replace')}")
        return list(csv.reader(io.StringIO(p.stdout.decode())))

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _env() -> dict[str, str]:
    # no PG* of the caller's environment (PGHOST, PGPASSWORD, ...) leaks into the tools
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LANG"] = env["LC_ALL"] = "C"
    return env
