"""Post-config compatibility: checks that only run when httpd really starts.

``apache2 -t`` stops after parsing; MD/vhost linking, overlap and coverage checks, static cert
file checks and the store sync run in post_config. Each case starts httpd in the foreground
on loopback ports, waits until it either exits (startup failed) or says "resuming normal
operations", checks the error log for AH numbers at the expected level, and stops it by PID.
Expectations are what the C module does (observed with Debian's mod_md.so).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import pytest

# Tell mod_md that the CA could reach us (else every MD logs AH10173 "None of the ACME
# challenge methods ... are suitable"); the CA itself is unreachable (lib/httpd.py).
PORTMAP = "MDPortMap http:@HTTP_PORT@ https:@HTTPS_PORT@\n"


def ssl_vhost(name: str = "a.org", aliases: str = "www.a.org", own_cert: bool = False) -> str:
    lines = ["<VirtualHost 127.0.0.1:@HTTPS_PORT@>", f"    ServerName {name}"]
    if aliases:
        lines.append(f"    ServerAlias {aliases}")
    lines.append("    SSLEngine on")
    if own_cert:
        lines += ["    SSLCertificateFile @CERT@", "    SSLCertificateKeyFile @KEY@"]
    lines.append("</VirtualHost>")
    return "\n".join(lines)


def http_vhost(name: str = "a.org", aliases: str = "") -> str:
    alias = f"\n    ServerAlias {aliases}" if aliases else ""
    return (f"<VirtualHost 127.0.0.1:@HTTP_PORT@>\n    ServerName {name}{alias}\n"
            "</VirtualHost>")


@dataclass
class Expect:
    """A log line with AH number ``ah``, logged by ``module`` at ``level``, naming ``names``.

    ``c_text`` is a fragment of the C module's wording of that line: checked for every module
    by ``test_startup_log_wording`` (DESIGN: keep C's wording for messages that exist there),
    while ``test_startup`` only needs AH number, level and the names.
    """

    ah: str
    level: str  # "warn", "error", ...
    module: str = "md"
    names: tuple[str, ...] = ()  # identifying values that must be on the line
    c_text: str = ""

    def matches(self, line: str, wording: bool = False) -> bool:
        return (self.ah in line and f"[{self.module}:{self.level}]" in line
                and all(n in line for n in self.names)
                and (not wording or self.c_text in line))

    def __str__(self):
        return f"[{self.module}:{self.level}] {self.ah} {' '.join(self.names)}".strip()


@dataclass
class StartCase:
    id: str
    conf: str
    starts: bool
    expect: list[Expect] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # texts that must not be in the log
    note: str = ""


CASES = [
    StartCase("baseline-md-ssl-vhost", PORTMAP + "MDomain a.org www.a.org\n" + ssl_vhost(),
              True,
              [Expect("AH10085", "warn", "ssl", ("a.org:443",),
                      "will respond with '503 Service Unavailable' for now")],
              absent=["[md:error]", "AH10045", "AH10040"],
              note="mod_md contributes a fallback cert: mod_ssl warns AH10085 (503 for now)"),
    StartCase("overlap", PORTMAP + "MDomain a.org www.a.org\nMDomain b.org www.a.org\n"
              + ssl_vhost(), False,
              [Expect("AH10038", "error", names=("www.a.org",),
                      c_text="AH10038: two Managed Domains have an overlap in domain "
                             "'www.a.org', first definition in ")],
              note="C prints 'first definition in unknown(line 0), second in unknown(line 0)'"),
    StartCase("overlap-servernames", PORTMAP + "MDMatchNames servernames\n"
              "MDomain a.org www.a.org\nMDomain b.org www.a.org\n" + ssl_vhost(), True,
              [Expect("AH10045", "warn", names=("b.org",),
                      c_text="AH10045: No VirtualHost matches Managed Domain b.org")],
              absent=["AH10038"], note="MDMatchNames servernames skips the overlap check"),
    StartCase("two-mds-ssl-vhost-own-cert", PORTMAP + "MDomain a.org\nMDomain www.a.org\n"
              + ssl_vhost(own_cert=True), False,
              [Expect("AH10238", "error", names=("a.org",),
                      c_text="AH10238: conflict: 2 MDs match Virtualhost a.org which uses SSL,"
                             " however there can be at most 1."),
               Expect("AH10042", "error", names=("a.org",),
                      c_text="AH10042: conflict: 2 MDs match to SSL VirtualHost a.org, there "
                             "can at most be one.")],
              absent=["AH10045"],
              note="AH10238 is logged in each post_config pass, AH10042 then ends startup"),
    StartCase("two-mds-ssl-vhost-no-cert", PORTMAP + "MDomain a.org\nMDomain www.a.org\n"
              + ssl_vhost(), False,
              [Expect("AH10238", "error", names=("a.org",),
                      c_text="AH10238: conflict: 2 MDs match Virtualhost a.org which uses SSL,"
                             " however there can be at most 1."),
               Expect("AH02572", "emerg", "ssl", ("a.org:443",))],
              note="no MD contributes a cert, so mod_ssl ends the startup"),
    StartCase("members-manual-alias", PORTMAP + "MDomain a.org manual\n" + ssl_vhost(), True,
              [Expect("AH10040", "warn", names=("a.org", "www.a.org"),
                      c_text="AH10040: Virtual Host a.org:0 matches Managed Domain 'a.org', "
                             "but the name/alias www.a.org itself is not managed. A requested "
                             "MD certificate will not match ServerName.")],
              note="C prints the vhost as 'a.org:0' (port 0)"),
    StartCase("members-auto-alias", PORTMAP + "MDomain a.org auto\n" + ssl_vhost(), True,
              [], absent=["AH10040", "[md:error]"]),
    StartCase("md-without-vhost", PORTMAP + "MDomain a.org\nMDomain b.org\n"
              + ssl_vhost(aliases=""), True,
              [Expect("AH10045", "warn", names=("b.org",),
                      c_text="AH10045: No VirtualHost matches Managed Domain b.org")],
              absent=["Managed Domain a.org"]),
    StartCase("certfile-without-keyfile", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateFile @CERT@\n    MDCertificateFile @CERT@\n"
              "    MDCertificateKeyFile @KEY@\n</MDomain>\n" + ssl_vhost(aliases=""), False,
              [Expect("AH10170", "error", names=("a.org",),
                      c_text="AH10170: The Managed Domain 'a.org' needs one "
                             "MDCertificateKeyFile for each MDCertificateFile.")]),
    StartCase("keyfile-without-certfile", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateKeyFile @KEY@\n</MDomain>\n" + ssl_vhost(aliases=""), False,
              [Expect("AH10171", "error", names=("a.org",),
                      c_text="AH10171: The Managed Domain 'a.org' has MDCertificateKeyFile(s) "
                             "but no MDCertificateFile.")]),
    StartCase("static-cert-files", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateFile @CERT@\n    MDCertificateKeyFile @KEY@\n</MDomain>\n"
              + ssl_vhost(aliases=""), True, [],
              absent=["[md:error]", "AH10085", "AH10170", "AH10171"]),
    StartCase("require-https-without-ssl-vhost", PORTMAP + "MDomain a.org\n"
              "MDRequireHttps temporary\n" + http_vhost(), True,
              [Expect("AH10105", "warn", names=("a.org",),
                      c_text="AH10105: MD a.org does not match any VirtualHost with 'SSLEngine "
                             "on', but is configured to require https. This cannot work.")]),
    StartCase("unknown-protocol", PORTMAP + "MDCertificateProtocol FOO\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), False,
              [Expect("AH10172", "error", names=("a.org",),
                      c_text="AH10172: md[a.org]: error syncing to store")],
              note="C logs \"[a.org] uses unknown CA protocol 'FOO'\" (no AH number) first"),
    StartCase("same-md-twice", PORTMAP + "MDomain a.org\nMDomain a.org\n"
              + ssl_vhost(aliases=""), False,
              [Expect("AH10038", "error", names=("a.org",),
                      c_text="AH10038: two Managed Domains have an overlap in domain 'a.org'")],
              note="accepted by apache2 -t, fails at startup"),
    StartCase("static-cert-files-missing", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateFile conf/missing.pem\n"
              "    MDCertificateKeyFile conf/missing.key\n</MDomain>\n"
              + ssl_vhost(aliases=""), False,
              [Expect("AH02562", "emerg", "ssl", ("<DIR>/conf/missing.pem",))],
              note="mod_md hands the (ServerRoot-relative) paths to mod_ssl, which fails"),
    StartCase("invalid-domain-name", PORTMAP + "MDomain a.org invalid!.x.org\n"
              + ssl_vhost(aliases="invalid!.x.org"), True,
              absent=["[md:error]", "AH10038", "AH10040"],
              note="C checks no DNS syntax in MDomain: the CA refuses the name later "
                   "('malformed'), the server starts"),
    # ---- sweep: one more startup case per directive whose checks run in post_config
    StartCase("protocol-lowercase", PORTMAP + "MDCertificateProtocol acme\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), False,
              [Expect("AH10172", "error", names=("a.org",),
                      c_text="AH10172: md[a.org]: error syncing to store")],
              note="the protocol name is case-sensitive: 'acme' is unknown"),
    StartCase("portmap-both-unreachable", "MDPortMap http:- https:-\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), True,
              [Expect("AH10173", "error", names=("a.org",),
                      c_text="AH10173: md[a.org]: None of the ACME challenge methods configured "
                             "for this domain are suitable. The http: challenge 'http-01' is "
                             "disabled because the server seems not reachable on public port 80."
                      )]),
    StartCase("portmap-https-only-no-alpn", "MDPortMap http:- https:@HTTPS_PORT@\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), True,
              [Expect("AH10173", "error", names=("a.org",),
                      c_text="The https: challenge 'tls-alpn-01' is disabled because the "
                             "Protocols")],
              note="443 reachable but no vhost has acme-tls/1 in Protocols"),
    StartCase("baseserver-on-md", PORTMAP + "MDBaseServer on\nMDomain localhost\n", True,
              absent=["AH10045", "[md:error]"],
              note="the base server (ServerName localhost) is matched"),
    StartCase("baseserver-off-md", PORTMAP + "MDomain localhost\n", True,
              [Expect("AH10045", "warn", names=("localhost",),
                      c_text="AH10045: No VirtualHost matches Managed Domain localhost")]),
    StartCase("matchnames-servernames-alias", PORTMAP + "MDMatchNames servernames\n"
              "MDomain www.a.org\n" + ssl_vhost(), False,
              [Expect("AH02572", "emerg", "ssl", ("a.org:443",))],
              absent=["AH10045"],
              note="only ServerName is compared: the SSL vhost gets no MD and no certificate"),
    StartCase("messagecmd-notifycmd-empty", PORTMAP + "MDMessageCmd\nMDNotifyCmd\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), True, absent=["[md:error]"]),
    StartCase("challenges-dns01-without-cmd", PORTMAP + "MDCAChallenges dns-01\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), True,
              absent=["AH10173", "[md:error]"],
              note="an explicit list is not checked at startup"),
    StartCase("challenges-unknown-type", PORTMAP + "MDCAChallenges bogus-01\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), True,
              absent=["AH10173", "[md:error]"]),
    StartCase("store-dir-unusable", PORTMAP + "MDomain a.org\nMDStoreDir /proc/md-nope\n"
              + ssl_vhost(aliases=""), False,
              [Expect("AH10046", "error", names=("/proc/md-nope",),
                      c_text="AH10046: setup store for /proc/md-nope")]),
]

_RESULTS: dict[tuple[str, str], dict] = {}


def run_startup(httpd_factory, module_name: str, case: StartCase) -> dict:
    """Start httpd once per (module, case); both tests below share the observed result."""
    key = (module_name, case.id)
    if key not in _RESULTS:
        srv = httpd_factory()
        srv.render(case.conf)
        try:
            res = srv.start(timeout=20)
        finally:
            srv.stop()
        log = res.error_log.replace(str(srv.dir), "<DIR>")
        _RESULTS[key] = {
            "res": res, "log": log,
            "why": (f"\n--- config body ---\n{srv.substitute(case.conf)}\n--- error log ---\n"
                    f"{log}\n--- httpd output ---\n{res.output}"),
        }
    return _RESULTS[key]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_startup(httpd_factory, md_module, case: StartCase):
    r = run_startup(httpd_factory, md_module.name, case)
    res, log, why = r["res"], r["log"], r["why"]
    assert not res.timed_out, f"httpd neither started nor exited within 20s{why}"
    if case.starts:
        assert res.started, f"expected a successful start, exit code {res.exit_code}{why}"
    else:
        assert not res.started, f"expected startup to fail{why}"
        assert res.exit_code not in (None, 0), f"expected a non-zero exit{why}"
        assert re.search(r"AH00016|AH00020|AH02312", log + res.output), (
            f"startup failure without httpd's 'Configuration Failed'{why}")
    lines = log.splitlines()
    for exp in case.expect:
        assert any(exp.matches(line) for line in lines), f"missing log line {exp}{why}"
    for text in case.absent:
        assert text not in log, f"unexpected {text!r} in the error log{why}"


WORDING = [c for c in CASES if any(e.c_text for e in c.expect)]


@pytest.mark.parametrize("case", WORDING, ids=[c.id for c in WORDING])
def test_startup_log_wording(httpd_factory, md_module, case: StartCase):
    """The AH lines carry C mod_md's wording (admins and monitoring grep for it)."""
    r = run_startup(httpd_factory, md_module.name, case)
    lines = r["log"].splitlines()
    for exp in case.expect:
        if exp.c_text:
            assert any(exp.matches(line, wording=True) for line in lines), (
                f"no [{exp.module}:{exp.level}] line with C's wording {exp.c_text!r}{r['why']}")


def test_startup_purges_challenge_dirs_of_names_no_md_has(httpd_factory, md_module):
    """Left-over challenge material of names no MD has (an MD removed from the config, a
    crashed renewal) is removed at startup; the dirs of configured names stay."""
    srv = httpd_factory()
    for name in ("old.test", "a.org"):
        d = srv.dir / "md" / "challenges" / name
        d.mkdir(parents=True)
        (d / "acme-http-01.txt").write_text("token.thumbprint")
    srv.render(PORTMAP + "MDomain a.org\n" + ssl_vhost(aliases=""))
    res = srv.start()
    assert res.started, res.text
    challenges = srv.dir / "md" / "challenges"
    assert not (challenges / "old.test").exists(), sorted(os.listdir(challenges))
    assert (challenges / "a.org" / "acme-http-01.txt").exists()


def test_relative_store_dir_is_under_server_root(httpd_factory, md_module):
    """`MDStoreDir md-rel`: the store is made in <ServerRoot>/md-rel (as the C module does)."""
    srv = httpd_factory(md_defaults=False)
    srv.render("MDCertificateAuthority https://127.0.0.1:9/directory\nMDStoreDir md-rel\n"
               + PORTMAP + "MDomain a.org\n" + ssl_vhost(aliases=""))
    res = srv.start()
    assert res.started, res.text
    assert (srv.dir / "md-rel" / "md_store.json").is_file()
    assert (srv.dir / "md-rel" / "domains" / "a.org" / "md.json").is_file()
    assert not (srv.dir / "md").exists()
