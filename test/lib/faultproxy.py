"""A fault-injecting ACME proxy in front of pebble (Python stdlib only).

    proxy = FaultProxy(pebble).start()          # TLS on 127.0.0.1:<free port>, in threads
    conf: MDCertificateAuthority {proxy.directory_url}, MDCACertificateFile {pebble.ca_file}
    proxy.set_fault("finalize", "truncate", count=1)
    proxy.set_fault("*", "badnonce", percent=90)
    ... proxy.injected("finalize"), proxy.requests["authz"] ...
    proxy.stop()

The proxy listens with the TLS certificate pebble itself uses (made by lib/pebble.py for
127.0.0.1, issued by `pebble.ca_file`), so a client that trusts pebble trusts the proxy. Every
request is forwarded to pebble's ACME port over TLS, on a persistent upstream connection per
client connection. The `Host` header goes upstream unchanged: pebble checks a JWS's `url`
against the request's Host and builds the URLs in its answers from it, so they already name the
proxy. The proxy rewrites any absolute URL of the upstream (`https://127.0.0.1:<pebble port>`,
also `localhost`) in bodies and in `Location`/`Link` headers to its own base, so a CA that
uses a fixed base URL is covered as well (`rewrite()`, unit-tested).

ACME steps (by path, pebble 2.4.0's URL layout):

| step | requests |
|---|---|
| directory | GET /dir |
| nonce | HEAD/GET /nonce-plz |
| account | POST /sign-me-up (newAccount) |
| order | POST /order-plz (newOrder) |
| authz | GET or POST-as-GET /authZ/... |
| challenge | POST /chalZ/... |
| finalize | POST /finalize-order/... |
| certificate | GET/POST-as-GET /certZ/... (download) |
| poll | POST-as-GET /my-order/... (order status) |
| other | everything else (/my-account/, key rollover, revocation) |

Faults (`set_fault(step, kind, count=k)`: the next k matching requests fail, then requests pass;
or `percent=p`: each matching request fails with probability p/100; `step="*"` matches every
step). A fault set on a step replaces the previous one there; `clear_fault(step)` or
`clear_faults()` end them while the proxy runs.

| kind | what the client gets | does pebble see the request? |
|---|---|---|
| `drop` | the connection is closed without an answer | no |
| `500` | 500 with an ACME problem `serverInternal` | no |
| `503` | 503 `Retry-After: N` (`retry_after=`), plain text body (as a load balancer) | no |
| `429` | 429 `Retry-After: N`, problem `rateLimited` | no |
| `badnonce` | 400 problem `badNonce` with a fresh `Replay-Nonce` from pebble (POSTs only) | no |
| `truncate` | pebble's answer cut: its headers (with the full Content-Length) and half of the body, then the connection is closed; a body-less answer is cut inside its headers | yes |
| `garble` | pebble's status and headers with a body that is neither JSON nor PEM (a body-less answer gets a garbage `Replay-Nonce`) | yes |
| `stall` | nothing for `stall=` S seconds, then the connection is closed | no |

`requests[step]` counts the requests per step, `injected(step=None, kind=None)` the faults
injected (also per step and kind in `injections`), `log` lists (step, method, path, fault or
None) per request.

What Debian's pebble 2.4.0 lacks, the proxy can add (issue 14):

- ARI (RFC 9773): `set_ari_window(start, end, retry_after=1, explanation=None)` adds
  `renewalInfo` (`<base>/renewal-info/`) to the directory and answers `GET
  /renewal-info/<cert id>` itself with that `suggestedWindow` (datetimes or RFC 3339 strings)
  and `Retry-After`; `ari_requests` lists the ids asked. `directory_fetches` counts GET /dir.
- Profiles: `profiles = {"name": "description", ...}` adds `meta.profiles` to the directory.
- `new_orders` lists the JSON payloads of newOrder requests (decoded from the JWS), so a test
  sees `replaces` and `profile`. pebble ignores both fields.
"""

from __future__ import annotations

import base64
import datetime as _dt
import http.client
import json
import random
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from lib.wait import wait_for

STEPS = ("directory", "nonce", "account", "order", "authz", "challenge", "finalize",
         "certificate")
KINDS = ("drop", "500", "503", "429", "badnonce", "truncate", "garble", "stall")

_PATHS = (
    ("/dir", "directory"),
    ("/nonce-plz", "nonce"),
    ("/sign-me-up", "account"),
    ("/order-plz", "order"),
    ("/authZ/", "authz"),
    ("/chalZ/", "challenge"),
    ("/finalize-order/", "finalize"),
    ("/certZ/", "certificate"),
    ("/my-order/", "poll"),
)

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "content-length"}


def step_of(method: str, path: str) -> str:
    p = path.split("?", 1)[0]
    for prefix, step in _PATHS:
        if p == prefix or (prefix.endswith("/") and p.startswith(prefix)):
            return step
    return "other"


def rewrite(data: bytes, upstream_bases: list[str], base: str) -> bytes:
    """Replace every upstream base URL in data by the proxy's base."""
    for up in upstream_bases:
        data = data.replace(up.encode(), base.encode())
    return data


@dataclass
class Fault:
    kind: str
    count: Optional[int] = None  # fail the next `count` matching requests
    percent: Optional[float] = None  # or this share of them
    retry_after: int = 1  # seconds, for 503 and 429
    stall: float = 3.0  # seconds, for stall
    detail: Optional[str] = None  # the problem `detail` of a 500 (default: a fixed text)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {KINDS})")
        if (self.count is None) == (self.percent is None):
            raise ValueError("a fault needs either count= or percent=")


def _problem(ptype: str, detail: str, status: int) -> bytes:
    return json.dumps({"type": f"urn:ietf:params:acme:error:{ptype}", "detail": detail,
                       "status": status}).encode()


class _Request:
    def __init__(self, method, path, version, headers, body):
        self.method, self.path, self.version = method, path, version
        self.headers, self.body = headers, body  # headers: list of (name, value)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class FaultProxy:
    def __init__(self, pebble, rng_seed: Optional[int] = None):
        self.up_host, self.up_port = "127.0.0.1", pebble.port
        self.certfile, self.keyfile = pebble._cert, pebble._key
        self.cafile = pebble.ca_file
        self.port = 0
        self.faults: dict[str, Fault] = {}
        self.requests: Counter = Counter()
        self.injections: Counter = Counter()  # (step, kind) -> n
        self.log: list[tuple] = []
        self._lock = threading.Lock()
        self._rng = random.Random(rng_seed)
        self._stop = threading.Event()
        self._sock = None
        self._conns: set = set()
        self._threads: list[threading.Thread] = []
        self.ari_window: Optional[tuple[str, str]] = None
        self.ari_retry_after = 1
        self.ari_explanation: Optional[str] = None
        self.ari_requests: list[str] = []
        self.directory_fetches = 0
        self.profiles: Optional[dict] = None
        self.new_orders: list[dict] = []

    def set_ari_window(self, start, end, retry_after: int = 1,
                       explanation: Optional[str] = None) -> None:
        def rfc3339(t):
            if isinstance(t, _dt.datetime):
                return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return t
        with self._lock:
            self.ari_window = (rfc3339(start), rfc3339(end))
            self.ari_retry_after = retry_after
            self.ari_explanation = explanation

    # ---- control (any thread) ----------------------------------------------------------

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def directory_url(self) -> str:
        return f"{self.base}/dir"

    @property
    def upstream_bases(self) -> list[str]:
        return [f"https://{h}:{self.up_port}" for h in ("127.0.0.1", "localhost")]

    def set_fault(self, step: str, kind: str, *, count=None, percent=None, retry_after=1,
                  stall=3.0, detail=None) -> None:
        if step != "*" and step not in STEPS + ("poll", "other"):
            raise ValueError(f"unknown step {step!r}")
        fault = Fault(kind, count, percent, retry_after, stall, detail)
        with self._lock:
            self.faults[step] = fault

    def clear_fault(self, step: str) -> None:
        with self._lock:
            self.faults.pop(step, None)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def injected(self, step: Optional[str] = None, kind: Optional[str] = None) -> int:
        with self._lock:
            return sum(n for (s, k), n in self.injections.items()
                       if (step is None or s == step) and (kind is None or k == kind))

    def pending(self, step: str) -> int:
        """Faults still to inject at step (count faults; 0 when none or used up)."""
        with self._lock:
            f = self.faults.get(step)
            return f.count if f is not None and f.count is not None else 0

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certfile, self.keyfile)
        ctx.set_alpn_protocols(["http/1.1"])
        self._server_ctx = ctx
        self._up_ctx = ssl.create_default_context(cafile=self.cafile)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        s.settimeout(0.2)
        self._sock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- serving -----------------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve_conn, args=(raw,), daemon=True,
                                 name="faultproxy-conn")
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve_conn(self, raw):
        raw.settimeout(10)
        try:
            conn = self._server_ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        conn.settimeout(1.0)
        with self._lock:
            self._conns.add(conn)
        up = None
        rfile = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                req = self._read_request(rfile)
                if req is None:
                    return
                step = step_of(req.method, req.path)
                fault = self._decide(step, req)
                with self._lock:
                    self.requests[step] += 1
                    self.log.append((step, req.method, req.path, fault.kind if fault else None))
                keep = True
                local = self._emulate(req)
                if local is not None:
                    self._respond(conn, req, *local)
                elif fault is None:
                    up, status, reason, headers, body = self._forward(up, req)
                    body = self._augment(step, req, body)
                    self._respond(conn, req, status, reason, headers, body)
                else:
                    up, keep = self._inject(conn, up, req, fault)
                if not keep:
                    return
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            if up is not None:
                up.close()
            try:
                rfile.close()
                conn.close()
            except OSError:
                pass

    def _read_request(self, rfile) -> Optional[_Request]:
        # idle keep-alive connections are held open (the client's pool decides), polled so
        # that stop() ends them
        while True:
            try:
                line = rfile.readline(65537)
                break
            except socket.timeout:
                if self._stop.is_set():
                    return None
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise ValueError(f"bad request line {line!r}")
        method, path, version = parts
        headers = []
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        req = _Request(method, path, version, headers, b"")
        if (req.header("Transfer-Encoding") or "").lower() == "chunked":
            body = b""
            while True:
                size = int(rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += rfile.read(size)
                rfile.readline()
            req.body = body
        else:
            n = int(req.header("Content-Length") or 0)
            req.body = rfile.read(n) if n else b""
        return req

    def _decide(self, step: str, req: _Request) -> Optional[Fault]:
        with self._lock:
            fault = self.faults.get(step) or self.faults.get("*")
            if fault is None:
                return None
            if fault.kind == "badnonce" and req.method != "POST":
                return None  # only signed requests carry a nonce
            if fault.count is not None:
                if fault.count <= 0:
                    return None
                fault.count -= 1
            elif self._rng.random() * 100 >= fault.percent:
                return None
            self.injections[(step, fault.kind)] += 1
            return fault

    def _emulate(self, req: _Request):
        """Answers pebble cannot give (ARI renewalInfo), as (status, reason, headers, body)."""
        if not req.path.startswith("/renewal-info/"):
            return None
        with self._lock:
            window, retry, why = self.ari_window, self.ari_retry_after, self.ari_explanation
            self.ari_requests.append(req.path[len("/renewal-info/"):].lstrip("/"))
        if window is None:
            return 404, "Not Found", [("Content-Type", "text/plain")], b"no ARI\n"
        doc = {"suggestedWindow": {"start": window[0], "end": window[1]}}
        if why:
            doc["explanationURL"] = why
        return 200, "OK", [("Content-Type", "application/json"),
                           ("Retry-After", str(retry))], json.dumps(doc).encode()

    def _augment(self, step: str, req: _Request, body: bytes) -> bytes:
        """Record newOrder payloads; add renewalInfo / meta.profiles to the directory."""
        if step == "order" and req.method == "POST":
            try:
                jws = json.loads(req.body)
                p = jws["payload"]
                payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
                with self._lock:
                    self.new_orders.append(payload)
            except (ValueError, KeyError, TypeError):
                pass
        if step == "directory" and req.method == "GET":
            with self._lock:
                self.directory_fetches += 1
                ari, profiles = self.ari_window is not None, self.profiles
            if ari or profiles:
                try:
                    d = json.loads(body)
                except ValueError:
                    return body
                if ari:
                    d["renewalInfo"] = f"{self.base}/renewal-info/"
                if profiles:
                    d.setdefault("meta", {})["profiles"] = profiles
                body = json.dumps(d).encode()
        return body

    def _upstream(self):
        return http.client.HTTPSConnection(self.up_host, self.up_port, context=self._up_ctx,
                                           timeout=60)

    def _forward(self, up, req: _Request):
        headers = {k: v for k, v in req.headers if k.lower() not in _HOP_BY_HOP}
        for attempt in (0, 1):
            if up is None:
                up = self._upstream()
            try:
                up.request(req.method, req.path, body=req.body or None, headers=headers)
                resp = up.getresponse()
                body = resp.read()
                break
            except (OSError, http.client.HTTPException):
                up.close()
                up = None
                if attempt:
                    return None, 502, "Bad Gateway", [("Content-Type", "text/plain")], \
                        b"fault proxy: upstream failed\n"
        out = []
        for k, v in resp.getheaders():
            if k.lower() in _HOP_BY_HOP:
                if k.lower() == "content-length" and req.method == "HEAD":
                    out.append((k, v))
                continue
            if k.lower() in ("location", "link"):
                v = rewrite(v.encode("latin-1"), self.upstream_bases, self.base).decode("latin-1")
            out.append((k, v))
        body = rewrite(body, self.upstream_bases, self.base)
        return up, resp.status, resp.reason, out, body

    @staticmethod
    def _head(status, reason, headers, body_len, with_length=True) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if with_length:
            lines.append(f"Content-Length: {body_len}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _respond(self, conn, req, status, reason, headers, body):
        if req.method == "HEAD":
            has_len = any(k.lower() == "content-length" for k, _ in headers)
            conn.sendall(self._head(status, reason, headers, 0, with_length=not has_len))
        else:
            conn.sendall(self._head(status, reason, headers, len(body)) + body)

    def _fresh_nonce(self) -> str:
        c = self._upstream()
        try:
            c.request("HEAD", "/nonce-plz")
            r = c.getresponse()
            r.read()
            return r.getheader("Replay-Nonce") or ""
        finally:
            c.close()

    def _inject(self, conn, up, req: _Request, f: Fault):
        """Answer req with fault f; returns (upstream connection, keep the client connection)."""
        kind = f.kind
        if kind == "drop":
            return up, False
        if kind == "stall":
            self._stop.wait(f.stall)
            return up, False
        if kind == "500":
            body = _problem("serverInternal", f.detail or "fault proxy: injected 500", 500)
            self._respond(conn, req, 500, "Internal Server Error",
                          [("Content-Type", "application/problem+json")], body)
            return up, True
        if kind == "503":
            self._respond(conn, req, 503, "Service Unavailable",
                          [("Content-Type", "text/plain"), ("Retry-After", str(f.retry_after))],
                          b"Service Unavailable (fault proxy)\n")
            return up, True
        if kind == "429":
            body = _problem("rateLimited", "fault proxy: injected rate limit", 429)
            self._respond(conn, req, 429, "Too Many Requests",
                          [("Content-Type", "application/problem+json"),
                           ("Retry-After", str(f.retry_after))], body)
            return up, True
        if kind == "badnonce":
            body = _problem("badNonce", "fault proxy: JWS has an invalid anti-replay nonce", 400)
            self._respond(conn, req, 400, "Bad Request",
                          [("Content-Type", "application/problem+json"),
                           ("Replay-Nonce", self._fresh_nonce()),
                           ("Cache-Control", "no-store")], body)
            return up, True
        # truncate and garble need pebble's real answer
        up, status, reason, headers, body = self._forward(up, req)
        if kind == "garble":
            if body:
                body = b"\x00garbled\xff" + body[::-1]
            else:
                headers = [(k, "!!garbled-nonce!!" if k.lower() == "replay-nonce" else v)
                           for k, v in headers]
            self._respond(conn, req, status, reason, headers, body)
            return up, True
        # truncate
        if body and req.method != "HEAD":
            conn.sendall(self._head(status, reason, headers, len(body)) + body[:len(body) // 2])
        else:
            head = self._head(status, reason, headers, 0)
            conn.sendall(head[:len(head) // 2])
        return up, False


def wait_until(cond, timeout: float, what: str = "condition"):
    """lib.wait.wait_for, polled every 0.05 s."""
    return wait_for(cond, timeout, what, interval=0.05)


__all__ = ["FaultProxy", "Fault", "STEPS", "KINDS", "step_of", "rewrite", "wait_until"]
