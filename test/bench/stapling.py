#!/usr/bin/env python3
"""Benchmark: OCSP stapling, Debian's C mod_md and our module side by side.

    python3 test/bench/stapling.py [--modules c,rs] [--certs 100] [--rounds 6] [--seconds 2]
                                   [--threads 4] [--control] [--perf] [--json FILE]
                                   [--skip handshakes|watchdog]

Run as root (User www-data, private network namespace), with the module under test in
MD_RS_MODULE (default <repo>/target/release/libmod_md.so). Results: README-stapling.md.

Setup (all made at run time in a temporary directory, removed at the end):
  * a private CA with the openssl CLI: root -> issuing intermediate (EC P-256); leaf
    certificates (one shared EC P-256 key) whose AIA names the OCSP responder
    http://127.0.0.1:<P>/ (P chosen at run time);
  * the responder: `openssl ocsp -index index.txt -CA inter.pem -rsigner inter.pem -rkey
    inter.key -port P -multi 2 -nmin 60 -ignore_err -resp_text`, every leaf "good" in the
    index; stopped by PID at the end (its children too: OpenSSL 3.0's -multi parent does not
    act on SIGTERM until a child exits). Requests it answered are counted from its
    -resp_text output;
  * httpd via test/lib/httpd.py (User www-data when root), SSL vhosts with SSLCertificateFile =
    leaf + intermediate, stapled by the md module: `MDStapling on` + `MDStapleOthers on` at
    server level (plain SSLCertificateFile vhosts are "others" for mod_md). "off" is the same
    config with `MDStapling off`.

OpenSSL 3.0's `ocsp -port` takes a number only and binds the wildcard address, so when run as
root the whole benchmark runs in a private network namespace (unshare(CLONE_NEWNET), `lo` up):
the responder, httpd and the client see only that namespace's loopback, nothing is reachable
from outside. `--no-netns` skips that (the responder then listens on *:P while it runs).

1. Handshakes per second, stapling on vs off (per module). Two servers A and B (2 children x 8
   threads each), one with `MDStapling on` (checked with `openssl s_client -status`: "Cert
   Status: good"), one with `MDStapling off`; they swap the roles every round (graceful restart
   with the other config), so that a difference between the two instances cancels out. The
   client is the Rust example crates/md-core/examples/handshake_bench.rs (python's ssl cannot
   send status_request; without it mod_ssl never calls the stapling hook): T threads for D
   seconds, a new connection and a full handshake per iteration, status_request always sent,
   no resumption, no verification. Per round: one run against "on" and one against "off"
   (their order alternates every second round) -> the on/off ratio of the round; then a
   "paired" run, both servers loaded at the same time by one client each (both see the same
   load of the other tenant of the machine). Reported: median on, median off, the median of the
   per-round ratios, httpd's CPU time per handshake (schedstat of all its threads) and the
   client's. --control adds a third server that is always off, measured in every round like
   the others: its ratio to "off" (an A/A comparison) is the noise floor. --perf adds one run
   per role under `perf record` on httpd's children: the share of CPU samples per shared
   object and per symbol inside the md module (the direct cost of the stapling hook).
2. The OCSP watchdog with N stapled certificates: N leaf certificates, N name-based SSL vhosts
   on one port, each with its own certificate. Measured: httpd startup (spawn -> AH00489),
   time until all N `ocsp/other/ocsp-<sha1>.json` exist in the store (from spawn and from
   AH00489), requests the responder answered, parent and child RSS; the same config with
   `MDStapling off` for the startup/RSS baseline. Children's RSS: now and peak (VmHWM).

The client binary: --client, else $HANDSHAKE_BENCH, else
$CARGO_TARGET_DIR/release/examples/handshake_bench, else <repo>/target/release/examples/
handshake_bench. Build it with
`cargo build --release -p md-core --example handshake_bench`.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.httpd import REPO_DIR, HttpdServer, children_of, free_ports, module_by_name  # noqa: E402

CLONE_NEWNET = 0x40000000
SERIAL_BASE = 0x5EED0000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def private_netns() -> None:
    """Move this process (single-threaded at this point) into a new network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def run(*cmd: str, cwd: Optional[Path] = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd, timeout=120)


# ---- PKI --------------------------------------------------------------------------------------

class Pki:
    """root -> intermediate -> leaves d<i>.bench.test, made with the openssl CLI."""

    def __init__(self, d: Path, ocsp_url: str):
        self.d = d
        self.ocsp_url = ocsp_url
        self.leaves: list[str] = []  # host names, index i -> d<i>.bench.test
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run("openssl", "req", "-x509", *ec, "-keyout", "root.key", "-out", "root.pem",
            "-days", "30", "-subj", "/CN=Bench Root CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        run("openssl", "req", "-new", *ec, "-keyout", "inter.key", "-out", "inter.csr",
            "-subj", "/CN=Bench Issuing CA", cwd=d)
        (d / "inter.ext").write_text(
            "basicConstraints=critical,CA:TRUE,pathlen:0\n"
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        run("openssl", "x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey",
            "root.key", "-set_serial", "0x100", "-days", "30", "-extfile", "inter.ext",
            "-out", "inter.pem", cwd=d)
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "leaf.key", cwd=d)
        (d / "leaves").mkdir()
        for p in d.iterdir():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(d / "leaf.key", 0o600)
        self.index_path = d / "index.txt"
        self.index_path.write_text("")

    @property
    def inter(self) -> Path:
        return self.d / "inter.pem"

    @property
    def key(self) -> Path:
        return self.d / "leaf.key"

    def chain(self, i: int) -> Path:
        return self.d / "leaves" / f"d{i}.pem"

    def host(self, i: int) -> str:
        return f"d{i}.bench.test"

    def _make_leaf(self, i: int) -> str:
        host, leaf = self.host(i), self.d / "leaves" / f"d{i}.leaf"
        run("openssl", "req", "-new", "-x509", "-key", str(self.key), "-subj", f"/CN={host}",
            "-CA", str(self.inter), "-CAkey", str(self.d / "inter.key"),
            "-set_serial", hex(SERIAL_BASE + i), "-days", "7",
            "-addext", f"subjectAltName=DNS:{host}",
            "-addext", f"authorityInfoAccess=OCSP;URI:{self.ocsp_url}",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature",
            "-addext", "extendedKeyUsage=serverAuth", "-out", str(leaf))
        self.chain(i).write_bytes(leaf.read_bytes() + self.inter.read_bytes())
        leaf.unlink()
        expiry = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)).strftime(
            "%y%m%d%H%M%SZ")
        return f"V\t{expiry}\t\t{SERIAL_BASE + i:08X}\tunknown\t/CN={host}\n"

    def make_leaves(self, n: int) -> None:
        start = len(self.leaves)
        with ThreadPoolExecutor(max_workers=2) as ex:
            lines = list(ex.map(self._make_leaf, range(start, n)))
        self.leaves += [self.host(i) for i in range(start, n)]
        with self.index_path.open("a") as f:
            f.writelines(lines)


# ---- OCSP responder ---------------------------------------------------------------------------

class Responder:
    def __init__(self, pki: Pki, port: int):
        self.pki, self.port = pki, port
        self.log_path = pki.d / "responder.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self._fh = open(self.log_path, "wb")
        d = self.pki.d
        self.proc = subprocess.Popen(
            # stdbuf -oL: one write per line, so the -resp_text count is never behind
            ["stdbuf", "-oL", "openssl", "ocsp", "-index", str(self.pki.index_path),
             "-CA", str(d / "inter.pem"), "-rsigner", str(d / "inter.pem"),
             "-rkey", str(d / "inter.key"),
             "-port", str(self.port), "-multi", "2", "-nmin", "60", "-ignore_err",
             "-resp_text"],
            stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # (no start_new_session: with -multi, openssl makes itself a process group leader with
        # setpgid(), which fails in a session leader, and it then exits at once)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            r = subprocess.run(["openssl", "ocsp", "-issuer", str(d / "inter.pem"), "-cert",
                                str(self.pki.chain(0)), "-url", self.pki.ocsp_url,
                                "-CAfile", str(d / "root.pem")],
                               capture_output=True, text=True, timeout=10)
            if ": good" in r.stdout:
                return
            time.sleep(0.2)
        raise RuntimeError(f"OCSP responder not answering: {r.stdout} {r.stderr}")

    def answered(self) -> int:
        return self.log_path.read_text(errors="replace").count("OCSP Response Data:")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        kids = children_of(proc.pid)
        for pid in [proc.pid, *kids]:  # the parent notes SIGTERM, a child's exit wakes it
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group it leads: leftover children
        except (ProcessLookupError, PermissionError):
            pass
        self._fh.close()


# ---- helpers ----------------------------------------------------------------------------------

def stapling_conf(on: bool) -> list[str]:
    return [f"MDStapling {'on' if on else 'off'}", "MDStapleOthers on",
            "MDCertificateAgreement accepted", "MDContactEmail admin@bench.test",
            "MDPortMap http:@HTTP_PORT@ https:@HTTPS_PORT@"]


MPM_FIXED = ["StartServers 2", "MinSpareThreads 1", "MaxSpareThreads 16"]


def vhost(pki: Pki, i: int) -> list[str]:
    return ["<VirtualHost 127.0.0.1:@HTTPS_PORT@>", f"    ServerName {pki.host(i)}",
            "    SSLEngine on", f"    SSLCertificateFile {pki.chain(i)}",
            f"    SSLCertificateKeyFile {pki.key}", "</VirtualHost>"]


def s_client_status(port: int, sni: str) -> str:
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        sni, "-status"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=20)
    out = r.stdout
    if "Cert Status: good" in out:
        return "good"
    if "OCSP response: no response sent" in out:
        return "none"
    m = re.search(r"Cert Status: (\w+)", out)
    return m.group(1) if m else "?"


def wait_staple(port: int, sni: str, timeout: float) -> tuple[str, float]:
    t0 = time.monotonic()
    st = "?"
    while time.monotonic() - t0 < timeout:
        st = s_client_status(port, sni)
        if st == "good":
            break
        time.sleep(0.5)
    return st, time.monotonic() - t0


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM: the peak) of a process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def crashes(srv: HttpdServer) -> list[str]:
    return [ln for ln in srv.error_log().splitlines()
            if "exit signal" in ln or "AH00052" in ln or "panic" in ln.lower()]


def problems(srv: HttpdServer) -> list[str]:
    return [ln for ln in srv.error_log().splitlines()
            if re.search(r":(emerg|alert|crit|error)\]", ln)]


def find_client(explicit: Optional[str]) -> Path:
    cands = [explicit, os.environ.get("HANDSHAKE_BENCH")]
    if os.environ.get("CARGO_TARGET_DIR"):
        cands.append(f"{os.environ['CARGO_TARGET_DIR']}/release/examples/handshake_bench")
    cands.append(str(REPO_DIR / "target" / "release" / "examples" / "handshake_bench"))
    for c in cands:
        if c and os.path.isfile(c):
            return Path(c)
    sys.exit("handshake_bench not found: cargo build --release -p md-core --example "
             "handshake_bench (or --client PATH)")


def cpu_ns(pid: int) -> int:
    """CPU time (ns, from schedstat) of all threads of httpd's children and of the parent."""
    total = 0
    for p in [pid, *children_of(pid)]:
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for t in tasks:
            try:
                total += int((t / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def client_runs(client: Path, targets: list[tuple[int, Optional[int]]], sni: str,
                threads: int, seconds: float, tls: str) -> list[dict]:
    """Client runs against the servers `targets` ((https port, httpd pid)), all at the same
    time, one client process each. With the httpd pid, also the CPU time httpd and the client
    spent per handshake (server_us, client_us) and, for a single run, the CPU use of the box
    (busy: CPU s of httpd + client / wall s)."""
    procs = []
    s0 = [cpu_ns(pid) if pid else 0 for _, pid in targets]
    t0 = time.perf_counter()
    for port, _ in targets:
        cmd = [str(client), "--port", str(port), "--sni", sni, "--threads", str(threads),
               "--seconds", str(seconds)]
        if tls:
            cmd += ["--tls", tls]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    out = []
    for p, (port, pid), s_before in zip(procs, targets, s0):
        _, status, ru = os.wait4(p.pid, 0)  # the client's own rusage
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = p.stdout.read().decode(), p.stderr.read().decode()
        p.stdout.close()
        p.stderr.close()
        if p.returncode != 0:
            raise RuntimeError(f"handshake_bench failed ({p.returncode}): {stderr[-1000:]}")
        res = json.loads(stdout.strip().splitlines()[-1])
        if pid and res["handshakes"]:
            srv_s = (cpu_ns(pid) - s_before) / 1e9
            cli_s = ru.ru_utime + ru.ru_stime
            res["server_us"] = srv_s * 1e6 / res["handshakes"]
            res["client_us"] = cli_s * 1e6 / res["handshakes"]
            res["busy"] = (srv_s + cli_s) / wall
        out.append(res)
    return out


def client_run(client: Path, port: int, sni: str, threads: int, seconds: float,
               tls: str, server_pid: Optional[int] = None) -> dict:
    return client_runs(client, [(port, server_pid)], sni, threads, seconds, tls)[0]


# ---- 1. handshakes ----------------------------------------------------------------------------

def perf_profile(srv: HttpdServer, client: Path, sni: str, a: argparse.Namespace,
                 module_path: str) -> dict:
    """One client run with `perf record` on httpd's children: the share of CPU samples per
    shared object, and the symbols sampled inside the md module."""
    data = srv.dir / "perf.data"
    kids = ",".join(str(k) for k in children_of(srv.proc.pid))
    rec = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-o", str(data), "-p", kids,
                            "--", "sleep", str(a.seconds * 2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    run_res = client_run(client, srv.https_port, sni, a.threads, a.seconds * 2 - 0.6, a.tls)
    _, err = rec.communicate(timeout=120)
    if rec.returncode != 0:
        return {"error": err.decode(errors="replace")[-500:]}

    def report(*sort: str) -> list[tuple[float, str]]:
        r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                            "--sort", ",".join(sort)], capture_output=True, text=True,
                           timeout=120)
        rows = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
            if m:
                rows.append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
        return rows

    dsos = report("dso")
    mod = os.path.basename(module_path)
    syms = [(pct, sym) for pct, sym in report("dso", "sym") if sym.startswith(mod)]
    return {"handshakes": run_res["handshakes"],
            "dso": [(pct, d) for pct, d in dsos if pct >= 0.5],
            "md_module_pct": sum(pct for pct, d in dsos if d == mod),
            "md_module_syms": syms[:15]}


def handshake_conf(pki: Pki, on: bool) -> str:
    # a fixed set of children (2 x 8 threads), so that their CPU time is comparable
    return "\n".join(stapling_conf(on) + MPM_FIXED + vhost(pki, 0)) + "\n"


def graceful(srv: HttpdServer, body: str, timeout: float = 30) -> None:
    """Rewrite the config and do a graceful restart (SIGUSR1 to the parent); returns when the
    new generation runs (AH00489 again) and only its 2 children are left."""
    before = srv.error_log().count("AH00489")
    srv.render(body)
    os.kill(srv.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while srv.error_log().count("AH00489") <= before:
        if time.monotonic() > deadline or srv.proc.poll() is not None:
            raise RuntimeError(f"graceful restart failed: {srv.error_log()[-2000:]}")
        time.sleep(0.05)
    while len(children_of(srv.proc.pid)) > 2 and time.monotonic() < deadline:
        time.sleep(0.05)


def bench_handshakes(name: str, pki: Pki, a: argparse.Namespace, client: Path) -> dict:
    """Two servers A and B swap the roles on/off every round (graceful restart with the other
    config), so a difference between the two instances cancels out; within a round the
    sequential runs alternate their order every second round; then a paired run (both loaded
    at once). With --control, a third server (always off) is measured in every round too."""
    res: dict = {"module": name}
    inst: dict[str, HttpdServer] = {}
    sni = pki.host(0)
    try:
        for label, on in (("A", True), ("B", False)) + ((("C", False),) if a.control else ()):
            srv = HttpdServer(module_by_name(name), log_level="warn")
            srv.render(handshake_conf(pki, on))
            r = srv.start(timeout=60)
            if not r.started:
                res["error"] = f"httpd ({label}) did not start: {r.text[-2000:]}"
                return res
            inst[label] = srv
        st, waited = wait_staple(inst["A"].https_port, sni, a.staple_timeout)
        res["staple_on"], res["staple_wait_s"] = st, round(waited, 1)
        res["staple_off"] = s_client_status(inst["B"].https_port, sni)
        log(f"[{name}] s_client -status: on={st} (after {waited:.1f} s), "
            f"off={res['staple_off']}")
        if st != "good":
            res["error"] = f"stapling on: no good staple after {waited:.0f} s ({st})"
            res["error_log"] = inst["A"].error_log()[-3000:]
            return res
        for srv in inst.values():  # warm-up
            client_run(client, srv.https_port, sni, a.threads, 1, a.tls)

        seq: dict[str, list[dict]] = {"on": [], "off": [], "ctl": []}
        paired: list[tuple[dict, dict]] = []
        paired_ctl: list[tuple[dict, dict]] = []
        for rnd in range(a.rounds):
            roles = {"on": "A", "off": "B"} if rnd % 2 == 0 else {"on": "B", "off": "A"}
            if rnd > 0:
                for mode in ("on", "off"):
                    graceful(inst[roles[mode]], handshake_conf(pki, mode == "on"))
                # (the first time B is on, its own store has no response yet: it fetches)
                got = (wait_staple(inst[roles["on"]].https_port, sni, a.staple_timeout)[0],
                       s_client_status(inst[roles["off"]].https_port, sni))
                if got != ("good", "none"):
                    raise RuntimeError(f"after the role swap: on/off staple {got}")
                # s_client saw a staple from one child; a child without a response looks at
                # the store at a bounded rate (ours: once a second), so let all catch up
                time.sleep(1.5)
            srv = {m: inst[x] for m, x in roles.items()}
            if a.control:
                srv["ctl"] = inst["C"]
            order = list(srv) if (rnd // 2) % 2 == 0 else list(srv)[::-1]
            for mode in order:
                seq[mode].append(client_run(client, srv[mode].https_port, sni, a.threads,
                                            a.seconds, a.tls, srv[mode].proc.pid))
            pair = ["on", "off"] if rnd % 2 == 0 else ["off", "on"]  # who starts first
            pr = client_runs(client, [(srv[m].https_port, srv[m].proc.pid) for m in pair],
                             sni, a.threads, a.seconds, a.tls)
            paired.append((pr[0], pr[1]) if pair[0] == "on" else (pr[1], pr[0]))
            if a.control:  # A/A: the control server and "off" loaded at once
                pair = ["ctl", "off"] if rnd % 2 == 0 else ["off", "ctl"]
                pr = client_runs(client, [(srv[m].https_port, srv[m].proc.pid) for m in pair],
                                 sni, a.threads, a.seconds, a.tls)
                paired_ctl.append((pr[0], pr[1]) if pair[0] == "ctl" else (pr[1], pr[0]))
            on, off = seq["on"][-1], seq["off"][-1]
            pon, poff = paired[-1]
            aa_last = (paired_ctl[-1][0]["per_second"] / paired_ctl[-1][1]["per_second"]
                       if paired_ctl else 0.0)
            log(f"[{name}] round {rnd + 1}/{a.rounds} (on={roles['on']}): "
                + ", ".join(f"{m} {x[-1]['per_second']:.0f}/s (stapled {x[-1]['stapled']}/"
                            f"{x[-1]['handshakes']}, err {x[-1]['errors']}, httpd "
                            f"{x[-1]['server_us']:.0f} us/hs, client {x[-1]['client_us']:.0f}"
                            f" us/hs, busy {x[-1]['busy']:.2f})"
                            for m, x in seq.items() if x)
                + f"; on/off {on['per_second'] / off['per_second']:.3f}"
                + f" | paired: on {pon['per_second']:.0f}/s (stapled {pon['stapled']}/"
                  f"{pon['handshakes']}), off {poff['per_second']:.0f}/s (stapled "
                  f"{poff['stapled']}/{poff['handshakes']}), on/off "
                  f"{pon['per_second'] / poff['per_second']:.3f}"
                + (" | paired A/A ctl/off " + f"{aa_last:.3f}" if paired_ctl else ""))

        def med(xs) -> float:
            return statistics.median(list(xs))

        def ratio(xs: list[dict], ys: list[dict], key: str) -> list[float]:
            return [x[key] / y[key] for x, y in zip(xs, ys)]

        rr = ratio(seq["on"], seq["off"], "per_second")
        cr = ratio(seq["on"], seq["off"], "server_us")
        prr = [x["per_second"] / y["per_second"] for x, y in paired]
        pcr = [x["server_us"] / y["server_us"] for x, y in paired]
        res.update({
            "on_per_s": med(r["per_second"] for r in seq["on"]),
            "off_per_s": med(r["per_second"] for r in seq["off"]),
            "ratio_median_of_rounds": med(rr), "ratios": [round(x, 3) for x in rr],
            "server_us_on": med(r["server_us"] for r in seq["on"]),
            "server_us_off": med(r["server_us"] for r in seq["off"]),
            "client_us_on": med(r["client_us"] for r in seq["on"]),
            "client_us_off": med(r["client_us"] for r in seq["off"]),
            "server_cost_ratio_median_of_rounds": med(cr),
            "server_cost_ratios": [round(x, 3) for x in cr],
            "busy": {m: [round(r["busy"], 2) for r in x] for m, x in seq.items() if x},
            "runs": {m: [r["per_second"] for r in x] for m, x in seq.items() if x},
            "paired_on_per_s": med(x["per_second"] for x, _ in paired),
            "paired_off_per_s": med(y["per_second"] for _, y in paired),
            "paired_ratio_median": med(prr), "paired_ratios": [round(x, 3) for x in prr],
            "paired_server_cost_ratio_median": med(pcr),
            "on_stapled": sum(r["stapled"] for r in seq["on"]) + sum(x["stapled"]
                                                                     for x, _ in paired),
            "on_handshakes": sum(r["handshakes"] for r in seq["on"])
            + sum(x["handshakes"] for x, _ in paired),
            "off_stapled": sum(r["stapled"] for r in seq["off"]) + sum(y["stapled"]
                                                                       for _, y in paired),
            "off_handshakes": sum(r["handshakes"] for r in seq["off"])
            + sum(y["handshakes"] for _, y in paired),
            "errors": sum(r["errors"] for x in seq.values() for r in x)
            + sum(x["errors"] + y["errors"] for x, y in paired),
        })
        res["ratio_of_medians"] = res["on_per_s"] / res["off_per_s"]
        if a.control:
            aa = ratio(seq["ctl"], seq["off"], "per_second")
            aac = ratio(seq["ctl"], seq["off"], "server_us")
            paa = [x["per_second"] / y["per_second"] for x, y in paired_ctl]
            paac = [x["server_us"] / y["server_us"] for x, y in paired_ctl]
            res.update({"paired_control_ratio_median": med(paa),
                        "paired_control_ratios": [round(x, 3) for x in paa],
                        "paired_control_cost_ratio_median": med(paac)})
            res.update({"control_ratio_median": med(aa),
                        "control_ratios": [round(x, 3) for x in aa],
                        "control_cost_ratio_median": med(aac)})
        if a.perf:
            last = {"on": inst["A"] if a.rounds % 2 == 1 else inst["B"]}
            last["off"] = inst["B"] if last["on"] is inst["A"] else inst["A"]
            res["perf"] = {m: perf_profile(last[m], client, sni, a, module_by_name(name).path)
                           for m in ("on", "off")}
            for m in ("on", "off"):
                pr = res["perf"][m]
                if "error" in pr:
                    log(f"[{name}] perf ({m}): {pr['error']}")
                    continue
                log(f"[{name}] perf ({m}): md module {pr['md_module_pct']:.2f}% of httpd's "
                    f"samples; by DSO: " + ", ".join(f"{d} {p:.1f}%" for p, d in pr["dso"]))
                for p, sym in pr["md_module_syms"]:
                    log(f"[{name}]     {p:6.2f}%  {sym}")
        res["crashes"] = sum((crashes(s) for s in inst.values()), [])
        return res
    finally:
        for s in inst.values():
            s.cleanup()


# ---- 2. watchdog ------------------------------------------------------------------------------

def ocsp_files(srv: HttpdServer) -> int:
    d = srv.dir / "md" / "ocsp" / "other"
    try:
        return sum(1 for f in os.listdir(d) if re.fullmatch(r"ocsp-[0-9a-f]{40}\.json", f))
    except FileNotFoundError:
        return 0


def bench_watchdog(name: str, pki: Pki, resp: Responder, a: argparse.Namespace) -> dict:
    n = a.certs
    res: dict = {"module": name, "certs": n}
    body = []
    for i in range(n):
        body += vhost(pki, i)
    # baseline: stapling off (startup and RSS only)
    srv = HttpdServer(module_by_name(name), log_level="warn")
    try:
        srv.render("\n".join(stapling_conf(False) + body) + "\n")
        t0 = time.perf_counter()
        r = srv.start(timeout=a.watchdog_timeout)
        res["startup_off_s"] = time.perf_counter() - t0
        if r.started:
            time.sleep(1)
            res["rss_parent_off_kib"] = rss_kib(srv.proc.pid)
            res["rss_children_off_kib"] = [rss_kib(k) for k in children_of(srv.proc.pid)]
            log(f"[{name}] {n} vhosts, MDStapling off: started in {res['startup_off_s']:.2f} s,"
                f" parent RSS {res['rss_parent_off_kib'] / 1024:.1f} MiB")
        else:
            res["error_off"] = r.text[-2000:]
    finally:
        srv.cleanup()

    srv = HttpdServer(module_by_name(name), log_level="warn")
    try:
        srv.render("\n".join(stapling_conf(True) + body) + "\n")
        before = resp.answered()
        t0 = time.perf_counter()
        r = srv.start(timeout=a.watchdog_timeout)
        t_up = time.perf_counter()
        res["startup_on_s"] = t_up - t0
        if not r.started:
            res["error"] = f"httpd did not start: {r.text[-3000:]}"
            return res
        res["rss_parent_on_start_kib"] = rss_kib(srv.proc.pid)
        log(f"[{name}] {n} vhosts, MDStapling on: started in {res['startup_on_s']:.2f} s, "
            f"parent RSS {res['rss_parent_on_start_kib'] / 1024:.1f} MiB")
        first = None
        last_count, last_change = 0, time.perf_counter()
        while True:
            c = ocsp_files(srv)
            now = time.perf_counter()
            if c and first is None:
                first = now
            if c != last_count:
                last_count, last_change = c, now
            if c >= n:
                break
            if now - t0 > a.watchdog_timeout or now - last_change > a.stall_timeout:
                break
            if srv.proc.poll() is not None:
                break
            time.sleep(0.05)
        done = time.perf_counter()
        res["files"] = last_count
        res["complete"] = last_count >= n
        res["answered"] = resp.answered() - before
        if first is not None:
            res["first_file_after_start_s"] = first - t0
        if res["complete"]:
            res["all_after_spawn_s"] = done - t0
            res["all_after_up_s"] = done - t_up
            res["first_to_last_s"] = done - first
        else:
            res["gave_up_after_s"] = done - t0
        time.sleep(1)
        res["answered"] = resp.answered() - before  # late answers
        res["rss_parent_on_kib"] = rss_kib(srv.proc.pid) if srv.proc else 0
        kids = children_of(srv.proc.pid) if srv.proc else []
        res["rss_children_kib"] = [rss_kib(k) for k in kids]
        res["hwm_children_kib"] = [rss_kib(k, "VmHWM") for k in kids]
        res["hwm_parent_on_kib"] = rss_kib(srv.proc.pid, "VmHWM") if srv.proc else 0
        mid = n // 2
        res["staple_check"] = {pki.host(i): s_client_status(srv.https_port, pki.host(i))
                               for i in sorted({0, mid, n - 1})}
        res["crashes"] = crashes(srv)
        res["log_problems"] = problems(srv)[:10]
        res["log_problem_count"] = len(problems(srv))
        log(f"[{name}] {n} certs: {last_count} response files"
            + (f", all after {res['all_after_spawn_s']:.2f} s from spawn "
               f"({res['all_after_up_s']:.2f} s after AH00489)" if res["complete"]
               else f", gave up after {res['gave_up_after_s']:.0f} s")
            + f"; responder answered {res['answered']}; staples {res['staple_check']}"
            + f"; crashes {len(res['crashes'])}, error lines {res['log_problem_count']}")
        return res
    finally:
        srv.cleanup()


# ---- main -------------------------------------------------------------------------------------

def summary(hs: list[dict], wd: list[dict]) -> str:
    out = []
    if hs:
        out.append("handshakes/s (median of rounds)   on        off     ratio on/off "
                   "(median of per-round ratios; ratio of medians)")
        for r in hs:
            if "error" in r:
                out.append(f"  {r['module']:<4} ERROR: {r['error'][:300]}")
                continue
            out.append(f"  {r['module']:<4} {'':26}{r['on_per_s']:8.0f}  {r['off_per_s']:8.0f}  "
                       f"{r['ratio_median_of_rounds']:.3f}; {r['ratio_of_medians']:.3f}  "
                       f"rounds {r['ratios']}  stapled on {r['on_stapled']}/"
                       f"{r['on_handshakes']}, off {r['off_stapled']}/{r['off_handshakes']}, "
                       f"errors {r['errors']}, crashes {len(r['crashes'])}")
            out.append(f"       paired (on and off loaded at once): on "
                       f"{r['paired_on_per_s']:.0f}/s, off {r['paired_off_per_s']:.0f}/s, "
                       f"ratio {r['paired_ratio_median']:.3f} {r['paired_ratios']}, httpd "
                       f"CPU ratio {r['paired_server_cost_ratio_median']:.3f}")
            if "control_ratio_median" in r:
                out.append(f"       A/A control (a third server, always off, vs off): ratio "
                           f"{r['control_ratio_median']:.3f} {r['control_ratios']}, httpd "
                           f"CPU ratio {r['control_cost_ratio_median']:.3f}")
                out.append(f"       paired A/A control (control and off loaded at once): "
                           f"ratio {r['paired_control_ratio_median']:.3f} "
                           f"{r['paired_control_ratios']}, httpd CPU ratio "
                           f"{r['paired_control_cost_ratio_median']:.3f}")
            if "perf" in r:
                pr = r["perf"]
                out.append("       perf: md module share of httpd CPU samples: on "
                           + " / off ".join(f"{pr[m].get('md_module_pct', float('nan')):.2f}%"
                                            for m in ("on", "off")))
            out.append(f"       httpd CPU per handshake on {r['server_us_on']:.0f} us, off "
                       f"{r['server_us_off']:.0f} us, ratio on/off "
                       f"{r['server_cost_ratio_median_of_rounds']:.3f} (median of rounds); "
                       f"client CPU per handshake on {r['client_us_on']:.0f} us, off "
                       f"{r['client_us_off']:.0f} us")
    if wd:
        out.append("watchdog: N certs   startup on/off (s)   all responses (s from spawn / "
                   "after up)   answered   parent RSS on/off (MiB)   children RSS on: now/peak, "
                   "off (MiB)")
        for r in wd:
            if "error" in r:
                out.append(f"  {r['module']:<4} ERROR: {r['error'][:300]}")
                continue
            allt = (f"{r['all_after_spawn_s']:7.2f} / {r['all_after_up_s']:7.2f}"
                    if r["complete"] else f"INCOMPLETE {r['files']}/{r['certs']}")
            out.append(f"  {r['module']:<4} {r['certs']:6d}   {r['startup_on_s']:6.2f} / "
                       f"{r.get('startup_off_s', float('nan')):6.2f}       {allt:<28}"
                       f"  {r['answered']:6d}   {r['rss_parent_on_kib'] / 1024:6.1f} / "
                       f"{r.get('rss_parent_off_kib', 0) / 1024:6.1f}   "
                       + " ".join(f"{x / 1024:.0f}/{y / 1024:.0f}" for x, y in
                                  zip(r["rss_children_kib"], r["hwm_children_kib"]))
                       + ", " + " ".join(f"{x / 1024:.0f}"
                                         for x in r.get("rss_children_off_kib", [])))
        for m in dict.fromkeys(r["module"] for r in wd):
            ok = [r for r in wd if r["module"] == m and "error" not in r and r["complete"]]
            if len(ok) > 1:
                def md(key: str) -> float:
                    return statistics.median(r[key] for r in ok if key in r)
                out.append(f"  {m:<4} median of {len(ok)}: startup on {md('startup_on_s'):.2f} s,"
                           f" off {md('startup_off_s'):.2f} s; all responses "
                           f"{md('all_after_spawn_s'):.2f} s from spawn, "
                           f"{md('all_after_up_s'):.2f} s after AH00489; parent RSS on "
                           f"{md('rss_parent_on_kib') / 1024:.1f} MiB, off "
                           f"{md('rss_parent_off_kib') / 1024:.1f} MiB")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modules", default="c,rs")
    ap.add_argument("--certs", type=int, default=100, help="N for the watchdog part")
    ap.add_argument("--repeat", type=int, default=1,
                    help="watchdog measurements per module (the summary adds medians)")
    ap.add_argument("--rounds", type=int, default=6,
                    help="handshake rounds; the two servers swap on/off every round")
    ap.add_argument("--seconds", type=float, default=2.0, help="per client run")
    ap.add_argument("--threads", type=int, default=4, help="client threads")
    ap.add_argument("--control", action="store_true",
                    help="a third server, identical to 'off', measured in the same rounds: "
                         "the A/A ratio shows the noise floor")
    ap.add_argument("--perf", action="store_true",
                    help="one more run per server under `perf record`: share of httpd's CPU "
                         "samples per shared object and inside the md module")
    ap.add_argument("--tls", default="", help="1.2 or 1.3 (default: negotiated, 1.3)")
    ap.add_argument("--skip", default="", help="handshakes and/or watchdog")
    ap.add_argument("--client", default=None, help="handshake_bench binary")
    ap.add_argument("--staple-timeout", type=float, default=60)
    ap.add_argument("--watchdog-timeout", type=float, default=900)
    ap.add_argument("--stall-timeout", type=float, default=120,
                    help="give up when no response file appeared for this long")
    ap.add_argument("--json", default=None, help="write all results to this file")
    ap.add_argument("--no-netns", action="store_true")
    a = ap.parse_args()
    modules = [m.strip() for m in a.modules.split(",") if m.strip()]
    skip = set(a.skip.split(","))
    client = find_client(a.client) if "handshakes" not in skip else None

    if os.geteuid() == 0 and not a.no_netns:
        private_netns()
        log("running in a private network namespace (loopback only)")
    elif not a.no_netns:
        sys.exit("not root: cannot unshare the network namespace; use --no-netns (the "
                 "responder then binds *:P)")

    apache = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "apache2-bin"],
                            capture_output=True, text=True).stdout
    log(f"apache2-bin {apache}; modules: "
        + ", ".join(f"{m}={module_by_name(m).path}" for m in modules))
    work = Path(tempfile.mkdtemp(prefix="md-bench-stapling-"))
    os.chmod(work, 0o755)
    resp = None
    hs, wd = [], []
    try:
        (port,) = free_ports(1)
        pki = Pki(work, f"http://127.0.0.1:{port}/")
        n_leaves = max(1, a.certs if "watchdog" not in skip else 1)
        t0 = time.perf_counter()
        pki.make_leaves(n_leaves)
        log(f"PKI: root -> intermediate -> {n_leaves} leaves in "
            f"{time.perf_counter() - t0:.1f} s; responder on {pki.ocsp_url}")
        resp = Responder(pki, port)
        resp.start()
        if "handshakes" not in skip:
            for m in modules:
                hs.append(bench_handshakes(m, pki, a, client))
                if "error" in hs[-1]:
                    log(f"[{m}] handshakes: {hs[-1]['error'][:500]}")
        if "watchdog" not in skip:
            for k in range(a.repeat):
                for m in (modules if k % 2 == 0 else modules[::-1]):
                    wd.append(bench_watchdog(m, pki, resp, a))
                    if "error" in wd[-1]:
                        log(f"[{m}] watchdog: {wd[-1]['error'][:500]}")
    finally:
        if resp is not None:
            resp.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(summary(hs, wd))
    if a.json:
        Path(a.json).write_text(json.dumps({"handshakes": hs, "watchdog": wd,
                                            "args": vars(a), "apache2": apache}, indent=1))


if __name__ == "__main__":
    main()
