import os, subprocess, sys, time, json
sys.path.insert(0, os.path.dirname(__file__))
from lib.httpd import HttpdServer, module_by_name
from lib.pebble import Pebble
from lib.ocsp import OcspResponder
from test_renewal import md_conf, vhosts, wait_staged, graceful
from test_status import STATUS_LOCATIONS, get_json, request

impl = sys.argv[1] if len(sys.argv) > 1 else "rs"
srv = HttpdServer(module_by_name(impl), log_level="warn md:debug ssl:info", status=True, keep=True)
resp = OcspResponder(str(srv.dir))
peb = Pebble(str(srv.dir), srv.http_port, srv.https_port, config=resp.pebble_config())
try:
    peb.start()
    resp.start(pebble=peb)
    srv.render(md_conf(srv, peb, "MDStapling on\nMDServerStatus on\nMDCheckInterval 2s\nMDomain a.test\n" + STATUS_LOCATIONS + vhosts("a.test")))
    assert srv.start().started
    wait_staged(srv, "a.test")
    resp.add_cert(str(srv.dir / "md/staging/a.test/pubcert.pem"))
    graceful(srv)
    n = resp.wait_requests(1, timeout=30)
    print("requests", n)
    time.sleep(1)
    out = subprocess.run(["openssl", "s_client", "-status", "-servername", "a.test", "-connect",
                          f"127.0.0.1:{srv.https_port}"], input=b"", capture_output=True, timeout=20).stdout.decode()
    print([l for l in out.splitlines() if "OCSP" in l or "Cert Status" in l])
    print(subprocess.run(["find", str(srv.dir / "md/ocsp"), "-ls"], capture_output=True, text=True).stdout)
    for f in (srv.dir / "md/ocsp").rglob("*.json"):
        print(f, f.read_text()[:600])
    print("\n".join(l for l in srv.error_log().splitlines() if "ocsp" in l.lower() or "OCSP" in l)[-3000:])
    print(json.dumps(get_json(srv, "/md-status/a.test")["cert"], indent=1))
    print(json.dumps(get_json(srv, "/md-status")["managed-domains"][0].get("cert"), indent=1))
    _, _, auto = request(srv.http_port, "localhost", "/server-status?auto")
    print("\n".join(l for l in auto.decode().splitlines() if l.startswith("Managed")))
    _, _, html = request(srv.http_port, "localhost", "/server-status")
    h = html.decode()
    i = h.find("Managed Staplings")
    print(h[i-20:i+3000] if i >= 0 else "NO STAPLINGS TABLE")
    print("orders before", peb.orders())
    resp.revoke(str(srv.dir / "md/domains/a.test/pubcert.pem"))
    resp.wait_requests(n + 1, timeout=90)
    time.sleep(5)
    for f in (srv.dir / "md/ocsp").rglob("ocsp-*.json"):
        print(json.loads(f.read_text())["status"])
    wait_staged(srv, "a.test", timeout=60)
    print("orders after", peb.orders())
    print("\n".join(l for l in srv.error_log().splitlines() if "revoked" in l.lower())[-3000:])
finally:
    srv.stop() if hasattr(srv, "stop") else None
    srv.cleanup()
    resp.stop()
    peb.stop()
