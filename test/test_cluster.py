"""Clusters (mod_md-rs only): httpd nodes sharing their MDs through PostgreSQL, one ACME order
per renewal (lib/cluster.py, lib/postgres.py; the fixtures' self-test is
test_cluster_fixture.py).

Three nodes on 127.0.0.1-3, all on pebble's http port (so an http-01 validation reaches the node
DNS names, which is often not the node that ordered: `Cluster.assign` spreads the MDs' names
over the nodes), each with its own store, all with the same MDClusterDatabase/MDClusterKeyFile
and `MDClusterPoll 2s`, `MDCheckInterval 1s`, `MDRetryDelay 1s`, as root with `User
www-data`. What is counted: orders and certificates in pebble's log, rows of md_rs_cert /
md_rs_lease (read with psql as the module's role), AH10059 per node and MD (a set staged: its
own order or a set copied from the database), the certificate each node serves.

1. 20 MDs: 20 orders, 20 published sets, private keys not in the clear in the database; every
   node stages every MD and after a graceful serves it, the same serial on all nodes; a further
   graceful and a restart of all nodes: still 20 orders.
2. A node killed in the middle of an order (held at challenge setup by its MDMessageCmd,
   `MDClusterLease 8s`): another node publishes the MD within the lease time and a margin;
   1 certificate issued (orders may be 2); the killed node comes back and serves it too.
3. The database down for 20 s (60 s with MDRS_CLUSTER_FULL=1): every node keeps serving (also
   across a graceful) and logs the failure; an MD added meanwhile is not ordered; once the
   database is back it is ordered exactly once and served by all nodes.
4. A partitioned node (its renewing child SIGSTOPped while holding the lease, held at challenge
   setup): its lease expires, another node publishes; after SIGCONT the node writes nothing
   (the md_rs_cert row and files unchanged), says it lost the lease, and serves the
   published certificate like the others.

About 4 minutes (5 with MDRS_CLUSTER_FULL=1).
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from lib.cluster import MD_LINE, Cluster, kill_pid, wait_for
from lib.postgres import pid_alive

POLL = 2  # seconds, MDClusterPoll
HOLD_LEASE = 8  # seconds, MDClusterLease of the scenarios that hold an order
HOLD = 20  # seconds the hold script keeps node1's order at challenge setup
MARGIN = 45  # seconds for another node to take over and order, after a lease expired
FULL = os.environ.get("MDRS_CLUSTER_FULL") == "1"
# how a node names a failing database (loosely: the module's wording is its own)
DB_ERROR = re.compile(r"(?i)database|postgres|libpq")
LEASE = re.compile(r"(?i)lease")


@pytest.fixture
def rs_cluster(pg_factory, cluster_factory):
    """make(lease="15s", n=3) -> a Cluster of mod_md-rs nodes on a fresh database, pebble
    running, nodes not started. (pg_factory first: the nodes stop before the database.)"""
    def make(lease: str = "15s", n: int = 3) -> Cluster:
        return cluster_factory("rs", n, pg=pg_factory(), lease=lease, poll=f"{POLL}s")
    return make


# ---- helpers -----------------------------------------------------------------------------

def n_orders(cluster: Cluster) -> int:
    return len(cluster.peb.orders())


def wait_published(cluster: Cluster, mds, timeout: float, not_by: str | None = None) -> dict:
    """md_rs_cert rows of all `mds` (by a node other than `not_by`), waited for."""
    def rows():
        certs = cluster.try_db(cluster.certs) or {}
        got = {md: c for md, c in certs.items() if md in mds and c["node"] != not_by}
        return got if len(got) == len(mds) else None
    who = f" by a node other than {not_by}" if not_by else ""
    return wait_for(rows, timeout, f"{sorted(mds)} in md_rs_cert{who}", cluster.logs)


def wait_setup_logged(cluster: Cluster, mds, timeout: float, marks=None) -> None:
    """Every running node logged AH10059 for every MD in `mds` (after its mark)."""
    marks = marks or {}
    for node in (n for n in cluster.nodes if n.running):
        mark = marks.get(node.name, 0)
        wait_for(lambda: set(mds) <= node.setup_logged(mark), timeout,
                 lambda: f"{node.name}: AH10059 for {sorted(set(mds) - node.setup_logged(mark))}",
                 cluster.logs)


def served_everywhere(cluster: Cluster, mds) -> dict[str, int]:
    """{md: serial}: every running node serves a pebble certificate for each MD, the same one."""
    serials = {}
    for md in mds:
        per_node = cluster.served_serials(md)
        assert len(set(per_node.values())) == 1, f"{md}: different certificates {per_node}"
        serials[md] = next(iter(per_node.values()))
    return serials


def md_lines(text: str, pattern: re.Pattern) -> list[str]:
    """The md module's log lines above debug level that match `pattern`."""
    return [m.group(0) for m in MD_LINE.finditer(text) if pattern.search(m.group(0))]


def held_by_node1(cluster: Cluster, md: str, mark) -> tuple[int, int]:
    """node1 (started alone, with the hold script) took `md`'s lease and stands at challenge
    setup: (renewing child pid, script pid), checked against the lease's owner."""
    node1 = cluster.nodes[0]
    wait_for(mark.exists, 60, "node1 at challenge setup", cluster.logs)
    child, script = (int(x) for x in mark.read_text().split())
    lease = cluster.lease(md)
    assert lease is not None and not lease["expired"], f"no lease of node1 for {md}: {lease}"
    assert (lease["node"], lease["pid"]) == ("node1", child), (
        f"the lease {lease} does not name node1's renewing child {child}")
    assert child in node1.children()
    assert md not in (cluster.try_db(cluster.certs) or {})
    return child, script


# ---- 1. one order per MD for the whole cluster -------------------------------------------

def test_cluster_one_order_per_md(rs_cluster):
    cluster = rs_cluster()
    peb = cluster.peb
    mds = [f"c{i}.cluster.test" for i in range(1, 21)]
    cluster.assign(mds)
    cluster.render(mds)
    cluster.start()
    certs = wait_published(cluster, mds, 180)
    assert {c["node"] for c in certs.values()} <= {n.name for n in cluster.nodes}, certs
    wait_setup_logged(cluster, mds, 2 * POLL + 60)
    assert n_orders(cluster) == 20, f"{n_orders(cluster)} orders; published by " + ", ".join(
        f"{md}: {c['owner']}" for md, c in certs.items())
    keys, clear, pubcerts = (int(x) for x in cluster.pg.psql(
        "SELECT count(*) FILTER (WHERE file LIKE 'privkey%'),"
        " count(*) FILTER (WHERE file LIKE 'privkey%' AND"
        "  (position('BEGIN PRIVATE KEY'::bytea IN data) > 0"
        "   OR position('BEGIN RSA PRIVATE KEY'::bytea IN data) > 0"
        "   OR position('BEGIN EC PRIVATE KEY'::bytea IN data) > 0)),"
        " count(*) FILTER (WHERE file LIKE 'pubcert%') FROM md_rs_cert_file")[0])
    assert keys >= 20 and pubcerts >= 20, (keys, pubcerts)
    assert clear == 0, f"{clear} private keys in the clear in md_rs_cert_file"
    cluster.graceful()
    serials = served_everywhere(cluster, mds)
    assert sorted(serials.values()) == sorted(peb.issued_serials())
    assert len(set(serials.values())) == 20
    for step in ("graceful", "restart"):
        cluster.graceful() if step == "graceful" else cluster.restart()
        cluster.settle(2 * POLL + 1)
        assert n_orders(cluster) == 20, f"after the {step}: {n_orders(cluster)} orders"
        assert served_everywhere(cluster, mds) == serials, f"after the {step}"
    assert len(peb.issued_serials()) == 20
    assert len(cluster.certs()) == 20


# ---- 2. a node killed in the middle of an order -----------------------------------------

def test_cluster_node_killed_mid_order(rs_cluster):
    cluster = rs_cluster(lease=f"{HOLD_LEASE}s")
    peb = cluster.peb
    node1, node2, node3 = cluster.nodes
    md = "k.cluster.test"
    cluster.assign([md], to=[node2])  # validated at a node that did not start the order
    hold, mark = cluster.hold_script(node1, hold=HOLD)
    cluster.render([md], per_node={"node1": hold})
    cluster.start([node1])
    child, script = held_by_node1(cluster, md, mark)
    try:
        cluster.start([node2, node3])
        os.kill(child, signal.SIGKILL)  # the lease holder, then the rest of node1 (a crash)
        cluster.kill_node(node1)
    finally:
        kill_pid(script)  # in a process group of its own: not killed with node1
    cert = wait_published(cluster, [md], HOLD_LEASE + MARGIN, not_by="node1")[md]
    assert len(peb.issued_serials()) == 1, peb.issued_serials()
    assert n_orders(cluster) <= 2, peb.orders()
    # node1 comes back on its store (the abandoned order in its staging) and takes the set
    since = node1.log_mark()
    cluster.start([node1])
    wait_setup_logged(cluster, [md], 2 * POLL + 30, marks={"node1": since})
    cluster.graceful()
    assert served_everywhere(cluster, [md]) == {md: peb.issued_serials()[0]}
    orders = n_orders(cluster)
    cluster.settle(2 * POLL + 1)
    assert n_orders(cluster) == orders and len(peb.issued_serials()) == 1, peb.orders()
    assert cluster.certs()[md] == cert, "published again"


# ---- 3. the database down ----------------------------------------------------------------

def test_cluster_database_down(rs_cluster):
    down = 60 if FULL else 20
    cluster = rs_cluster()
    pg, peb = cluster.pg, cluster.peb
    mds = [f"d{i}.cluster.test" for i in (1, 2, 3)]
    new = "d4.cluster.test"
    cluster.assign(mds + [new])
    cluster.render(mds)
    cluster.start()
    wait_published(cluster, mds, 90)
    wait_setup_logged(cluster, mds, 2 * POLL + 30)
    cluster.graceful()
    serials = served_everywhere(cluster, mds)
    assert n_orders(cluster) == 3, peb.orders()
    marks = {n.name: n.log_mark() for n in cluster.nodes}
    with pg.stop_for(down) as back:
        for node in cluster.nodes:
            wait_for(lambda: md_lines(node.log_since(marks[node.name]), DB_ERROR),
                     3 * POLL + 20, f"{node.name}: an error naming the database", cluster.logs)
        assert served_everywhere(cluster, mds) == serials, "with the database down"
        cluster.graceful()
        assert served_everywhere(cluster, mds) == serials, "after a graceful, database down"
        cluster.render(mds + [new])
        cluster.graceful()
        assert served_everywhere(cluster, mds) == serials, "after adding an MD, database down"
        cluster.settle(max(2 * POLL + 1, back - time.monotonic() - 1))
        assert n_orders(cluster) == 3, f"ordered with the database down: {peb.orders()}"
    cert = wait_published(cluster, [new], down + MARGIN)[new]
    wait_setup_logged(cluster, [new], 2 * POLL + 30, marks=marks)
    assert n_orders(cluster) == 4, f"{new} (published by {cert['owner']}): {peb.orders()}"
    cluster.graceful()
    assert served_everywhere(cluster, [new])[new] in peb.issued_serials()
    assert served_everywhere(cluster, mds) == serials
    cluster.settle(2 * POLL + 1)
    assert n_orders(cluster) == 4 and len(peb.issued_serials()) == 4, peb.orders()
    for node in cluster.nodes:
        assert pg.password not in node.error_log(), f"{node.name} logged the password"


# ---- 4. a partitioned node ---------------------------------------------------------------

def test_cluster_partitioned_node_writes_nothing(rs_cluster):
    cluster = rs_cluster(lease=f"{HOLD_LEASE}s")
    node1, node2, node3 = cluster.nodes
    md = "p.cluster.test"
    cluster.assign([md], to=[node2])
    hold, mark = cluster.hold_script(node1, hold=HOLD)
    cluster.render([md], per_node={"node1": hold})
    cluster.start([node1])
    child, script = held_by_node1(cluster, md, mark)
    held = f"node1:{child}"
    stopped = False
    try:
        cluster.start([node2, node3])
        os.kill(child, signal.SIGSTOP)  # its lease heartbeat stops with it
        stopped = True
        cert = wait_published(cluster, [md], HOLD_LEASE + MARGIN, not_by="node1")[md]
        lease = cluster.lease(md)
        assert lease is None or lease["owner"] != held, lease
        files = cluster.cert_files(md)
        assert files, f"no files published for {md}"
        since = node1.log_mark()
        os.kill(child, signal.SIGCONT)
        stopped = False
        # the held order goes on once the script returns: let it run to its end
        wait_for(lambda: not pid_alive(script), HOLD + 10, "the hold script's end")
        lost = wait_for(lambda: md_lines(node1.log_since(since), LEASE), 60,
                        "node1: a message about its lost lease", cluster.logs)
        cluster.settle(2 * POLL + 3)
        assert cluster.certs()[md] == cert, f"md_rs_cert changed after node1 resumed: {lost}"
        assert cluster.cert_files(md) == files, "md_rs_cert_file changed after node1 resumed"
        wait_setup_logged(cluster, [md], 2 * POLL + 30, marks={"node1": since})
        cluster.graceful()
        served_everywhere(cluster, [md])
    finally:
        if stopped:
            os.kill(child, signal.SIGCONT)
        kill_pid(script)
