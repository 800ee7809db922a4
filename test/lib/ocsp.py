"""A real OCSP responder for end-to-end tests (loopback only, port chosen at run time).

    resp = OcspResponder(workdir, nmin=1)          # picks 127.0.0.1:<free port>
    peb = Pebble(workdir, http, tls, config=resp.pebble_config()).start()
    resp.start(pebble=peb)                         # fetches /intermediates/0 + /intermediate-keys/0
    resp.add_cert(pem_or_path)                     # "good"
    resp.revoke(pem_or_path)                       # "revoked"
    resp.set_mode("garbage") ... resp.request_count() ... resp.stop()

or as a context manager (`with OcspResponder(...).start(pebble=peb) as resp:`), which stops it
whatever happens in the test.

How it answers. pebble 2.4.0 has no OCSP responder; it only writes `ocspResponderURL` into the
AIA extension of the certificates it issues (and only then: without it the certificates have no
OCSP URL at all). The OCSP answers are made by OpenSSL's own responder code: for each request the
HTTP front end (a small Python ThreadingHTTPServer on 127.0.0.1) runs

    openssl ocsp -index index.txt -rsigner inter.pem -rkey inter.key -CA inter.pem \
                 -reqin req.der -respout resp.der -nmin N      (or -ndays N)

and returns resp.der. `openssl ocsp -port P` (the long-running responder) is not used: OpenSSL
3.0's `-port` takes only a number and binds `*:P` (all interfaces, seen with `ss -ltn`), and it
reads index.txt once. One process per request (about 10 ms) reads the current index every time,
so add_cert()/revoke() take effect for the very next request and nothing outlives the test:
there is no long-lived process, only the server thread that stop() ends (each openssl run has a
timeout).

index.txt is in `openssl ca` format: `V<TAB>expiry<TAB><TAB>SERIALHEX<TAB>unknown<TAB>subject`,
revoked `R<TAB>expiry<TAB>revtime[,reason]<TAB>SERIALHEX<TAB>unknown<TAB>subject` (times
YYMMDDHHMMSSZ; the serial as OpenSSL's BN_bn2hex prints it: upper case, whole bytes). A serial
not in the index is answered `unknown`.

Modes (set_mode(), while running):

| mode | what the client gets |
|---|---|
| `pass` | the real response from openssl ocsp (default) |
| `garbage` | 200 `application/ocsp-response` with bytes that are not DER |
| `oversized` | 200 `application/ocsp-response`, 2 MiB: a DER SEQUENCE header with a 3-byte length, then filler (`oversized_size=`) |
| `wrong-nonce` | a real, correctly signed response for the same CertID but to a request with another nonce (needs python `cryptography`) |
| `replay` | the last real response sent before (its nonce is the old request's) |
| `500` | 500 Internal Server Error, text body |
| `down` | nothing listens: connection refused |

Every request that reached the front end is recorded in `requests` (method, path, headers,
body DER, mode, HTTP status sent); request_count() counts them (per mode with `mode=`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import http.server
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

from lib.ports import free_port

MODES = ("pass", "garbage", "oversized", "wrong-nonce", "replay", "500", "down")


def _read_pem(cert) -> str:
    """cert: PEM text/bytes, or a path to a PEM file. Returns the first certificate's PEM."""
    if isinstance(cert, bytes):
        cert = cert.decode()
    if isinstance(cert, os.PathLike) or (isinstance(cert, str) and "-----BEGIN" not in cert):
        with open(cert) as f:
            cert = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", cert, re.S)
    if not m:
        raise ValueError("no certificate in PEM")
    return m.group(0) + "\n"


def _x509(pem: str, *args: str) -> str:
    return subprocess.run(["openssl", "x509", "-noout", *args], input=pem.encode(),
                          capture_output=True, check=True, timeout=30).stdout.decode()


def cert_serial_hex(cert) -> str:
    """Serial as openssl's index wants it (upper-case hex, whole bytes)."""
    out = _x509(_read_pem(cert), "-serial").strip()  # serial=1234ABCD
    s = out.split("=", 1)[1].upper()
    return s if len(s) % 2 == 0 else "0" + s


def cert_sha1_hex(cert) -> str:
    """Lower-case hex SHA-1 of the certificate's DER (mod_md's id of a stapled cert)."""
    out = _x509(_read_pem(cert), "-fingerprint", "-sha1").strip()
    return out.split("=", 1)[1].replace(":", "").lower()


def cert_ocsp_url(cert) -> str:
    """The OCSP responder URL in the certificate's AIA ('' if none)."""
    return _x509(_read_pem(cert), "-ocsp_uri").strip()


def cert_subject(cert) -> str:
    return _x509(_read_pem(cert), "-subject", "-nameopt", "compat").strip().split("=", 1)[1]


def cert_not_after(cert) -> _dt.datetime:
    s = _x509(_read_pem(cert), "-enddate").strip().split("=", 1)[1]
    return _dt.datetime.strptime(s.replace("  ", " "), "%b %d %H:%M:%S %Y GMT")


def _asn1_time(t: _dt.datetime) -> str:
    return t.strftime("%y%m%d%H%M%SZ")


def ocsp_query(issuer, cert, url: str, timeout: int = 10, nonce: bool = True,
               workdir: Optional[str] = None, cafile: Optional[str] = None) -> tuple[str, str]:
    """Ask `url` about `cert` with the openssl client. Returns (status, full output); status is
    good/revoked/unknown, or 'error' when there was no usable answer. Without `cafile` the
    response is not verified (-noverify: this is about what the responder says; note that the
    client then does not check the nonce either); with it, signature and nonce are checked
    ("Response verify OK" / "Nonce Verify error" in the output)."""
    d = tempfile.mkdtemp(prefix="md-ocsp-q-", dir=workdir)
    ip, cp = os.path.join(d, "issuer.pem"), os.path.join(d, "cert.pem")
    with open(ip, "w") as f:
        f.write(_read_pem(issuer))
    with open(cp, "w") as f:
        f.write(_read_pem(cert))
    cmd = ["openssl", "ocsp", "-issuer", ip, "-cert", cp, "-url", url,
           "-timeout", str(timeout), "-resp_text"]
    cmd += ["-CAfile", cafile] if cafile else ["-noverify"]
    if not nonce:
        cmd.append("-no_nonce")
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        out = f"timeout: {e}"
    finally:
        for n in ("issuer.pem", "cert.pem"):
            try:
                os.unlink(os.path.join(d, n))
            except OSError:
                pass
        os.rmdir(d)
    m = re.search(rf"{re.escape(cp)}: (good|revoked|unknown)", out)
    return (m.group(1) if m else "error"), out


def request_text(der: bytes) -> str:
    """`openssl ocsp -reqin F -req_text` of a captured request."""
    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(der)
        f.flush()
        p = subprocess.run(["openssl", "ocsp", "-reqin", f.name, "-req_text"],
                           capture_output=True, timeout=30)
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def response_text(der: bytes) -> str:
    """`openssl ocsp -respin F -resp_text -noverify` of a response."""
    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(der)
        f.flush()
        p = subprocess.run(["openssl", "ocsp", "-respin", f.name, "-resp_text", "-noverify"],
                           capture_output=True, timeout=30)
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


class _Headers(dict):
    """Request headers as received; get() ignores the case of the name (HTTP/1.1 clients
    differ: curl sends `Content-Type`, hyper `content-type`)."""

    def get(self, name, default=None):
        for k, v in self.items():
            if k.lower() == name.lower():
                return v
        return default


@dataclass
class Recorded:
    method: str
    path: str
    headers: "_Headers"
    body: bytes  # the OCSP request DER (POST body, or decoded from a GET path)
    mode: str
    status: int = 0  # HTTP status sent
    when: float = field(default_factory=time.time)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "md-test-ocsp"

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.owner._handle(self, "POST", body)

    def do_GET(self):
        raw = urllib.parse.unquote(self.path.lstrip("/"))
        try:
            body = base64.b64decode(raw + "=" * (-len(raw) % 4)) if raw else b""
        except ValueError:
            body = b""
        self.server.owner._handle(self, "GET", body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up (e.g. on an oversized answer) is not an error here


class OcspResponder:
    def __init__(self, workdir: str, port: Optional[int] = None, nmin: Optional[int] = 1,
                 ndays: Optional[int] = None, oversized_size: int = 2 * 1024 * 1024):
        self.dir = os.path.join(workdir, "ocsp-responder")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.nmin, self.ndays = nmin, ndays
        self.oversized_size = oversized_size
        self.mode = "pass"
        self.requests: list[Recorded] = []
        self.last_response: Optional[bytes] = None
        self._entries: dict[str, str] = {}  # serial hex -> index line
        self._lock = threading.Lock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._started = False
        self._seq = 0
        self.index_path = os.path.join(self.dir, "index.txt")
        self.issuer_path = os.path.join(self.dir, "inter.pem")
        self.key_path = os.path.join(self.dir, "inter.key")

    # ---- setup -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def pebble_config(self) -> dict:
        """The `config=` for lib.pebble.Pebble: certificates get this responder's URL."""
        return {"ocspResponderURL": self.url}

    def start(self, pebble=None, issuer_pem: Optional[str] = None,
              issuer_key: Optional[str] = None) -> "OcspResponder":
        """Sign as pebble's intermediate (fetched from its management API) or as the given
        issuer (PEM texts)."""
        if pebble is not None:
            issuer_pem = pebble._mgmt("/intermediates/0")
            issuer_key = pebble._mgmt("/intermediate-keys/0")
        if not issuer_pem or not issuer_key:
            raise ValueError("need pebble= or issuer_pem= and issuer_key=")
        with open(self.issuer_path, "w") as f:
            f.write(_read_pem(issuer_pem))
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(issuer_key)
        self._write_index()
        self._started = True
        if self.mode != "down":
            self._listen()
        return self

    def issuer_pem(self) -> str:
        with open(self.issuer_path) as f:
            return f.read()

    def _listen(self):
        if self._server is not None:
            return
        srv = _Server(("127.0.0.1", self.port), _Handler)
        srv.owner = self
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name=f"ocsp-responder-{self.port}")
        self._thread.start()

    def _close(self):
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self):
        """Stop listening (the port refuses connections afterwards). Safe to call twice."""
        self._started = False
        self._close()

    def restart(self):
        """Stop and listen again on the same port (counts and index are kept)."""
        self._close()
        self._started = True
        if self.mode != "down":
            self._listen()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- index -----------------------------------------------------------------------

    def _write_index(self):
        tmp = self.index_path + ".tmp"
        with open(tmp, "w") as f:
            for line in self._entries.values():
                f.write(line + "\n")
        os.replace(tmp, self.index_path)
        # openssl ocsp insists on an index.txt.attr next to it only for `ca`; not needed here

    def add_cert(self, cert) -> str:
        """Mark the certificate valid ("good"). Returns its serial (hex)."""
        pem = _read_pem(cert)
        serial = cert_serial_hex(pem)
        line = "\t".join(["V", _asn1_time(cert_not_after(pem)), "", serial, "unknown",
                          cert_subject(pem)])
        with self._lock:
            self._entries[serial] = line
            self._write_index()
        return serial

    def revoke(self, cert, when: Optional[_dt.datetime] = None,
               reason: Optional[str] = None) -> str:
        """Mark the certificate revoked (added if missing). `reason` e.g. keyCompromise."""
        pem = _read_pem(cert)
        serial = cert_serial_hex(pem)
        when = when or _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
        rev = _asn1_time(when) + (f",{reason}" if reason else "")
        line = "\t".join(["R", _asn1_time(cert_not_after(pem)), rev, serial, "unknown",
                          cert_subject(pem)])
        with self._lock:
            self._entries[serial] = line
            self._write_index()
        return serial

    def forget(self, cert) -> None:
        """Remove the certificate from the index ("unknown" afterwards)."""
        serial = cert_serial_hex(_read_pem(cert))
        with self._lock:
            self._entries.pop(serial, None)
            self._write_index()

    def index_text(self) -> str:
        with open(self.index_path) as f:
            return f.read()

    # ---- modes and counts ------------------------------------------------------------

    def set_mode(self, mode: str):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode = mode
        if not self._started:
            return
        if mode == "down":
            self._close()
        else:
            self._listen()

    def request_count(self, mode: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if mode is None or r.mode == mode)

    def wait_requests(self, n: int, timeout: float = 30) -> int:
        """Wait until at least n requests arrived; returns the count (may be < n on timeout)."""
        deadline = time.monotonic() + timeout
        while self.request_count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.request_count()

    # ---- answering -------------------------------------------------------------------

    def _openssl_response(self, req_der: bytes) -> Optional[bytes]:
        with self._lock:
            self._seq += 1
            seq = self._seq
        rq = os.path.join(self.dir, f"req-{seq}.der")
        rs = os.path.join(self.dir, f"resp-{seq}.der")
        with open(rq, "wb") as f:
            f.write(req_der)
        cmd = ["openssl", "ocsp", "-index", self.index_path, "-rsigner", self.issuer_path,
               "-rkey", self.key_path, "-CA", self.issuer_path, "-reqin", rq, "-respout", rs]
        if self.ndays is not None:
            cmd += ["-ndays", str(self.ndays)]
        elif self.nmin is not None:
            cmd += ["-nmin", str(self.nmin)]
        try:
            with self._lock:  # one openssl at a time: it reads the index we write
                subprocess.run(cmd, capture_output=True, timeout=20)
            with open(rs, "rb") as f:
                return f.read()
        except (OSError, subprocess.TimeoutExpired):
            return None
        finally:
            for p in (rq, rs):
                try:
                    os.unlink(p)
                except OSError:
                    pass

    def _other_nonce_request(self, req_der: bytes) -> bytes:
        """The same CertID(s) with a fresh random nonce."""
        from cryptography import x509
        from cryptography.x509 import ocsp
        from cryptography.hazmat.primitives import serialization
        req = ocsp.load_der_ocsp_request(req_der)
        b = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            req.issuer_name_hash, req.issuer_key_hash, req.serial_number, req.hash_algorithm)
        b = b.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        return b.build().public_bytes(serialization.Encoding.DER)

    def _handle(self, h: _Handler, method: str, body: bytes):
        mode = self.mode
        rec = Recorded(method, h.path, _Headers(h.headers.items()), body, mode)
        with self._lock:
            self.requests.append(rec)
        ctype = "application/ocsp-response"
        status, payload = 200, b""
        if mode == "500":
            status, ctype, payload = 500, "text/plain", b"internal error (test)\n"
        elif mode == "garbage":
            payload = b"this is not an OCSP response \x00\xff\x01 garbage\n" * 8
        elif mode == "oversized":
            n = self.oversized_size  # SEQUENCE, 3-byte length, then filler up to n bytes
            filler = bytes(range(256)) * ((n - 5) // 256 + 1)
            payload = b"\x30\x83" + (n - 5).to_bytes(3, "big") + filler[:n - 5]
        elif mode == "replay":
            payload = self.last_response or b""
            if not payload:
                status, ctype, payload = 500, "text/plain", b"nothing to replay\n"
        elif mode == "wrong-nonce":
            resp = self._openssl_response(self._other_nonce_request(body))
            if resp is None:
                status, ctype, payload = 500, "text/plain", b"openssl ocsp failed\n"
            else:
                payload = resp
        else:  # pass
            resp = self._openssl_response(body)
            if resp is None:
                status, ctype, payload = 500, "text/plain", b"openssl ocsp failed\n"
            else:
                payload = resp
                self.last_response = resp
        rec.status = status
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except OSError:
            pass
