#!/usr/bin/env python3
"""The quick start's main job: a local ACME CA (pebble) and an httpd with mod_md-rs on loopback;
the module obtains certificates, a graceful restart activates them, and we show where to look.

Usage: quickstart.py start <dir> <module.so>   |   quickstart.py stop <dir>
Everything listens on 127.0.0.1 on ports chosen now; PIDs are kept in <dir>/run/*.pid.
"""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))
from lib.pebble import Pebble, free_port  # noqa: E402

MDS = [("example.test", ["www.example.test"], ""),
       ("shop.test", [], "    MDPrivateKeys secp256r1 rsa2048\n"),
       ("blog.test", ["www.blog.test"], "")]


def stop(d: Path):
    for name in ("httpd", "pebble", "challtestsrv"):
        f = d / "run" / f"{name}.pid"
        if f.exists():
            try:
                os.kill(int(f.read_text()), signal.SIGTERM)
                print(f"stopped {name}")
            except (ProcessLookupError, ValueError):
                pass
            f.unlink()


def start(d: Path, so: str):
    stop(d)
    for sub in ("conf", "logs", "run", "htdocs"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    (d / "htdocs" / "index.html").write_text("<h1>Served with a certificate from mod_md-rs</h1>\n")
    http_port, https_port = free_port(), free_port()
    peb = Pebble(str(d), http_port, https_port).start()
    (d / "run" / "challtestsrv.pid").write_text(str(peb.procs[0].pid))
    (d / "run" / "pebble.pid").write_text(str(peb.procs[1].pid))
    sections = ""
    for name, aliases, extra in MDS:
        sections += f"<MDomain {name} {' '.join(aliases)}>\n{extra}</MDomain>\n"
        alias = f"    ServerAlias {' '.join(aliases)}\n" if aliases else ""
        sections += (f"<VirtualHost 127.0.0.1:{https_port}>\n    ServerName {name}\n{alias}"
                     "    SSLEngine on\n</VirtualHost>\n")
    mods = "/usr/lib/apache2/modules"
    (d / "conf" / "httpd.conf").write_text(f"""# mod_md-rs quick start (loopback only)
ServerRoot "{d}"
DefaultRuntimeDir "{d}/run"
PidFile "{d}/run/httpd.pid"
ErrorLog "{d}/logs/error.log"
LogLevel warn md:info
ServerName localhost
Listen 127.0.0.1:{http_port}
Listen 127.0.0.1:{https_port}
User www-data
Group www-data
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule dir_module {mods}/mod_dir.so
LoadModule socache_shmcb_module {mods}/mod_socache_shmcb.so
LoadModule ssl_module {mods}/mod_ssl.so
LoadModule md_module {so}
DocumentRoot "{d}/htdocs"
<Directory "{d}/htdocs">
    Require all granted
</Directory>

MDStoreDir "{d}/md"
MDCertificateAuthority {peb.directory_url}
MDCACertificateFile "{peb.ca_file}"
MDCertificateAgreement accepted
MDContactEmail admin@example.test
MDPortMap http:{http_port} https:{https_port}
<VirtualHost 127.0.0.1:{http_port}>
    ServerName localhost
</VirtualHost>
{sections}""")
    conf = ["-d", str(d), "-f", str(d / "conf" / "httpd.conf")]
    subprocess.run(["apache2", *conf, "-t"], check=True)
    t0 = time.time()
    subprocess.run(["apache2", *conf, "-k", "start"], check=True)
    print(f"httpd started on 127.0.0.1:{http_port} (http) and :{https_port} (https); "
          "waiting for the certificates ...")
    names = [m[0] for m in MDS]
    for _ in range(600):
        done = []
        for n in names:
            job = d / "md" / "staging" / n / "job.json"
            try:
                done.append(json.loads(job.read_text()).get("finished", False))
            except (OSError, ValueError):
                done.append(False)
        if all(done):
            break
        time.sleep(0.1)
    else:
        print("certificates not obtained within 60 s; see", d / "logs" / "error.log")
        sys.exit(1)
    print(f"all {len(names)} MDs obtained their certificates in {time.time() - t0:.1f} s "
          "(staged); graceful restart to activate them")
    httpd_pid = int((d / "run" / "httpd.pid").read_text())
    log = d / "logs" / "error.log"
    before = log.read_text().count("AH00489")
    os.kill(httpd_pid, signal.SIGUSR1)
    while log.read_text().count("AH00489") <= before:
        time.sleep(0.1)
    (d / "run" / "httpd.pid").write_text(str(httpd_pid))
    root = d / "pebble-root.pem"
    root.write_text(peb.root_pem())
    ctx = ssl.create_default_context(cafile=str(root))
    for n in names:
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", https_port), timeout=5) as s:
                    with ctx.wrap_socket(s, server_hostname=n) as t:
                        issuer = dict(x[0] for x in t.getpeercert()["issuer"])["commonName"]
                        print(f"  https://{n}:{https_port}/  verified, issued by {issuer}")
                        break
            except ssl.SSLError:
                time.sleep(0.2)
    print(f"""
Where to look:
  store:      {d}/md   (domains/<md>/pubcert.pem, privkey.pem, md.json, job.json)
  error log:  {d}/logs/error.log   (lines tagged [md:...], AH10059 staged, AH10068 activated)
  try:        curl --cacert {root} --resolve example.test:{https_port}:127.0.0.1 https://example.test:{https_port}/
              openssl s_client -connect 127.0.0.1:{https_port} -servername shop.test -CAfile {root}
  config:     {d}/conf/httpd.conf
  stop:       bash scripts/quickstart.sh stop
""")


if __name__ == "__main__":
    if sys.argv[1] == "stop":
        stop(Path(sys.argv[2]))
    else:
        start(Path(sys.argv[2]), sys.argv[3])
