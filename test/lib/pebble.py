"""Real pebble (ACME test CA) and pebble-challtestsrv (DNS) on loopback for end-to-end tests.

Ports are chosen at run time; everything started is stopped by PID in stop(). pebble's TLS
listener gets a throw-away CA made with the openssl CLI; give `ca_file` to the module under test
(MDCACertificateFile). Debian's pebble 2.4.0: RFC 8555, http-01, tls-alpn-01, dns-01, EAB.
"""
import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.request

from lib.ports import free_port  # noqa: F401 (lib.pebble.free_port: used by tests and lib)
from lib.ports import free_ports


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_tls_ca(d):
    """A CA and a server cert for 127.0.0.1/localhost in directory d; returns (ca, cert, key)."""
    os.makedirs(d, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "30", "-subj", "/CN=mod_md-rs test pebble TLS CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "cert.pem", "-days", "30", "-extfile", "ext.cnf", cwd=d)
    for f in ("ca.pem", "cert.pem"):
        os.chmod(os.path.join(d, f), 0o644)
    return [os.path.join(d, f) for f in ("ca.pem", "cert.pem", "key.pem")]


class Pebble:
    """pebble + challtestsrv. `http_port`/`tls_port` are where pebble validates challenges
    (the httpd under test listens there)."""

    def __init__(self, workdir, http_port, tls_port, nonce_reject=0, config=None, env=None):
        self.dir = os.path.join(workdir, "pebble")
        os.makedirs(self.dir, exist_ok=True)
        self.http_port, self.tls_port = http_port, tls_port
        # Four distinct ports, none of them httpd's (lib.ports).
        self.port, self.mgmt_port, self.dns_port, self.chall_mgmt_port = free_ports(
            4, avoid={http_port, tls_port})
        self.nonce_reject = nonce_reject
        self.extra_config = config or {}
        self.extra_env = env or {}
        self.procs = []

    @property
    def directory_url(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def prepare(self):
        """Make pebble's TLS CA (so a client can be configured before pebble runs)."""
        if not getattr(self, "ca_file", None):
            self.ca_file, self._cert, self._key = make_tls_ca(os.path.join(self.dir, "tls"))
        return self

    def start(self, timeout=20):
        self.prepare()
        cert, key = self._cert, self._key
        conf = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": cert,
            "privateKey": key,
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        conf.update(self.extra_config)
        cfile = os.path.join(self.dir, "pebble.json")
        with open(cfile, "w") as f:
            json.dump({"pebble": conf}, f, indent=2)
        # challtestsrv binds many ports on all interfaces unless each is set or disabled.
        chall = subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.chall_mgmt_port}"],
            stdout=open(os.path.join(self.dir, "challtestsrv.log"), "w"),
            stderr=subprocess.STDOUT)
        self.procs.append(chall)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1",
                   PEBBLE_WFE_NONCEREJECT=str(self.nonce_reject), **self.extra_env)
        peb = subprocess.Popen(
            ["pebble", "-config", cfile, "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=open(os.path.join(self.dir, "pebble.log"), "w"),
            stderr=subprocess.STDOUT, env=env)
        self.procs.append(peb)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if peb.poll() is not None:
                # the caller gets no Pebble to stop: stop challtestsrv here
                log = self.log()
                self.stop()
                raise RuntimeError(f"pebble exited: {log}")
            try:
                urllib.request.urlopen(self.directory_url, context=ctx, timeout=2).read()
                return self
            except OSError:
                time.sleep(0.1)
        log = self.log()
        self.stop()
        raise RuntimeError(f"pebble did not come up: {log}")

    def log(self):
        return self.log_all()[-3000:]

    def log_all(self):
        with open(os.path.join(self.dir, "pebble.log")) as f:
            return f.read()

    # pebble 2.4.0 logs one `Added order "<id>" to the db` per order it created (a refused
    # POST /order-plz, e.g. a badNonce, logs none) and one `Issued certificate serial <hex> for
    # order <id>` per certificate it issued.
    def orders(self):
        """Ids of the orders pebble created so far, oldest first."""
        return re.findall(r'Added order "([^"]+)" to the db', self.log_all())

    def issued_serials(self):
        """Serial numbers (int) of the certificates pebble issued so far, oldest first."""
        return [int(s, 16) for s in
                re.findall(r"Issued certificate serial ([0-9a-f]+) for order ", self.log_all())]

    def _mgmt(self, path):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        url = f"https://127.0.0.1:{self.mgmt_port}{path}"
        return urllib.request.urlopen(url, context=ctx, timeout=5).read().decode()

    def root_pem(self):
        """pebble's issuing root (to verify issued chains)."""
        return self._mgmt("/roots/0")

    def _chall_mgmt(self, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.chall_mgmt_port}{path}",
                                     data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def set_txt(self, host, value):
        """Set a TXT record in challtestsrv (dns-01)."""
        self._chall_mgmt("/set-txt", {"host": host, "value": value})

    def add_a(self, host, ip):
        """Resolve `host` to `ip` (instead of challtestsrv's default 127.0.0.1): pebble's
        http-01 and tls-alpn-01 validations for `host` then connect to ip:httpPort/tlsPort."""
        self._chall_mgmt("/add-a", {"host": host, "addresses": [ip]})

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
