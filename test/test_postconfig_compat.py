"""Post-config compatibility: checks that only run when httpd really starts.

``apache2 -t`` stops after parsing; MD/vhost linking, overlap and coverage checks, static cert
file checks and the store sync run in post_config. Each case starts httpd in the foreground
on loopback ports, waits until it either exits (startup failed) or says "resuming normal
operations", checks the error log for AH numbers at the expected level, and stops it by PID.
Expectations are what the C module does (observed with Debian's mod_md.so).
"""

from __future__ import annotations

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
    """A log line with this AH number (or text), logged by ``module`` at ``level``."""

    ah: str
    level: str  # "warn", "error", ...
    module: str = "md"
    fragments: tuple[str, ...] = ()  # must also be on that line

    def matches(self, line: str) -> bool:
        return (self.ah in line and f"[{self.module}:{self.level}]" in line
                and all(f in line for f in self.fragments))

    def __str__(self):
        return f"[{self.module}:{self.level}] {self.ah} {' '.join(self.fragments)}".strip()


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
              True, [Expect("AH10085", "warn", "ssl", ("a.org:443",))],
              absent=["[md:error]", "AH10045", "AH10040"],
              note="mod_md contributes a fallback cert: mod_ssl warns AH10085 (503 for now)"),
    StartCase("overlap", PORTMAP + "MDomain a.org www.a.org\nMDomain b.org www.a.org\n"
              + ssl_vhost(), False,
              [Expect("AH10038", "error", fragments=("overlap in domain 'www.a.org'",))],
              note="C prints 'first definition in unknown(line 0)'"),
    StartCase("overlap-servernames", PORTMAP + "MDMatchNames servernames\n"
              "MDomain a.org www.a.org\nMDomain b.org www.a.org\n" + ssl_vhost(), True,
              [Expect("AH10045", "warn", fragments=("b.org",))], absent=["AH10038"],
              note="MDMatchNames servernames skips the overlap check"),
    StartCase("two-mds-ssl-vhost-own-cert", PORTMAP + "MDomain a.org\nMDomain www.a.org\n"
              + ssl_vhost(own_cert=True), False,
              [Expect("AH10238", "error", fragments=("2 MDs match Virtualhost a.org",)),
               Expect("AH10042", "error",
                      fragments=("2 MDs match to SSL VirtualHost a.org",))]),
    StartCase("two-mds-ssl-vhost-no-cert", PORTMAP + "MDomain a.org\nMDomain www.a.org\n"
              + ssl_vhost(), False,
              [Expect("AH10238", "error", fragments=("2 MDs match Virtualhost a.org",)),
               Expect("AH02572", "emerg", "ssl")],
              note="no MD contributes a cert, so mod_ssl ends the startup"),
    StartCase("members-manual-alias", PORTMAP + "MDomain a.org manual\n" + ssl_vhost(), True,
              [Expect("AH10040", "warn",
                      fragments=("Managed Domain 'a.org'", "alias www.a.org"))],
              note="C prints the vhost as 'a.org:0' (port 0)"),
    StartCase("members-auto-alias", PORTMAP + "MDomain a.org auto\n" + ssl_vhost(), True,
              [], absent=["AH10040", "[md:error]"]),
    StartCase("md-without-vhost", PORTMAP + "MDomain a.org\nMDomain b.org\n"
              + ssl_vhost(aliases=""), True,
              [Expect("AH10045", "warn", fragments=("Managed Domain b.org",))],
              absent=["Managed Domain a.org"]),
    StartCase("certfile-without-keyfile", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateFile @CERT@\n    MDCertificateFile @CERT@\n"
              "    MDCertificateKeyFile @KEY@\n</MDomain>\n" + ssl_vhost(aliases=""), False,
              [Expect("AH10170", "error", fragments=("'a.org'",))]),
    StartCase("keyfile-without-certfile", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateKeyFile @KEY@\n</MDomain>\n" + ssl_vhost(aliases=""), False,
              [Expect("AH10171", "error", fragments=("'a.org'",))]),
    StartCase("static-cert-files", PORTMAP + "<MDomain a.org>\n"
              "    MDCertificateFile @CERT@\n    MDCertificateKeyFile @KEY@\n</MDomain>\n"
              + ssl_vhost(aliases=""), True, [],
              absent=["[md:error]", "AH10085", "AH10170", "AH10171"]),
    StartCase("require-https-without-ssl-vhost", PORTMAP + "MDomain a.org\n"
              "MDRequireHttps temporary\n" + http_vhost(), True,
              [Expect("AH10105", "warn", fragments=("MD a.org",))]),
    StartCase("unknown-protocol", PORTMAP + "MDCertificateProtocol FOO\n"
              "MDomain a.org www.a.org\n" + ssl_vhost(), False,
              [Expect("uses unknown CA protocol 'FOO'", "error"),
               Expect("AH10172", "error", fragments=("md[a.org]",))]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_startup(httpd_factory, case: StartCase):
    srv = httpd_factory()
    srv.render(case.conf)
    try:
        res = srv.start(timeout=20)
        log = res.error_log.replace(str(srv.dir), "<DIR>")
        why = (f"\n--- config body ---\n{srv.substitute(case.conf)}\n--- error log ---\n{log}"
               f"\n--- httpd output ---\n{res.output}")
        assert not res.timed_out, f"httpd neither started nor exited within 20s{why}"
        if case.starts:
            assert res.started, f"expected a successful start, exit code {res.exit_code}{why}"
        else:
            assert not res.started, f"expected startup to fail{why}"
            assert res.exit_code not in (None, 0), f"expected a non-zero exit{why}"
        lines = log.splitlines()
        for exp in case.expect:
            assert any(exp.matches(line) for line in lines), f"missing log line {exp}{why}"
        for text in case.absent:
            assert text not in log, f"unexpected {text!r} in the error log{why}"
        if not case.starts:
            assert re.search(r"AH0001[6]|AH00020|AH02312", log + res.output), (
                f"startup failure without httpd's 'Configuration Failed'{why}")
    finally:
        srv.stop()
