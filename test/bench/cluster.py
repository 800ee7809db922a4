#!/usr/bin/env python3
"""Benchmark: a mod_md-rs cluster (issue 16) of 3 nodes sharing N MDs through PostgreSQL.

The same fixtures as test/test_cluster.py (test/lib/cluster.py, test/lib/postgres.py): nodes
on 127.0.0.1-3 sharing pebble's ports, each MD's name resolved to one node (round robin), a
throw-away PostgreSQL 15 with `log_statement = 'all'`. Runs as root (children as www-data).

Phases and what is measured:

1. order: all nodes start on empty stores; time until every MD is published (md_rs_cert),
   until every node staged every MD (AH10059), until every node activated them (the script's
   graceful per node once it staged all, or with `--activation restart` the module's own
   restart, MDActivationRestart on: AH10068 for every MD) and until a verified handshake for
   every MD on every node succeeded ("served"). Then the nodes are stopped, which makes
   pg_stat_database exact (a backend reports its counters at the latest when it exits).
   Database work per renewal, for the whole phase (polling included) divided by N:
   transactions (xact_commit + xact_rollback of database md, the script's own psql calls
   subtracted; a new connection counts one of its own, the backend's start) and statements,
   i.e. query round trips (the server log's `statement:` and `execute` lines not from psql;
   a multi-statement simple query is one).
2. start: node1 alone with its warm store, `--starts` times each, alternating: with the cluster
   directives and as a plain file-store node (the same store and config without them); time to
   AH00489 and to a verified handshake for the last MD; database transactions per clustered
   start.
3. idle: all nodes running for `--idle` seconds with nothing to renew: transactions and
   statements per node and second (the polling cost with N MDs), the start cost of phase 2
   subtracted.

    python3 test/bench/cluster.py [--mds 1000] [--nodes 3] [--poll 2s] [--lease 300s]
        [--activation graceful|restart] [--starts 3] [--idle 30] [--timeout 3600] [--json F]

The module: env MD_RS_MODULE (default target/release/libmod_md.so of this repo). MD_KEEP_TMP=1
keeps the directories.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.cluster import Cluster, Node, wait_for  # noqa: E402
from lib.httpd import module_by_name  # noqa: E402
from lib.postgres import Postgres  # noqa: E402

AH10068 = re.compile(r"AH10068: (\S+): staged set activated")
# log_line_prefix '%m [%p] app=%a %q%u@%d ' (lib/postgres.py); psql is the script itself
STATEMENT = re.compile(r"\] app=(\S*) \S*@\S* LOG:  (?:statement|execute \S+):")


def md_name(i: int) -> str:
    return f"b{i:05d}.cluster.test"


def xacts(pg: Postgres) -> int:
    """Transactions of database md so far, without this script's own psql calls (two each:
    a backend's start is a transaction of its own, then the query; this reading's are counted
    in the next one). A backend reports its counters at the latest when it exits, a moment
    after its client closed the connection: read after the nodes stopped, and a second later."""
    time.sleep(1)
    n = int(pg.psql("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                    "WHERE datname = 'md'")[0][0])
    return n - 2 * pg.queries


def statements(pg: Postgres, start: int, end: int | None = None) -> int:
    """Statements the module sent, in the server log between two offsets."""
    log = pg.log()[start:end]
    return sum(1 for m in STATEMENT.finditer(log) if m.group(1) != "psql")


def activated(node: Node, mark: int) -> set[str]:
    return set(AH10068.findall(node.log_since(mark)))


def served_all(cluster: Cluster, mds, nodes) -> None:
    for node in nodes:
        for md in mds:
            cluster.served(node, md, timeout=30)


def phase_order(cluster: Cluster, pg: Postgres, mds, args) -> dict:
    t0 = time.monotonic()
    x0, s0 = xacts(pg), len(pg.log())
    cluster.start()
    started = time.monotonic() - t0
    logs = functools.partial(cluster.logs, 1500)
    wait_for(lambda: len(cluster.try_db(cluster.certs) or {}) >= len(mds), args.timeout,
             f"{len(mds)} MDs published", logs)
    published = time.monotonic() - t0
    staged_at = {}
    # With MDActivationRestart the parent may activate a set before the child announced it
    # (no AH10059 for that MD): only the activations count then.
    pending = list(cluster.nodes) if args.activation == "graceful" else []
    while pending:  # graceful each node as soon as it staged everything
        for node in list(pending):
            if len(node.setup_logged()) >= len(mds):
                staged_at[node.name] = time.monotonic() - t0
                if args.activation == "graceful":
                    cluster.graceful([node], timeout=args.timeout)
                pending.remove(node)
        if time.monotonic() - t0 > args.timeout:
            raise SystemExit(f"not staged everywhere in {args.timeout}s\n{logs()}")
        time.sleep(0.5)
    if args.activation == "restart":
        for node in cluster.nodes:
            wait_for(lambda: len(activated(node, 0)) >= len(mds), args.timeout,
                     f"{node.name}: all activated", logs)
    active = time.monotonic() - t0
    t_check = time.monotonic()
    served_all(cluster, mds, cluster.nodes)
    check = time.monotonic() - t_check
    orders = len(cluster.peb.orders())
    for node in cluster.nodes:
        node.srv.stop()
    tx = xacts(pg) - x0
    st = statements(pg, s0)
    return {"nodes_started_s": started, "published_s": published, "staged_s": staged_at,
            "activated_s": active, "served_s": active + check, "handshake_check_s": check,
            "orders": orders, "xacts": tx, "statements": st,
            "xacts_per_renewal": tx / len(mds), "statements_per_renewal": st / len(mds)}


def timed_start(cluster: Cluster, node: Node, last_md: str) -> tuple[float, float]:
    t0 = time.monotonic()
    res = node.srv.start(timeout=600)
    if not res.started:
        raise SystemExit(f"{node.name} did not start:\n{res.text[-3000:]}")
    up = time.monotonic() - t0
    cluster.served(node, last_md, timeout=60)
    return up, time.monotonic() - t0


def phase_start(cluster: Cluster, pg: Postgres, mds, args) -> dict:
    node = cluster.nodes[0]
    runs = {"cluster": [], "plain": []}
    start_xacts = []
    for _ in range(args.starts):
        for variant in ("cluster", "plain"):
            cluster.render(mds, extra=args.extra, nodes=[node], plain=variant == "plain")
            x0 = xacts(pg)
            runs[variant].append(timed_start(cluster, node, mds[-1]))
            node.srv.stop()
            if variant == "cluster":
                start_xacts.append(xacts(pg) - x0)
    cluster.render(mds, extra=args.extra, nodes=[node])
    out = {}
    for variant, times in runs.items():
        out[variant] = {"started_s": statistics.median(t[0] for t in times),
                        "serving_s": statistics.median(t[1] for t in times),
                        "runs": times}
    out["xacts_per_cluster_start"] = statistics.median(start_xacts)
    return out


def phase_idle(cluster: Cluster, pg: Postgres, args, start_cost: float) -> dict:
    x0, s0 = xacts(pg), len(pg.log())
    cluster.start()
    time.sleep(args.idle)
    for node in cluster.nodes:
        node.srv.stop()
    n = len(cluster.nodes)
    tx = xacts(pg) - x0 - n * start_cost
    st = statements(pg, s0)
    return {"seconds": args.idle, "xacts": tx, "statements_incl_starts": st,
            "xacts_per_node_second": tx / n / args.idle}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mds", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--poll", default="2s", help="MDClusterPoll")
    ap.add_argument("--lease", default="300s", help="MDClusterLease")
    ap.add_argument("--activation", choices=("graceful", "restart"), default="graceful")
    ap.add_argument("--starts", type=int, default=3, help="warm starts per variant")
    ap.add_argument("--idle", type=float, default=30, help="seconds of the idle phase")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for phase 1")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the nodes' children run as www-data, postgres as "
                         "postgres)")
    args.extra = "MDActivationRestart on\n" if args.activation == "restart" else ""
    mds = [md_name(i) for i in range(1, args.mds + 1)]
    pg = Postgres(log_statements=True)
    cluster = None
    try:
        pg.start()
        cluster = Cluster(module_by_name("rs"), args.nodes, pg=pg, lease=args.lease,
                          poll=args.poll, log_level="warn md:notice").start_pebble()
        cluster.assign(mds)
        cluster.render(mds, extra=args.extra)
        result = {"mds": args.mds, "nodes": args.nodes, "poll": args.poll,
                  "lease": args.lease, "activation": args.activation,
                  "module": cluster.nodes[0].srv.module.path}
        result["order"] = phase_order(cluster, pg, mds, args)
        result["start"] = phase_start(cluster, pg, mds, args)
        result["idle"] = phase_idle(cluster, pg, args,
                                    result["start"]["xacts_per_cluster_start"])
    finally:
        if cluster is not None:
            cluster.cleanup()
        pg.cleanup()
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def report(r: dict) -> None:
    o, s, i = r["order"], r["start"], r["idle"]
    print(f"{r['nodes']} nodes x {r['mds']} MDs, MDClusterPoll {r['poll']}, "
          f"MDClusterLease {r['lease']}, activation by {r['activation']}; {r['module']}")
    print(f"order:  orders {o['orders']} (expected {r['mds']}); nodes started "
          f"{o['nodes_started_s']:.1f}s, all published {o['published_s']:.1f}s, staged "
          + ", ".join(f"{k} {v:.1f}s" for k, v in o["staged_s"].items())
          + f", activated {o['activated_s']:.1f}s, served everywhere {o['served_s']:.1f}s "
          f"(the handshake check took {o['handshake_check_s']:.1f}s)")
    print(f"        per renewal: {o['xacts_per_renewal']:.1f} transactions (a connection's "
          f"start is one), {o['statements_per_renewal']:.1f} statements (polling of the "
          "phase included)")
    for variant in ("cluster", "plain"):
        v = s[variant]
        print(f"start:  {variant:7} warm store: AH00489 after {v['started_s']:.2f}s, last MD "
              f"served after {v['serving_s']:.2f}s (median of {len(v['runs'])})")
    print(f"        {s['xacts_per_cluster_start']:.0f} transactions per clustered start")
    print(f"idle:   {i['xacts_per_node_second']:.2f} transactions per node and second "
          f"over {i['seconds']:.0f}s ({i['statements_incl_starts']} statements, starts "
          "included)")


if __name__ == "__main__":
    main()
