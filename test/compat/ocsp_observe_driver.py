"""Driver used to record test/compat/ocsp-c-observations.md (manual tool, not a test).

Starts pebble (ocspResponderURL -> lib/ocsp.OcspResponder), httpd with the module MOD (c|rs),
MDStapling on, MDServerStatus on, MDMessageCmd appending to <dir>/messages.txt, MDomain a.test;
waits for the certificate, adds its serial to the index, graceful restart. Then reads commands
from $EXP/ctl (one per line): mode <m>, revoke, graceful, restart, stapling-off, stapling-on,
add-other, stop. Writes $EXP/state.json (ports, dir, request times) and $EXP/reqs/req-N.der/.json.
Env: MOD, NMIN (OCSP validity minutes), EXTRA (server-level directives), NO_OCSP_URL, NO_ADD, LL.
"""
import json, os, sys, time, signal, traceback, shutil
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lib.httpd import HttpdServer, module_by_name
from lib.pebble import Pebble, free_port
from lib.ocsp import OcspResponder
from test_renewal import md_conf, vhosts, wait_staged, graceful

EXP = os.environ.get("EXP", "/tmp/ocsp-exp")
mod = os.environ.get("MOD", "c")
ocsp_url = os.environ.get("NO_OCSP_URL") is None
srv = HttpdServer(module_by_name(mod), status=True, log_level=os.environ.get("LL", "info md:trace2 ssl:info"), keep=True)
resp = OcspResponder(str(srv.dir), nmin=int(os.environ.get("NMIN", "1")))
peb = Pebble(str(srv.dir), srv.http_port, srv.https_port, config=resp.pebble_config() if ocsp_url else {})
msg = srv.dir / "messages.txt"
script = srv.write_file("msg.sh", f'#!/bin/sh\necho "$(date +%s) $@" >> {msg}\n', mode=0o755)
msg.write_text(""); os.chmod(msg, 0o666)
extra = os.environ.get("EXTRA", "")
body = (f"MDStapling on\nMDServerStatus on\nMDMessageCmd {script}\n{extra}\n"
        "<Location /md-status>\n  SetHandler md-status\n</Location>\n"
        "<Location /server-status>\n  SetHandler server-status\n</Location>\n"
        "MDomain a.test\n" + vhosts("a.test") + os.environ.get("EXTRA_VH", ""))
state = {"dir": str(srv.dir), "http": srv.http_port, "https": srv.https_port, "ocsp": resp.port,
         "pebble_mgmt": peb.mgmt_port, "pid": os.getpid()}
def save():
    state["requests"] = resp.request_count()
    state["req_times"] = [r.when for r in resp.requests]
    state["req_modes"] = [r.mode for r in resp.requests]
    json.dump(state, open(f"{EXP}/state.json", "w"), indent=1)
    os.makedirs(f"{EXP}/reqs", exist_ok=True)
    for i, r in enumerate(list(resp.requests)):
        f = f"{EXP}/reqs/req-{i}.der"
        if not os.path.exists(f):
            open(f, "wb").write(r.body)
            json.dump({"method": r.method, "path": r.path, "headers": r.headers, "mode": r.mode, "status": r.status, "when": r.when}, open(f"{EXP}/reqs/req-{i}.json", "w"), indent=1)
try:
    peb.start()
    resp.start(pebble=peb)
    srv.render(md_conf(srv, peb, body))
    t0 = time.time(); state["t_start"] = t0
    r = srv.start(); assert r.started, r.text
    wait_staged(srv, "a.test")
    state["t_staged"] = time.time()
    pub = srv.dir / "md" / "staging" / "a.test" / "pubcert.pem"
    if os.environ.get("NO_ADD") is None:
        state["serial"] = resp.add_cert(str(pub))
    save()
    if os.environ.get("NO_GRACEFUL") is None:
        graceful(srv); state["t_graceful"] = time.time()
    save()
    open(f"{EXP}/ready", "w").write("1")
    ctl = f"{EXP}/ctl"
    while True:
        time.sleep(0.2); save()
        if not os.path.exists(ctl): continue
        cmds = open(ctl).read().split("\n"); os.unlink(ctl)
        for c in cmds:
            c = c.strip()
            if not c: continue
            state.setdefault("ctl", []).append([time.time(), c])
            if c == "stop": raise SystemExit(0)
            elif c.startswith("mode "): resp.set_mode(c.split()[1])
            elif c == "revoke": resp.revoke(str(srv.dir / "md" / "domains" / "a.test" / "pubcert.pem"))
            elif c == "graceful": graceful(srv); state.setdefault("gracefuls", []).append(time.time())
            elif c == "restart":
                srv.stop(); r = srv.start(); assert r.started, r.text; state.setdefault("restarts", []).append(time.time())
            elif c == "stapling-off":
                srv.render(md_conf(srv, peb, body.replace("MDStapling on", "MDStapling off"))); graceful(srv)
            elif c == "stapling-on":
                srv.render(md_conf(srv, peb, body)); graceful(srv)
            elif c == "add-other":
                import subprocess
                cd = srv.dir / "conf"
                (cd / "other.ext").write_text(f"subjectAltName=DNS:b.test\n" + (f"authorityInfoAccess=OCSP;URI:{resp.url}\n" if ocsp_url else ""))
                subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(cd / "other.key"), "-out", str(cd / "other.csr"), "-subj", "/CN=b.test"], check=True, capture_output=True)
                subprocess.run(["openssl", "x509", "-req", "-in", str(cd / "other.csr"), "-CA", resp.issuer_path, "-CAkey", resp.key_path, "-set_serial", "0x0B7E57", "-days", "5", "-extfile", str(cd / "other.ext"), "-out", str(cd / "other.crt")], check=True, capture_output=True)
                # chain: leaf + issuer
                (cd / "other.pem").write_text((cd / "other.crt").read_text() + open(resp.issuer_path).read())
                resp.add_cert(str(cd / "other.crt"))
                ovh = ("<VirtualHost 127.0.0.1:@HTTPS_PORT@>\n  ServerName b.test\n  SSLEngine on\n"
                       f"  SSLCertificateFile {cd}/other.pem\n  SSLCertificateKeyFile {cd}/other.key\n</VirtualHost>\n")
                body = body + os.environ.get("OTHER_PRE", "") + ovh
                srv.render(md_conf(srv, peb, body)); graceful(srv)
            elif c == "httpdstop": srv.stop()
            elif c == "httpdstart":
                r = srv.start(); assert r.started, r.text
            elif c.startswith("add "): resp.add_cert(c.split(None,1)[1])
except SystemExit:
    pass
except Exception:
    traceback.print_exc()
finally:
    save()
    srv.stop(); resp.stop(); peb.stop()
    open(f"{EXP}/done", "w").write("1")
