"""Self-checks of the cluster fixtures that test_cluster.py relies on, with any module (no
cluster directives): lib/postgres.py (start, password auth, 127.0.0.1 only, an outage, data
kept over restarts, nothing left running after stop() or a dropped instance) and lib/cluster.py
(three nodes on 127.0.0.1-3 sharing pebble's ports, DNS per name from challtestsrv, per-node
stores, serving per node address, the hold script and a killed node). About 30 s.
"""

from __future__ import annotations

import gc
import os
import subprocess

import pytest

from lib.cluster import kill_pid, wait_for
from lib.postgres import Postgres, pid_alive


def listeners(port: int) -> list[str]:
    out = subprocess.run(["ss", "-Htln", f"sport = :{port}"], check=True, capture_output=True,
                         text=True).stdout
    return [line.split()[3] for line in out.splitlines()]


def test_postgres_fixture(pg_factory):
    pg = pg_factory()
    assert listeners(pg.port) == [f"127.0.0.1:{pg.port}"]
    assert pg.psql("SELECT current_user, current_database()") == [["md", "md"]]
    # the conninfo string the module gets, through libpq's own parser
    out = subprocess.run(["psql", "-X", "-At", pg.conninfo(), "-c", "SELECT 42"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "42", out.stderr
    # scram-sha-256: a wrong password is refused
    pw, pg.password = pg.password, "wrong"
    with pytest.raises(RuntimeError, match="password authentication failed"):
        pg.psql("SELECT 1")
    pg.password = pw
    pg.psql("CREATE TABLE t (md text PRIMARY KEY, data bytea)")
    pg.psql("INSERT INTO t VALUES ('a', '\\x00ff'), ('b,c', NULL)")
    assert pg.psql("SELECT md, encode(data, 'hex') FROM t ORDER BY md") == [
        ["a", "00ff"], ["b,c", ""]]
    first = pg.pid
    with pg.stop_for(2):
        assert not pid_alive(first)
        assert listeners(pg.port) == []
        with pytest.raises(RuntimeError, match="Connection refused|connection to server"):
            pg.psql("SELECT 1")
    assert pg.psql("SELECT count(*) FROM t") == [["2"]]
    pg.restart()
    assert pg.psql("SELECT count(*) FROM t") == [["2"]]
    last = pg.pid
    pg.stop()
    assert not pid_alive(last) and listeners(pg.port) == []


def test_postgres_dropped_without_stop_is_stopped():
    """The finalizer stops a started instance that is dropped without stop()."""
    pg = Postgres().start()
    pid, base = pg.pid, pg.dir.parent
    try:
        del pg
        gc.collect()
        assert not pid_alive(pid)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_cluster_nodes_without_cluster_directives(cluster_factory, md_module):
    """Three plain nodes on 127.0.0.1-3, one MD each, its name resolved to its node (two of
    them not to challtestsrv's default 127.0.0.1): 3 orders, validated at each node's own
    address on the shared port, each MD only in its node's store, served at that address."""
    cluster = cluster_factory(md_module.name)
    mds = [f"f{i}.cluster.test" for i in (1, 2, 3)]
    assert cluster.assign(mds) == dict(zip(mds, cluster.nodes))
    for md, node in zip(mds, cluster.nodes):
        cluster.render([md], nodes=[node])
    cluster.start()
    for md, node in zip(mds, cluster.nodes):
        wait_for(lambda: md in node.setup_logged(), 90, f"{node.name}: {md} staged",
                 cluster.logs)
    assert len(cluster.peb.orders()) == 3, cluster.peb.orders()
    for md, node in zip(mds, cluster.nodes):
        staged = (node.srv.dir / "md" / "staging").iterdir()
        assert sorted(p.name for p in staged if not p.name.startswith(".")) == [md]
    cluster.graceful()
    serials = [cluster.served_serial(node, md) for md, node in zip(mds, cluster.nodes)]
    assert sorted(serials) == sorted(cluster.peb.issued_serials())
    cluster.settle(3)
    assert len(cluster.peb.orders()) == 3


def test_cluster_hold_script_and_killed_node(cluster_factory, md_module):
    """The hold script stops node1's order at challenge setup and names the renewing child
    (a child of node1's parent, running as www-data); kill_node() leaves no process of the
    node; the held script is ended by its pid."""
    cluster = cluster_factory(md_module.name, n=1)
    node = cluster.nodes[0]
    cmd, mark = cluster.hold_script(node, hold=30)
    cluster.render(["h.cluster.test"], extra=cmd)
    cluster.start()
    wait_for(lambda: mark.exists() and mark.read_text().strip(), 60, "challenge setup",
             cluster.logs)
    child, script = (int(x) for x in mark.read_text().split())
    try:
        assert child in node.children()
        assert os.stat(f"/proc/{child}").st_uid != 0
        assert pid_alive(script)
        assert len(cluster.peb.orders()) == 1
        parent = node.parent_pid
        cluster.kill_node(node)
        assert not node.running
        assert not pid_alive(parent) and not pid_alive(child)
    finally:
        kill_pid(script)
