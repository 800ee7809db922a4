"""Free TCP ports on loopback for the servers the tests start (httpd, pebble, proxies, ...).

A port found free by binding port 0 and closing the socket comes from the kernel's ephemeral
range (net.ipv4.ip_local_port_range), the same range connect() takes client ports from: until
the server binds it, any client connection on the machine (another test's, under pytest-xdist
another worker's, which make many) or another bind(0) may take it, and the server fails with
EADDRINUSE. So the ports handed out here lie outside that range (below it, from BASE on),
where connect() and bind(0) never go. Under pytest-xdist each worker (PYTEST_XDIST_WORKER=gwN
of PYTEST_XDIST_WORKER_COUNT) draws from its own slice, so no two workers pick the same port;
within a slice ports are handed out in turn (from a random start), so one comes back only
after the whole slice was used. A port is handed out only when it binds on 127.0.0.1 without
SO_REUSEADDR (nothing listens there, no connection in TIME_WAIT holds it).
"""
from __future__ import annotations

import os
import random
import socket
import threading

BASE = 10000  # below: well-known and registered services
_MIN_PORTS = 2000


def _pool() -> range:
    """The ports outside the ephemeral range: below it, else above it, else (a machine whose
    range covers nearly everything) all of BASE..65535."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split()[:2])
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    if lo - BASE >= _MIN_PORTS:
        return range(BASE, lo)
    if 65535 - hi >= _MIN_PORTS:
        return range(hi + 1, 65536)
    return range(BASE, 65536)


def _slice() -> range:
    pool = _pool()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        index = int(worker[2:]) % count if worker.startswith("gw") else 0
    except ValueError:
        count, index = 1, 0
    size = len(pool) // count
    return range(pool.start + index * size, pool.start + (index + 1) * size)


_lock = threading.Lock()
_ports = _slice()
_next = random.randrange(len(_ports))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, avoid=()) -> list[int]:
    """n distinct TCP ports on 127.0.0.1, free now and none in `avoid`."""
    global _next
    out: list[int] = []
    with _lock:
        for _ in range(len(_ports)):
            port = _ports[_next]
            _next = (_next + 1) % len(_ports)
            if port not in avoid and _bindable(port):
                out.append(port)
                if len(out) == n:
                    return out
    raise RuntimeError(f"no {n} free TCP ports in {_ports.start}-{_ports.stop - 1}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (see free_ports)."""
    return free_ports(1)[0]
