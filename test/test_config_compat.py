"""Configuration compatibility: does ``apache2 -t`` accept or reject a snippet like C mod_md 2.6?

Every case is a config snippet (inserted into a self-contained httpd.conf, see lib/httpd.py),
the verdict of the C module (the truth, observed with Debian's mod_md.so), and for rejects:

* ``directive``: the directive the error is about, and
* ``msg``: a fragment of the C module's error text.

A reject passes when httpd exits non-zero and its output names the directive or carries the C
fragment (several C messages do not name the directive, e.g. 'unknown value, use
"auto|manual"'). The full C wording of every reject is recorded in compat/c_reject_messages.json
(made by compat/collect_c_messages.py); ``test_reject_wording_matches_c`` compares the message
of each module against it, so wording drift is reported separately from wrong verdicts.

Deliberate differences carry ``differs=`` (the reason) and ``rs_verdict=``: the C module is then
checked against ``verdict`` and our module against ``rs_verdict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from lib.cversion import C_FEATURES, c_has
from lib.httpd import HttpdServer, MdModule, syntax_error_message

ACCEPT, REJECT = "accept", "reject"
MESSAGES_FILE = Path(__file__).parent / "compat" / "c_reject_messages.json"


@dataclass
class Case:
    id: str
    conf: str
    verdict: str  # the C module's verdict
    directive: Optional[str] = None  # rejects: the directive the error is about
    msg: Optional[str] = None  # rejects: fragment of the C module's error text
    files: dict[str, str] = field(default_factory=dict)  # extra files, relative to server dir
    rs_verdict: Optional[str] = None  # only with differs=
    differs: Optional[str] = None  # reason for a deliberate difference
    note: Optional[str] = None  # C behaviour worth knowing (e.g. differs from SPEC.md)
    # verdict, directive and msg are the newest C module's (and ours); a C module without the
    # feature (lib/cversion.py C_FEATURES) does what `older` says instead
    older: Optional["Older"] = None

    def verdict_for(self, module: str) -> str:
        if module == "rs" and self.rs_verdict is not None:
            return self.rs_verdict
        if module == "c" and self.older and not c_has(self.older.feature):
            return self.older.verdict
        return self.verdict

    def msg_for(self, module: str) -> Optional[str]:
        if module == "c" and self.older and not c_has(self.older.feature):
            return self.older.msg
        return self.msg

    def __post_init__(self):
        assert self.verdict in (ACCEPT, REJECT)
        if self.verdict == REJECT:
            assert self.directive and self.msg, f"{self.id}: rejects need directive and msg"
        if self.rs_verdict is not None:
            assert self.differs, f"{self.id}: rs_verdict needs a differs= reason"


@dataclass
class Older:
    """What a C module without ``feature`` (see lib/cversion.py) does with a case."""

    feature: str
    verdict: str
    msg: Optional[str] = None  # rejects: fragment of that C module's error text

    def __post_init__(self):
        assert self.feature in C_FEATURES, self.feature
        assert self.verdict == ACCEPT or self.msg


def vhost(body: str, name: str = "v.example.org") -> str:
    return (f"<VirtualHost 127.0.0.1:@HTTP_PORT@>\n    ServerName {name}\n{body}\n"
            f"</VirtualHost>")


def section(body: str, names: str = "a.org www.a.org", tag: str = "MDomain") -> str:
    return f"<{tag} {names}>\n{body}\n</{tag}>"


def directory(body: str) -> str:
    return f'<Directory "@DIR@/htdocs">\n{body}\n</Directory>'


def location(body: str) -> str:
    return f"<Location /x>\n{body}\n</Location>"


ON_OFF = "supported parameter values are 'on' and 'off'"
NOT_IN_SECTION = "is not allowed inside an '<MDomainSet' context"
ONLY_IN_SECTION = "is only valid inside a '<MDomainSet' context, not here"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


CASES: list[Case] = [
    # ---------------------------------------------------------------- MDomain
    Case("mdomain-one", "MDomain a.org", ACCEPT),
    Case("mdomain-names-auto", "MDomain a.org www.a.org auto", ACCEPT),
    Case("mdomain-names-manual", "MDomain a.org www.a.org manual", ACCEPT),
    Case("mdomain-wildcard", "MDomain a.org *.a.org", ACCEPT),
    Case("mdomain-uppercase-dup", "MDomain A.org a.ORG www.a.org", ACCEPT),
    Case("mdomain-repeated", "MDomain a.org\nMDomain b.org", ACCEPT),
    Case("mdomain-invalid-name", "MDomain a.org invalid!.x.org", ACCEPT,
         note="no DNS syntax check in C: the CA refuses the name ('malformed')"),
    Case("mdomain-odd-names", "MDomain a.org a..org -a.org x.*.org 1.2.3.4 .a.org", ACCEPT),
    Case("mdmember-invalid-name", section("MDMember invalid!.a.org"), ACCEPT),
    Case("mdomain-no-args", "MDomain", REJECT, "MDomain", "needs at least one domain name"),
    Case("mdomain-in-vhost", vhost("    MDomain a.org"), ACCEPT),
    Case("mdomain-in-directory", directory("MDomain a.org"), REJECT, "MDomain",
         "MDomain not allowed in <Directory> context"),
    Case("mdomain-in-location", location("MDomain a.org"), REJECT, "MDomain",
         "MDomain not allowed in <Location> context"),
    Case("mdomain-in-section", section("MDomain b.org"), REJECT, "MDomain",
         "MDomain " + NOT_IN_SECTION),
    # ---------------------------------------------------------------- <MDomain>, <MDomainSet>
    Case("section-mdomain", section("MDMember c.a.org"), ACCEPT),
    Case("section-mdomainset", section("MDMember c.a.org", tag="MDomainSet"), ACCEPT),
    Case("section-quoted-names", section("", names='"a.org" "www.a.org"', tag="MDomainSet"),
         ACCEPT),
    Case("section-manual", section("MDRenewMode manual", names="a.org www.a.org manual"),
         ACCEPT),
    Case("section-in-vhost", vhost(section("    MDRenewMode always")), ACCEPT),
    Case("section-nested", section(section("", names="b.org")), REJECT, "<MDomain",
         "<MDomain " + NOT_IN_SECTION),
    Case("section-nested-set", section(section("", names="b.org", tag="MDomainSet")), REJECT,
         "<MDomainSet", "<MDomainSet " + NOT_IN_SECTION),
    Case("section-missing-gt", "<MDomain a.org\n</MDomain>", REJECT, "MDomain",
         "<MDomainSet> directive missing closing '>'"),
    Case("section-empty-name", "<MDomain>\n</MDomain>", REJECT, "MDomain",
         "section must specify a unique domain name"),
    Case("section-mismatched-end", "<MDomain a.org>\n</MDomainSet>", REJECT, "MDomain",
         "Expected </MDomain> but saw </MDomainSet>"),
    Case("section-in-directory", directory(section("")), REJECT, "MDomain",
         "<MDomain not allowed in <Directory> context"),
    Case("sectionset-in-location", location(section("", tag="MDomainSet")), REJECT,
         "MDomainSet", "<MDomainSet not allowed in <Location> context"),
    # ---------------------------------------------------------------- MDMember(s)
    Case("member-in-section-names", section("MDMember c.a.org d.a.org"), ACCEPT),
    Case("member-in-section-mixed", section("MDMember c.a.org auto"), ACCEPT),
    Case("member-outside-auto", "MDMember auto", ACCEPT),
    Case("member-outside-name", "MDMember a.org", REJECT, "MDMember",
         'unknown value, use "auto|manual"'),
    Case("member-no-args", "MDMember", REJECT, "MDMember", "MDMember " + ONLY_IN_SECTION,
         note="without arguments C reports the S-only error"),
    Case("members-auto", "MDMembers auto", ACCEPT),
    Case("members-manual", "MDMembers manual", ACCEPT),
    Case("members-in-section-manual", section("MDMembers manual"), ACCEPT),
    Case("members-bad", "MDMembers sometimes", REJECT, "MDMembers",
         'unknown value, use "auto|manual"'),
    # ---------------------------------------------------------------- MDCertificateAuthority
    Case("ca-url", "MDCertificateAuthority https://ca.example.org/directory", ACCEPT),
    Case("ca-two-urls",
         "MDCertificateAuthority https://a.example.org/dir https://b.example.org/dir", ACCEPT),
    Case("ca-letsencrypt", "MDCertificateAuthority LetsEncrypt", ACCEPT),
    Case("ca-letsencrypt-test-lower", "MDCertificateAuthority letsencrypt-test", ACCEPT),
    Case("ca-buypass-upper", "MDCertificateAuthority BUYPASS", ACCEPT),
    Case("ca-buypass-test-mixed", "MDCertificateAuthority Buypass-Test LetsEncrypt", ACCEPT),
    Case("ca-in-section", section("MDCertificateAuthority letsencrypt-test"), ACCEPT),
    Case("ca-in-vhost", vhost("    MDCertificateAuthority buypass"), ACCEPT),
    Case("ca-bad-name", "MDCertificateAuthority not-a-ca", REJECT, "MDCertificateAuthority",
         "The CA name 'not-a-ca' is not known and it is not a URL either"),
    Case("ca-no-args", "MDCertificateAuthority", ACCEPT,
         note="an ITERATE directive without arguments is silently accepted"),
    Case("ca-in-directory", directory("MDCertificateAuthority letsencrypt"), REJECT,
         "MDCertificateAuthority", "not allowed in <Directory> context"),
    # ---------------------------------------------------------------- protocol, agreement
    Case("protocol-acme", "MDCertificateProtocol ACME", ACCEPT),
    Case("protocol-unknown", "MDCertificateProtocol FOO", ACCEPT,
         note="unknown protocols are only reported at startup sync"),
    Case("protocol-in-section", section("MDCertificateProtocol ACME"), ACCEPT),
    Case("agreement-accepted", "MDCertificateAgreement accepted", ACCEPT),
    Case("agreement-url", "MDCertificateAgreement https://ca.example.org/tos.pdf", ACCEPT),
    Case("agreement-word", "MDCertificateAgreement yes", ACCEPT,
         note="SPEC says non-'accepted' values must be absolute URIs; C accepts any word"),
    Case("agreement-no-args", "MDCertificateAgreement", REJECT, "MDCertificateAgreement",
         "MDCertificateAgreement takes one argument"),
    Case("agreement-in-section", section("MDCertificateAgreement accepted"), ACCEPT),
    # ---------------------------------------------------------------- contact, EAB
    Case("contact-email", "MDContactEmail admin@a.org", ACCEPT),
    Case("contact-mailto", "MDContactEmail mailto:admin@a.org", ACCEPT),
    Case("contact-in-section", section("MDContactEmail admin@a.org"), ACCEPT),
    Case("contact-no-args", "MDContactEmail", REJECT, "MDContactEmail",
         "MDContactEmail takes one argument"),
    Case("eab-inline", f"MDExternalAccountBinding kid-1 {EAB_HMAC}", ACCEPT),
    Case("eab-none", "MDExternalAccountBinding none", ACCEPT),
    Case("eab-none-upper", "MDExternalAccountBinding NONE", ACCEPT),
    Case("eab-json-good", "MDExternalAccountBinding conf/eab.json", ACCEPT,
         files={"conf/eab.json": json.dumps({"kid": "kid-1", "hmac": EAB_HMAC})}),
    Case("eab-json-abs-in-section", section('MDExternalAccountBinding "@DIR@/conf/eab.json"'),
         ACCEPT, files={"conf/eab.json": json.dumps({"kid": "kid-1", "hmac": EAB_HMAC})}),
    Case("eab-json-missing-file", "MDExternalAccountBinding conf/missing.json", REJECT,
         "MDExternalAccountBinding", "MDExternalAccountBinding: file not found"),
    Case("eab-json-not-json", "MDExternalAccountBinding conf/eab.json", REJECT,
         "MDExternalAccountBinding", "MDExternalAccountBinding: error reading JSON file",
         files={"conf/eab.json": "kid=kid-1 hmac=abc\n"}),
    Case("eab-json-no-hmac", "MDExternalAccountBinding conf/eab.json", REJECT,
         "MDExternalAccountBinding",
         "MDExternalAccountBinding: JSON does not contain 'hmac' element",
         files={"conf/eab.json": json.dumps({"kid": "kid-1"})}),
    Case("eab-json-no-kid", "MDExternalAccountBinding conf/eab.json", REJECT,
         "MDExternalAccountBinding",
         "MDExternalAccountBinding: JSON does not contain 'kid' element",
         files={"conf/eab.json": json.dumps({"hmac": EAB_HMAC})}),
    Case("eab-three-args", "MDExternalAccountBinding a b c", REJECT, "MDExternalAccountBinding",
         "MDExternalAccountBinding takes 1-2 arguments"),
    # ---------------------------------------------------------------- challenges, profiles
    Case("challenges-list", "MDCAChallenges http-01 tls-alpn-01 dns-01", ACCEPT),
    Case("challenges-unknown", "MDCAChallenges bogus-01", ACCEPT,
         note="challenge types are not validated at config time"),
    Case("challenges-in-section", section("MDCAChallenges dns-01"), ACCEPT),
    Case("challenges-no-args", "MDCAChallenges", ACCEPT,
         note="an ITERATE directive without arguments is silently accepted"),
    Case("profile", "MDProfile shortlived", ACCEPT),
    Case("profile-in-section", section("MDProfile classic"), ACCEPT),
    Case("profile-two-args", "MDProfile a b", REJECT, "MDProfile",
         "MDProfile takes one argument"),
    Case("profile-mandatory-on", "MDProfileMandatory on", ACCEPT),
    Case("profile-mandatory-in-section", section("MDProfileMandatory off"), ACCEPT),
    Case("profile-mandatory-bad", "MDProfileMandatory maybe", REJECT, "MDProfileMandatory",
         "unknown 'maybe', " + ON_OFF),
    Case("retry-failover", "MDRetryFailover 13", ACCEPT),
    Case("retry-failover-zero", "MDRetryFailover 0", REJECT, "MDRetryFailover",
         "invalid argument, must be a number > 0"),
    Case("retry-failover-junk", "MDRetryFailover junk", REJECT, "MDRetryFailover",
         "invalid argument, must be a number > 0"),
    Case("retry-failover-in-section", section("MDRetryFailover 3"), REJECT, "MDRetryFailover",
         "MDRetryFailover " + NOT_IN_SECTION),
    Case("retry-failover-in-vhost", vhost("    MDRetryFailover 3"), ACCEPT),
    # ---------------------------------------------------------------- MDRenewMode, MDDriveMode
    Case("renewmode-auto", "MDRenewMode auto", ACCEPT),
    Case("renewmode-always", "MDRenewMode always", ACCEPT),
    Case("renewmode-manual", "MDRenewMode manual", ACCEPT),
    Case("renewmode-automatic", "MDRenewMode automatic", ACCEPT),
    Case("renewmode-stick", "MDRenewMode stick", ACCEPT),
    Case("renewmode-upper", "MDRenewMode ALWAYS", ACCEPT),
    Case("renewmode-in-section", section("MDRenewMode manual"), ACCEPT),
    Case("renewmode-bad", "MDRenewMode sometimes", REJECT, "MDRenewMode",
         "unknown MDDriveMode sometimes"),
    Case("drivemode-auto", "MDDriveMode auto", ACCEPT),
    Case("drivemode-manual-in-section", section("MDDriveMode manual"), ACCEPT),
    Case("drivemode-bad", "MDDriveMode sometimes", REJECT, "MDDriveMode",
         "unknown MDDriveMode sometimes"),
    # ---------------------------------------------------------------- windows
    Case("renewwindow-percent", "MDRenewWindow 33%", ACCEPT),
    Case("renewwindow-days", "MDRenewWindow 21d", ACCEPT),
    Case("renewwindow-bare", "MDRenewWindow 30", ACCEPT),
    Case("renewwindow-hours", "MDRenewWindow 12h", ACCEPT),
    Case("renewwindow-minutes-mi", "MDRenewWindow 30mi", ACCEPT),
    Case("renewwindow-negative", "MDRenewWindow -5d", ACCEPT,
         note="C accepts a negative window"),
    Case("renewwindow-in-section", section("MDRenewWindow 10d"), ACCEPT),
    Case("renewwindow-100", "MDRenewWindow 100%", REJECT, "MDRenewWindow",
         "MDRenewWindow a length of 100% or more is not allowed."),
    Case("renewwindow-120", "MDRenewWindow 120%", REJECT, "MDRenewWindow",
         "MDRenewWindow a length of 100% or more is not allowed."),
    Case("renewwindow-junk", "MDRenewWindow soon", REJECT, "MDRenewWindow",
         "MDRenewWindow has unrecognized format"),
    Case("renewwindow-m-unit", "MDRenewWindow 10m", REJECT, "MDRenewWindow",
         "MDRenewWindow has unrecognized format"),
    Case("warnwindow-percent", "MDWarnWindow 10%", ACCEPT),
    Case("warnwindow-days", "MDWarnWindow 7d", ACCEPT),
    Case("warnwindow-in-section", section("MDWarnWindow 5%"), ACCEPT),
    Case("warnwindow-junk", "MDWarnWindow junk", REJECT, "MDWarnWindow",
         "MDWarnWindow has unrecognized format"),
    Case("warnwindow-100", "MDWarnWindow 100%", REJECT, "MDWarnWindow",
         "MDWarnWindow a length of 100% or more is not allowed."),
    Case("ari-off", "MDRenewViaARI off", ACCEPT),
    Case("ari-in-section", section("MDRenewViaARI on"), ACCEPT),
    Case("ari-bad", "MDRenewViaARI maybe", REJECT, "MDRenewViaARI",
         "unknown 'maybe', " + ON_OFF),
    # ---------------------------------------------------------------- timing (NOT-S)
    Case("checkinterval", "MDCheckInterval 12h", ACCEPT),
    Case("checkinterval-bare", "MDCheckInterval 90", ACCEPT),
    Case("checkinterval-zero", "MDCheckInterval 0", REJECT, "MDCheckInterval",
         "check interval cannot be less than one second"),
    Case("checkinterval-ms", "MDCheckInterval 500ms", REJECT, "MDCheckInterval",
         "check interval cannot be less than one second"),
    Case("checkinterval-percent", "MDCheckInterval 50%", REJECT, "MDCheckInterval",
         "unrecognized duration format"),
    Case("checkinterval-in-section", section("MDCheckInterval 1h"), REJECT, "MDCheckInterval",
         "MDCheckInterval " + NOT_IN_SECTION),
    Case("initialdelay", "MDInitialDelay 10s", ACCEPT),
    Case("initialdelay-zero", "MDInitialDelay 0", ACCEPT),
    Case("initialdelay-m-unit", "MDInitialDelay 5m", REJECT, "MDInitialDelay",
         "unrecognized duration format"),
    Case("initialdelay-negative", "MDInitialDelay -1", REJECT, "MDInitialDelay",
         "initial delay must not be negative"),
    Case("initialdelay-in-section", section("MDInitialDelay 1s"), REJECT, "MDInitialDelay",
         "MDInitialDelay " + NOT_IN_SECTION),
    Case("retrydelay", "MDRetryDelay 30s", ACCEPT),
    Case("retrydelay-zero", "MDRetryDelay 0", REJECT, "MDRetryDelay",
         "minimum delay must be greater than 0"),
    Case("retrydelay-junk", "MDRetryDelay junk", REJECT, "MDRetryDelay",
         "unrecognized duration format"),
    Case("activationdelay", "MDActivationDelay 24h", ACCEPT),
    Case("activationdelay-junk", "MDActivationDelay junk", REJECT, "MDActivationDelay",
         "unrecognized duration format"),
    Case("activationdelay-in-section", section("MDActivationDelay 1d"), REJECT,
         "MDActivationDelay", "MDActivationDelay " + NOT_IN_SECTION),
    Case("storelocks-on", "MDStoreLocks on", ACCEPT),
    Case("storelocks-off", "MDStoreLocks off", ACCEPT),
    Case("storelocks-duration", "MDStoreLocks 10s", ACCEPT),
    Case("storelocks-zero", "MDStoreLocks 0", ACCEPT),
    Case("storelocks-junk", "MDStoreLocks junk", REJECT, "MDStoreLocks",
         "neither 'on', 'off' or a duration specified"),
    Case("storelocks-in-section", section("MDStoreLocks on"), REJECT, "MDStoreLocks",
         "MDStoreLocks " + NOT_IN_SECTION),
    # ---------------------------------------------------------------- MDPrivateKeys
    Case("keys-default", "MDPrivateKeys Default", ACCEPT),
    Case("keys-rsa-3072", "MDPrivateKeys RSA 3072", ACCEPT),
    Case("keys-rsa4096", "MDPrivateKeys rsa4096", ACCEPT),
    Case("keys-secp384r1", "MDPrivateKeys secp384r1", ACCEPT),
    Case("keys-p256", "MDPrivateKeys P-256", ACCEPT),
    Case("keys-rsa-and-ec", "MDPrivateKeys RSA 2048 secp384r1 P-256", ACCEPT),
    Case("keys-x25519", "MDPrivateKeys X25519", ACCEPT),
    Case("keys-unknown-curve", "MDPrivateKeys foo", ACCEPT,
         note="unknown curve names are only detected at renewal"),
    Case("keys-rsa-bits-twice", "MDPrivateKeys RSA 2048 4096", ACCEPT,
         note="the second number is taken as a key spec (curve) named '4096'"),
    Case("keys-in-section", section("MDPrivateKeys secp256r1 rsa3072"), ACCEPT),
    Case("keys-rsa-1024", "MDPrivateKeys RSA 1024", REJECT, "MDPrivateKeys",
         "must be 2048 or higher in order to be considered safe."),
    Case("keys-rsa1024", "MDPrivateKeys rsa1024", REJECT, "MDPrivateKeys",
         "must be 2048 or higher"),
    Case("keys-default-plus", "MDPrivateKeys Default RSA", REJECT, "MDPrivateKeys",
         "'Default' allows no other parameter"),
    Case("keys-two-rsa", "MDPrivateKeys RSA secp384r1 RSA 4096", REJECT, "MDPrivateKeys",
         "two keys of type 'RSA' are not possible."),
    Case("keys-two-same-curve", "MDPrivateKeys P-256 P-256", REJECT, "MDPrivateKeys",
         "two keys of type 'P-256' are not possible."),
    Case("keys-no-args", "MDPrivateKeys", REJECT, "MDPrivateKeys",
         "needs to specify the private key type"),
    # ---------------------------------------------------------------- stapling of the cert
    Case("muststaple-on", "MDMustStaple on", ACCEPT),
    Case("muststaple-in-section", section("MDMustStaple off"), ACCEPT),
    Case("muststaple-bad", "MDMustStaple maybe", REJECT, "MDMustStaple",
         "unknown 'maybe', " + ON_OFF),
    # ---------------------------------------------------------------- static certificate files
    Case("certfile-in-section",
         section("MDCertificateFile conf/a.pem\nMDCertificateKeyFile conf/a.key"), ACCEPT,
         note="files are not checked at config time"),
    Case("certfile-two-in-section",
         section("MDCertificateFile conf/a.pem\nMDCertificateKeyFile conf/a.key\n"
                 "MDCertificateFile conf/b.pem\nMDCertificateKeyFile conf/b.key"), ACCEPT),
    Case("certfile-outside", "MDCertificateFile conf/a.pem", REJECT, "MDCertificateFile",
         "MDCertificateFile " + ONLY_IN_SECTION),
    Case("keyfile-outside", "MDCertificateKeyFile conf/a.key", REJECT, "MDCertificateKeyFile",
         "MDCertificateKeyFile " + ONLY_IN_SECTION),
    Case("certfile-in-vhost", vhost("    MDCertificateFile conf/a.pem"), REJECT,
         "MDCertificateFile", "MDCertificateFile " + ONLY_IN_SECTION),
    # ---------------------------------------------------------------- MDPortMap
    Case("portmap-names", "MDPortMap http:80 https:443", ACCEPT),
    Case("portmap-numbers", "MDPortMap 80:8080", ACCEPT),
    Case("portmap-https-unreachable", "MDPortMap https:-", ACCEPT),
    Case("portmap-both-numbers", "MDPortMap 80:8080 443:8443", ACCEPT),
    Case("portmap-bad-scheme", "MDPortMap ftp:21", REJECT, "MDPortMap",
         "no ':' after first port number"),
    Case("portmap-out-of-range", "MDPortMap http:99999", REJECT, "MDPortMap",
         "invalid number for port map, must be in ]0,65535]"),
    Case("portmap-zero", "MDPortMap http:0", REJECT, "MDPortMap",
         "invalid number for port map, must be in ]0,65535]"),
    Case("portmap-three", "MDPortMap http:80 https:443 http:81", REJECT, "MDPortMap",
         "MDPortMap takes 1-2 arguments"),
    Case("portmap-in-section", section("MDPortMap http:80"), REJECT, "MDPortMap",
         "MDPortMap " + NOT_IN_SECTION),
    # ---------------------------------------------------------------- dns-01
    Case("dns01-global", "MDChallengeDns01 /usr/local/bin/dns01.sh --flag", ACCEPT),
    Case("dns01-in-section", section("MDChallengeDns01 /usr/local/bin/dns01.sh"), ACCEPT),
    Case("dns01-in-vhost", vhost("    MDChallengeDns01 /usr/local/bin/dns01.sh"), ACCEPT),
    Case("dns01-no-args", "MDChallengeDns01", ACCEPT,
         note="raw-args directive: an empty command line is accepted"),
    Case("dns01-version-1", "MDChallengeDns01Version 1", ACCEPT),
    Case("dns01-version-2", "MDChallengeDns01Version 2", ACCEPT),
    Case("dns01-version-3", "MDChallengeDns01Version 3", REJECT, "MDChallengeDns01Version",
         "Only versions `1` and `2` are supported"),
    Case("dns01-version-in-section", section("MDChallengeDns01Version 2"), REJECT,
         "MDChallengeDns01Version", "MDChallengeDns01Version " + NOT_IN_SECTION),
    # ---------------------------------------------------------------- proxy, CA files
    Case("proxy-http", "MDHttpProxy http://proxy.example.org:3128", ACCEPT),
    Case("proxy-https-in-section", section("MDHttpProxy https://proxy.example.org"), ACCEPT,
         older=Older("per-md-proxy", REJECT, "MDHttpProxy " + NOT_IN_SECTION)),
    Case("proxy-no-scheme", "MDHttpProxy proxy.example.org", REJECT, "MDHttpProxy",
         "missing uri scheme"),
    Case("proxy-ftp", "MDHttpProxy ftp://proxy.example.org:21", REJECT, "MDHttpProxy",
         "uri scheme must be http or https"),
    Case("proxy-host-port-only", "MDHttpProxy localhost:8080", REJECT, "MDHttpProxy",
         "uri scheme must be http or https", note="'localhost' is parsed as the scheme"),
    Case("proxy-negative-port", "MDHttpProxy https://127.0.0.1:-443", REJECT, "MDHttpProxy",
         "invalid port"),
    Case("proxy-port-zero", "MDHttpProxy http://127.0.0.1:0", REJECT, "MDHttpProxy",
         "invalid port"),
    Case("proxy-port-65536", "MDHttpProxy http://127.0.0.1:65536", REJECT, "MDHttpProxy",
         "invalid port", note="C's 16-bit port: 65536 is 0"),
    Case("proxy-port-70000", "MDHttpProxy https://127.0.0.1:70000", ACCEPT,
         note="C's 16-bit port: 70000 is 4464"),
    Case("proxy-port-letters", "MDHttpProxy https://127.0.0.1:abc", REJECT, "MDHttpProxy",
         "not an uri"),
    Case("proxy-ipv6", "MDHttpProxy http://[::1]:3128", REJECT, "MDHttpProxy",
         "invalid hostname"),
    Case("proxy-underscore-host", "MDHttpProxy http://a_b.example.org", REJECT, "MDHttpProxy",
         "invalid hostname"),
    Case("proxy-no-authority", "MDHttpProxy http:proxy", REJECT, "MDHttpProxy",
         "missing hostname"),
    Case("proxy-scheme-only", "MDHttpProxy http:", REJECT, "MDHttpProxy",
         "missing uri identifier"),
    Case("proxy-whitespace", "MDHttpProxy 'http://a b'", REJECT, "MDHttpProxy",
         "whitespace in uri"),
    Case("proxy-upper-scheme-user", "MDHttpProxy HTTP://u:p@proxy.example.org:8/x?y", ACCEPT),
    Case("cacert-file", "MDCACertificateFile /etc/ssl/certs/ca-certificates.crt", ACCEPT),
    Case("cacert-none", "MDCACertificateFile none", ACCEPT),
    Case("cacert-missing-file", "MDCACertificateFile /nonexistent/ca.pem", ACCEPT,
         note="the file is not checked at config time"),
    Case("cacert-in-section", section("MDCACertificateFile conf/ca.pem"), ACCEPT),
    Case("proxy-cacert-file", "MDHttpProxyCACertificateFile conf/proxy-ca.pem", ACCEPT,
         older=Older("proxy-ca-file", REJECT,
                     "Invalid command 'MDHttpProxyCACertificateFile'")),
    Case("proxy-cacert-in-section", section("MDHttpProxyCACertificateFile none"), ACCEPT,
         older=Older("proxy-ca-file", REJECT,
                     "Invalid command 'MDHttpProxyCACertificateFile'")),
    # ---------------------------------------------------------------- MDRequireHttps
    Case("https-off", "MDRequireHttps off", ACCEPT),
    Case("https-temporary", "MDRequireHttps temporary", ACCEPT),
    Case("https-permanent", "MDRequireHttps permanent", ACCEPT),
    Case("https-in-section", section("MDRequireHttps permanent"), ACCEPT),
    Case("https-in-vhost", vhost("    MDRequireHttps temporary"), ACCEPT),
    Case("https-bad", "MDRequireHttps sometimes", REJECT, "MDRequireHttps",
         "unknown 'sometimes', supported parameter values are 'temporary' and 'permanent'"),
    Case("https-in-directory", directory("MDRequireHttps permanent"), REJECT, "MDRequireHttps",
         "MDRequireHttps cannot occur within <Directory> section"),
    Case("https-in-location", location("MDRequireHttps permanent"), REJECT, "MDRequireHttps",
         "MDRequireHttps cannot occur within <Location> section"),
    Case("https-in-if", '<If "true">\nMDRequireHttps permanent\n</If>', ACCEPT,
         note="sets the server's value, whatever the condition"),
    Case("https-in-else", '<If "false">\n</If>\n<Else>\nMDRequireHttps temporary\n</Else>',
         ACCEPT),
    Case("https-in-vhost-if", vhost('<If "true">\n    MDRequireHttps permanent\n</If>'),
         ACCEPT),
    Case("https-in-section-if", section('<If "false">\nMDRequireHttps permanent\n</If>'),
         ACCEPT),
    Case("https-in-files", "<Files x>\nMDRequireHttps permanent\n</Files>", ACCEPT),
    Case("https-bad-in-if", '<If "true">\nMDRequireHttps bogus\n</If>', REJECT,
         "MDRequireHttps",
         "unknown 'bogus', supported parameter values are 'temporary' and 'permanent'"),
    Case("https-in-if-limit", '<If "true">\n<Limit GET>\nMDRequireHttps permanent\n'
         '</Limit>\n</If>', REJECT, "MDRequireHttps",
         "MDRequireHttps cannot occur within <Limit> or <LimitExcept> section"),
    Case("https-in-location-if", location('<If "true">\nMDRequireHttps permanent\n</If>'),
         REJECT, "MDRequireHttps", "MDRequireHttps cannot occur within <Location> section"),
    Case("https-in-directorymatch", '<DirectoryMatch "/tmp">\nMDRequireHttps permanent\n'
         '</DirectoryMatch>', REJECT, "MDRequireHttps",
         "MDRequireHttps cannot occur within <DirectoryMatch> section"),
    # ---------------------------------------------------------------- commands
    Case("notifycmd", "MDNotifyCmd /usr/local/bin/notify arg", ACCEPT),
    Case("notifycmd-in-section", section("MDNotifyCmd /bin/true"), REJECT, "MDNotifyCmd",
         "MDNotifyCmd " + NOT_IN_SECTION),
    Case("messagecmd", "MDMessageCmd /usr/local/bin/message", ACCEPT),
    Case("messagecmd-in-vhost", vhost("    MDMessageCmd /bin/true"), ACCEPT),
    Case("messagecmd-in-section", section("MDMessageCmd /bin/true"), REJECT, "MDMessageCmd",
         "MDMessageCmd " + NOT_IN_SECTION),
    # ---------------------------------------------------------------- status
    Case("serverstatus-on", "MDServerStatus on", ACCEPT),
    Case("serverstatus-bad", "MDServerStatus maybe", REJECT, "MDServerStatus",
         "unknown 'maybe', " + ON_OFF),
    Case("certstatus-off", "MDCertificateStatus off", ACCEPT),
    Case("certstatus-bad", "MDCertificateStatus maybe", REJECT, "MDCertificateStatus",
         "unknown 'maybe', " + ON_OFF),
    Case("certcheck", "MDCertificateCheck crt.sh https://crt.sh?q=", ACCEPT),
    Case("certcheck-one-arg", "MDCertificateCheck crt.sh", REJECT, "MDCertificateCheck",
         "MDCertificateCheck takes two arguments"),
    Case("certmonitor-unknown", "MDCertificateMonitor crt.sh https://crt.sh?q=", REJECT,
         "MDCertificateMonitor", "Invalid command 'MDCertificateMonitor'",
         note="documented name, never registered: keep C behaviour (reject)"),
    # ---------------------------------------------------------------- OCSP stapling
    Case("stapling-on", "MDStapling on", ACCEPT),
    Case("stapling-in-section", section("MDStapling on"), ACCEPT),
    Case("stapling-bad", "MDStapling maybe", REJECT, "MDStapling",
         "unknown 'maybe', " + ON_OFF),
    Case("stapleothers-off", "MDStapleOthers off", ACCEPT),
    Case("stapleothers-bad", "MDStapleOthers maybe", REJECT, "MDStapleOthers", ON_OFF),
    Case("stapling-keep", "MDStaplingKeepResponse 7d", ACCEPT),
    Case("stapling-keep-percent", "MDStaplingKeepResponse 50%", ACCEPT),
    Case("stapling-keep-junk", "MDStaplingKeepResponse junk", REJECT,
         "MDStaplingKeepResponse", "MDStaplingKeepResponse has unrecognized format"),
    Case("stapling-renewwindow", "MDStaplingRenewWindow 33%", ACCEPT),
    Case("stapling-renewwindow-days", "MDStaplingRenewWindow 2d", ACCEPT),
    Case("stapling-renewwindow-100", "MDStaplingRenewWindow 100%", REJECT,
         "MDStaplingRenewWindow",
         "MDStaplingRenewWindow with a length of 100% or more is not allowed."),
    Case("stapling-renewwindow-junk", "MDStaplingRenewWindow junk", REJECT,
         "MDStaplingRenewWindow", "MDStaplingRenewWindow has unrecognized format"),
    # ---------------------------------------------------------------- store, matching, base
    Case("storedir-relative", "MDStoreDir md-store", ACCEPT),
    Case("storedir-in-section", section("MDStoreDir x"), REJECT, "MDStoreDir",
         "MDStoreDir " + NOT_IN_SECTION),
    Case("storedir-no-args", "MDStoreDir", REJECT, "MDStoreDir",
         "MDStoreDir takes one argument"),
    Case("matchnames-all", "MDMatchNames all", ACCEPT),
    Case("matchnames-servernames", "MDMatchNames servernames", ACCEPT),
    Case("matchnames-bad", "MDMatchNames aliases", REJECT, "MDMatchNames",
         "invalid argument, must be a 'all' or 'servernames'"),
    Case("matchnames-in-section", section("MDMatchNames all"), REJECT, "MDMatchNames",
         "MDMatchNames " + NOT_IN_SECTION),
    Case("baseserver-on", "MDBaseServer on", ACCEPT),
    Case("baseserver-bad", "MDBaseServer maybe", REJECT, "MDBaseServer",
         "unknown 'maybe', " + ON_OFF),
    Case("baseserver-in-section", section("MDBaseServer on"), REJECT, "MDBaseServer",
         "MDBaseServer " + NOT_IN_SECTION),
    # ---------------------------------------------------------------- other contexts
    Case("renewmode-in-if", '<If "true">\nMDRenewMode always\n</If>', REJECT, "MDRenewMode",
         "MDRenewMode not allowed in <If> context",
         note="SPEC 1 says <If> wrappers are tolerated; C rejects them at server level"),
    Case("renewmode-in-files", "<Files x>\nMDRenewMode always\n</Files>", REJECT,
         "MDRenewMode", "MDRenewMode not allowed in <Files> context"),
    Case("stapling-in-location", location("MDStapling on"), REJECT, "MDStapling",
         "MDStapling not allowed in <Location> context"),
    Case("vhost-many", vhost("    MDCertificateAgreement accepted\n    MDContactEmail a@a.org\n"
                             "    MDRenewWindow 20%\n    MDPrivateKeys secp384r1\n"
                             "    MDStapling on\n    MDCheckInterval 1h\n"
                             "    MDPortMap http:80"), ACCEPT),
    # ---------------------------------------------------------------- edge values
    Case("ca-url-no-scheme", "MDCertificateAuthority ca.example.org/dir", REJECT,
         "MDCertificateAuthority", "The CA name 'ca.example.org/dir' is not known"),
    Case("ca-bare-scheme", "MDCertificateAuthority http://", ACCEPT,
         note="an URL with scheme only is accepted"),
    Case("mdomain-only-mode", "MDomain auto", REJECT, "MDomain",
         "needs at least one domain name"),
    Case("mdomain-two-modes", "MDomain a.org auto manual", ACCEPT),
    Case("mdomain-wildcard-only", "MDomain *.a.org", ACCEPT),
    Case("mdomain-same-twice", "MDomain a.org\nMDomain a.org", ACCEPT),
    Case("contact-two-args", "MDContactEmail a@a.org b@a.org", REJECT, "MDContactEmail",
         "MDContactEmail takes one argument"),
    Case("agreement-ftp-url", "MDCertificateAgreement ftp://ca.example.org/tos", ACCEPT),
    Case("serverstatus-in-section", section("MDServerStatus on"), ACCEPT),
    Case("certstatus-in-section", section("MDCertificateStatus off"), ACCEPT),
    Case("certcheck-in-section", section("MDCertificateCheck x https://x.example.org/?q="),
         ACCEPT),
    Case("stapleothers-in-section", section("MDStapleOthers off"), ACCEPT),
    Case("stapling-keep-in-section", section("MDStaplingKeepResponse 2d"), ACCEPT),
    Case("stapling-renewwindow-in-section", section("MDStaplingRenewWindow 2d"), ACCEPT),
    Case("stapling-keep-100", "MDStaplingKeepResponse 100%", ACCEPT,
         note="unlike the window directives, 100% is accepted here"),
    Case("retrydelay-in-section", section("MDRetryDelay 5s"), REJECT, "MDRetryDelay",
         "MDRetryDelay " + NOT_IN_SECTION),
    Case("vhost-not-s-directives", vhost("    MDStoreDir x\n    MDMatchNames servernames\n"
                                         "    MDBaseServer on\n    MDInitialDelay 1s"), ACCEPT),
    Case("renewwindow-99", "MDRenewWindow 99%", ACCEPT),
    Case("warnwindow-zero", "MDWarnWindow 0", ACCEPT),
    Case("https-off-upper", "MDRequireHttps OFF", ACCEPT),
    Case("muststaple-upper", "MDMustStaple ON", ACCEPT),
    Case("storelocks-negative", "MDStoreLocks -1", ACCEPT,
         note="a negative duration is accepted"),
    Case("retry-failover-trailing-junk", "MDRetryFailover 1x", ACCEPT,
         note="the number is parsed atoi-style, trailing junk ignored"),
    Case("dns01-version-0", "MDChallengeDns01Version 0", REJECT, "MDChallengeDns01Version",
         "Only versions `1` and `2` are supported"),
    Case("keys-rsa-2047", "MDPrivateKeys RSA 2047", REJECT, "MDPrivateKeys",
         "must be 2048 or higher in order to be considered safe."),
    Case("keys-rsa-bare", "MDPrivateKeys rsa", ACCEPT),
    Case("keys-rsa-trailing-junk", "MDPrivateKeys rsa2048x", ACCEPT,
         note="unparsable RSA<bits> is taken as a curve name"),
    Case("cacert-no-args", "MDCACertificateFile", REJECT, "MDCACertificateFile",
         "MDCACertificateFile takes one argument"),
    # ---------------------------------------------------------------- sweep: odd values
    # one more case per directive (errors, odd values, case, contexts), C's verdicts
    Case("mdomain-mode-upper", "MDomain a.org AUTO", ACCEPT),
    Case("section-only-mode", "<MDomain manual>\n</MDomain>", ACCEPT,
         note="one word in a section is a name: defines the MD 'manual' (MDomain manual: error)"),
    Case("section-in-if", '<If "true">\n<MDomain a.org>\n</MDomain>\n</If>', REJECT, "MDomain",
         '<MDomain not allowed in <If> context'),
    Case("member-outside-manual", "MDMember manual", ACCEPT),
    Case("member-in-section-no-args", section("MDMember"), ACCEPT),
    Case("members-upper", "MDMembers AUTO", ACCEPT),
    Case("members-two-outside", "MDMembers auto manual", REJECT, "MDMembers",
         "MDMembers is only valid inside a '<MDomainSet' context, not here"),
    Case("matchnames-upper", "MDMatchNames SERVERNAMES", ACCEPT),
    Case("matchnames-no-args", "MDMatchNames", REJECT, "MDMatchNames",
         'MDMatchNames takes one argument'),
    Case("baseserver-no-args", "MDBaseServer", REJECT, "MDBaseServer",
         'MDBaseServer takes one argument'),
    Case("baseserver-mixed-case", "MDBaseServer On", ACCEPT),
    Case("ca-url-and-name", "MDCertificateAuthority https://a.example.org/dir letsencrypt",
         ACCEPT),
    Case("ca-empty", 'MDCertificateAuthority ""', ACCEPT),
    Case("protocol-no-args", "MDCertificateProtocol", REJECT, "MDCertificateProtocol",
         'MDCertificateProtocol takes one argument'),
    Case("protocol-lower", "MDCertificateProtocol acme", ACCEPT),
    Case("agreement-upper", "MDCertificateAgreement ACCEPTED", ACCEPT),
    Case("agreement-two-args", "MDCertificateAgreement accepted yes", REJECT,
         "MDCertificateAgreement",
         'MDCertificateAgreement takes one argument'),
    Case("contact-not-email", "MDContactEmail not-an-email", ACCEPT),
    Case("contact-empty", 'MDContactEmail ""', REJECT, "MDContactEmail",
         'MDContactEmail takes one argument'),
    Case("eab-no-args", "MDExternalAccountBinding", REJECT, "MDExternalAccountBinding",
         'MDExternalAccountBinding takes 1-2 arguments'),
    Case("eab-json-array", "MDExternalAccountBinding conf/eab.json", REJECT,
         "MDExternalAccountBinding",
         "MDExternalAccountBinding: JSON does not contain 'kid' element in file",
         files={"conf/eab.json": json.dumps([{"kid": "k", "hmac": "h"}])}),
    Case("eab-json-kid-number", "MDExternalAccountBinding conf/eab.json", REJECT,
         "MDExternalAccountBinding",
         "MDExternalAccountBinding: JSON does not contain 'kid' element in file",
         files={"conf/eab.json": json.dumps({"kid": 5, "hmac": "aGVsbG8"})}),
    Case("challenges-upper", "MDCAChallenges HTTP-01", ACCEPT),
    Case("challenges-in-vhost", vhost("    MDCAChallenges http-01"), ACCEPT),
    Case("profile-no-args", "MDProfile", REJECT, "MDProfile",
         'MDProfile takes one argument'),
    Case("profile-in-vhost", vhost("    MDProfile shortlived"), ACCEPT),
    Case("profile-mandatory-no-args", "MDProfileMandatory", REJECT, "MDProfileMandatory",
         'MDProfileMandatory takes one argument'),
    Case("profile-mandatory-upper", "MDProfileMandatory ON", ACCEPT),
    Case("retry-failover-negative", "MDRetryFailover -1", REJECT, "MDRetryFailover",
         'invalid argument, must be a number > 0'),
    Case("retry-failover-huge", "MDRetryFailover 99999999999", ACCEPT),
    Case("renewmode-no-args", "MDRenewMode", REJECT, "MDRenewMode",
         'MDRenewMode takes one argument'),
    Case("renewmode-stick-mixed", "MDRenewMode Stick", ACCEPT),
    Case("drivemode-in-vhost", vhost("    MDDriveMode always"), ACCEPT),
    Case("renewwindow-0-percent", "MDRenewWindow 0%", ACCEPT),
    Case("renewwindow-fraction-percent", "MDRenewWindow 33.5%", REJECT, "MDRenewWindow",
         'MDRenewWindow has unrecognized format'),
    Case("renewwindow-compound", "MDRenewWindow 1d12h", ACCEPT,
         note="the unit is read from its first letters: 1d12h is 1d, 5sec is 5s"),
    Case("renewwindow-ms", "MDRenewWindow 100ms", ACCEPT),
    Case("renewwindow-seconds", "MDRenewWindow 10s", ACCEPT),
    Case("renewwindow-negative-percent", "MDRenewWindow -5%", REJECT, "MDRenewWindow",
         'MDRenewWindow percent must be less than 100'),
    Case("renewwindow-percent-only", "MDRenewWindow %", ACCEPT),
    Case("renewwindow-two-args", "MDRenewWindow 5 d", REJECT, "MDRenewWindow",
         'MDRenewWindow takes one argument'),
    Case("renewwindow-upper-unit", "MDRenewWindow 5D", ACCEPT),
    Case("renewwindow-space-percent", "MDRenewWindow '33 %'", REJECT, "MDRenewWindow",
         'MDRenewWindow has unrecognized format'),
    Case("warnwindow-99", "MDWarnWindow 99%", ACCEPT),
    Case("warnwindow-negative-percent", "MDWarnWindow -1%", REJECT, "MDWarnWindow",
         'MDWarnWindow percent must be less than 100'),
    Case("warnwindow-fraction-days", "MDWarnWindow 1.5d", REJECT, "MDWarnWindow",
         'MDWarnWindow has unrecognized format'),
    Case("warnwindow-0-percent", "MDWarnWindow 0%", ACCEPT),
    Case("warnwindow-no-args", "MDWarnWindow", REJECT, "MDWarnWindow",
         'MDWarnWindow takes one argument'),
    Case("ari-no-args", "MDRenewViaARI", REJECT, "MDRenewViaARI",
         'MDRenewViaARI takes one argument'),
    Case("ari-upper", "MDRenewViaARI OFF", ACCEPT),
    Case("checkinterval-one", "MDCheckInterval 1", ACCEPT),
    Case("checkinterval-days", "MDCheckInterval 1d", ACCEPT),
    Case("checkinterval-negative", "MDCheckInterval -5", REJECT, "MDCheckInterval",
         'check interval cannot be less than one second'),
    Case("checkinterval-mi", "MDCheckInterval 10mi", ACCEPT),
    Case("checkinterval-1000ms", "MDCheckInterval 1000ms", ACCEPT),
    Case("initialdelay-days", "MDInitialDelay 1d", ACCEPT),
    Case("initialdelay-ms", "MDInitialDelay 100ms", ACCEPT),
    Case("initialdelay-junk", "MDInitialDelay junk", REJECT, "MDInitialDelay",
         'unrecognized duration format'),
    Case("initialdelay-percent", "MDInitialDelay 10%", REJECT, "MDInitialDelay",
         'unrecognized duration format'),
    Case("retrydelay-negative", "MDRetryDelay -1", REJECT, "MDRetryDelay",
         'minimum delay must be greater than 0'),
    Case("retrydelay-1ms", "MDRetryDelay 1ms", ACCEPT),
    Case("retrydelay-days", "MDRetryDelay 5d", ACCEPT),
    Case("retrydelay-percent", "MDRetryDelay 10%", REJECT, "MDRetryDelay",
         'unrecognized duration format'),
    Case("activationdelay-zero", "MDActivationDelay 0", ACCEPT),
    Case("activationdelay-negative", "MDActivationDelay -1d", ACCEPT,
         note="a negative delay is accepted (no delay)"),
    Case("activationdelay-bare", "MDActivationDelay 12", ACCEPT),
    Case("activationdelay-percent", "MDActivationDelay 10%", REJECT, "MDActivationDelay",
         'unrecognized duration format'),
    Case("storelocks-upper", "MDStoreLocks ON", ACCEPT),
    Case("storelocks-mi", "MDStoreLocks 5mi", ACCEPT),
    Case("storelocks-percent", "MDStoreLocks 10%", REJECT, "MDStoreLocks",
         "neither 'on', 'off' or a duration specified"),
    Case("keys-rsa-then-rsa", "MDPrivateKeys RSA 2048 RSA", REJECT, "MDPrivateKeys",
         "two keys of type 'RSA' are not possible."),
    Case("keys-rsa-8192", "MDPrivateKeys rsa 8192", ACCEPT),
    Case("keys-rsa-zero", "MDPrivateKeys RSA 0", REJECT, "MDPrivateKeys",
         'must be 2048 or higher in order to be considered safe.'),
    Case("keys-rsa-negative", "MDPrivateKeys RSA -1", ACCEPT),
    Case("keys-p256-alias-twice", "MDPrivateKeys P-256 secp256r1", ACCEPT),
    Case("keys-rsa3072-and-rsa", "MDPrivateKeys rsa3072 RSA", REJECT, "MDPrivateKeys",
         "two keys of type 'RSA' are not possible."),
    Case("keys-default-lower", "MDPrivateKeys default", ACCEPT),
    Case("keys-ec-before-rsa", "MDPrivateKeys secp384r1 RSA 4096", ACCEPT),
    Case("keys-curve-upper", "MDPrivateKeys SECP384R1", ACCEPT),
    Case("muststaple-no-args", "MDMustStaple", REJECT, "MDMustStaple",
         'MDMustStaple takes one argument'),
    Case("muststaple-in-vhost", vhost("    MDMustStaple on"), ACCEPT),
    Case("certfile-no-args", section("MDCertificateFile"), REJECT, "MDCertificateFile",
         'MDCertificateFile takes one argument'),
    Case("keyfile-in-vhost", vhost("    MDCertificateKeyFile conf/a.key"), REJECT,
         "MDCertificateKeyFile",
         "MDCertificateKeyFile is only valid inside a '<MDomainSet' context, not here"),
    Case("portmap-http-unreachable", "MDPortMap http:-", ACCEPT),
    Case("portmap-reversed-order", "MDPortMap https:443 http:80", ACCEPT),
    Case("portmap-no-colon", "MDPortMap 80", REJECT, "MDPortMap",
         "no ':' after first port number"),
    Case("portmap-empty-local", "MDPortMap 80:", REJECT, "MDPortMap",
         'invalid number for port map, must be in ]0,65535]'),
    Case("portmap-two-colons", "MDPortMap http:80:81", ACCEPT,
         note="ports are leading numbers: http:80:81 maps to 80, 443:-1 is unreachable"),
    Case("portmap-upper-name", "MDPortMap HTTP:80", REJECT, "MDPortMap",
         "no ':' after first port number"),
    Case("portmap-negative", "MDPortMap 443:-1", ACCEPT),
    Case("portmap-other-port", "MDPortMap 8080:80", REJECT, "MDPortMap",
         'mapped port number must be 80 or 443'),
    Case("portmap-max", "MDPortMap http:65535", ACCEPT),
    Case("portmap-trailing-junk", "MDPortMap http:8080x", ACCEPT),
    Case("portmap-no-args", "MDPortMap", REJECT, "MDPortMap",
         'MDPortMap takes 1-2 arguments'),
    Case("dns01-quoted", 'MDChallengeDns01 "/usr/local/bin/dns 01.sh" arg', ACCEPT),
    Case("dns01-version-trailing-junk", "MDChallengeDns01Version 2x", REJECT,
         "MDChallengeDns01Version",
         'Only versions `1` and `2` are supported'),
    Case("dns01-version-no-args", "MDChallengeDns01Version", REJECT, "MDChallengeDns01Version",
         'MDChallengeDns01Version takes one argument'),
    Case("dns01-version-negative", "MDChallengeDns01Version -1", REJECT, "MDChallengeDns01Version",
         'Only versions `1` and `2` are supported'),
    Case("proxy-path", "MDHttpProxy http://proxy.example.org:3128/path", ACCEPT),
    Case("proxy-ip", "MDHttpProxy http://127.0.0.1", ACCEPT),
    Case("proxy-no-args", "MDHttpProxy", REJECT, "MDHttpProxy",
         'MDHttpProxy takes one argument'),
    Case("proxy-in-vhost", vhost("    MDHttpProxy http://proxy.example.org"), ACCEPT),
    Case("cacert-in-vhost", vhost("    MDCACertificateFile conf/ca.pem"), ACCEPT),
    Case("cacert-two-args", "MDCACertificateFile a.pem b.pem", REJECT, "MDCACertificateFile",
         'MDCACertificateFile takes one argument'),
    Case("cacert-none-upper", "MDCACertificateFile NONE", ACCEPT),
    Case("proxy-cacert-no-args", "MDHttpProxyCACertificateFile", REJECT,
         "MDHttpProxyCACertificateFile", 'MDHttpProxyCACertificateFile takes one argument',
         older=Older("proxy-ca-file", REJECT,
                     "Invalid command 'MDHttpProxyCACertificateFile'")),
    Case("proxy-cacert-in-vhost", vhost("    MDHttpProxyCACertificateFile conf/p.pem"), ACCEPT,
         older=Older("proxy-ca-file", REJECT,
                     "Invalid command 'MDHttpProxyCACertificateFile'")),
    Case("https-no-args", "MDRequireHttps", REJECT, "MDRequireHttps",
         'MDRequireHttps takes one argument'),
    Case("https-upper", "MDRequireHttps PERMANENT", ACCEPT),
    Case("https-on", "MDRequireHttps on", REJECT, "MDRequireHttps",
         "unknown 'on', supported parameter values are 'temporary' and 'permanent'"),
    Case("notifycmd-no-args", "MDNotifyCmd", ACCEPT),
    Case("notifycmd-in-vhost", vhost("    MDNotifyCmd /bin/true"), ACCEPT),
    Case("messagecmd-no-args", "MDMessageCmd", ACCEPT),
    Case("messagecmd-empty-quoted", 'MDMessageCmd ""', ACCEPT),
    Case("serverstatus-no-args", "MDServerStatus", REJECT, "MDServerStatus",
         'MDServerStatus takes one argument'),
    Case("serverstatus-in-vhost", vhost("    MDServerStatus on"), ACCEPT),
    Case("serverstatus-upper", "MDServerStatus ON", ACCEPT),
    Case("certstatus-in-vhost", vhost("    MDCertificateStatus off"), ACCEPT),
    Case("certstatus-mixed", "MDCertificateStatus Off", ACCEPT),
    Case("certstatus-no-args", "MDCertificateStatus", REJECT, "MDCertificateStatus",
         'MDCertificateStatus takes one argument'),
    Case("certcheck-three-args", "MDCertificateCheck a https://a/?q= x", REJECT,
         "MDCertificateCheck",
         'MDCertificateCheck takes two arguments'),
    Case("certcheck-in-vhost", vhost("    MDCertificateCheck a https://a/?q="), ACCEPT),
    Case("certcheck-not-url", "MDCertificateCheck a b", ACCEPT),
    Case("stapling-in-vhost", vhost("    MDStapling on"), ACCEPT),
    Case("stapling-upper", "MDStapling ON", ACCEPT),
    Case("stapling-no-args", "MDStapling", REJECT, "MDStapling",
         'MDStapling takes one argument'),
    Case("stapleothers-in-vhost", vhost("    MDStapleOthers off"), ACCEPT),
    Case("stapleothers-no-args", "MDStapleOthers", REJECT, "MDStapleOthers",
         'MDStapleOthers takes one argument'),
    Case("stapling-keep-zero", "MDStaplingKeepResponse 0", ACCEPT),
    Case("stapling-keep-negative", "MDStaplingKeepResponse -1d", ACCEPT),
    Case("stapling-keep-hours", "MDStaplingKeepResponse 2h", ACCEPT),
    Case("stapling-keep-120", "MDStaplingKeepResponse 120%", ACCEPT),
    Case("stapling-keep-m-unit", "MDStaplingKeepResponse 10m", REJECT, "MDStaplingKeepResponse",
         'MDStaplingKeepResponse has unrecognized format'),
    Case("stapling-renewwindow-0", "MDStaplingRenewWindow 0%", ACCEPT),
    Case("stapling-renewwindow-99", "MDStaplingRenewWindow 99%", ACCEPT),
    Case("stapling-renewwindow-negative", "MDStaplingRenewWindow -1d", ACCEPT),
    Case("stapling-renewwindow-m-unit", "MDStaplingRenewWindow 10m", REJECT,
         "MDStaplingRenewWindow",
         'MDStaplingRenewWindow has unrecognized format'),
    Case("storedir-absolute-in-vhost", vhost('    MDStoreDir "@DIR@/md2"'), ACCEPT),
    Case("storedir-dot", 'MDStoreDir "."', ACCEPT),
    Case("storedir-two-args", "MDStoreDir a b", REJECT, "MDStoreDir",
         'MDStoreDir takes one argument'),
    Case("storedir-empty", 'MDStoreDir ""', REJECT, "MDStoreDir",
         'MDStoreDir takes one argument'),
    Case("renewwindow-unit-prefix", "MDRenewWindow 5dx", ACCEPT),
    Case("renewwindow-percent-trailing", "MDRenewWindow 33%x", ACCEPT),
    Case("renewwindow-plus-sign", "MDRenewWindow +5d", ACCEPT),
    Case("renewwindow-minus-100-percent", "MDRenewWindow -100%", REJECT, "MDRenewWindow",
         'MDRenewWindow percent must be less than 100'),
    Case("renewwindow-minus-zero-percent", "MDRenewWindow -0%", ACCEPT),
    Case("renewwindow-minus-percent-only", "MDRenewWindow -%", REJECT, "MDRenewWindow",
         'MDRenewWindow has unrecognized format'),
    Case("renewwindow-hex", "MDRenewWindow 0x10", REJECT, "MDRenewWindow",
         'MDRenewWindow has unrecognized format'),
    Case("renewwindow-overflow", "MDRenewWindow 99999999999999999999d", REJECT, "MDRenewWindow",
         'MDRenewWindow has unrecognized format'),
    Case("checkinterval-compound", "MDCheckInterval 1d12h", ACCEPT),
    Case("checkinterval-negative-seconds", "MDCheckInterval -5s", REJECT, "MDCheckInterval",
         'check interval cannot be less than one second'),
    Case("checkinterval-fraction", "MDCheckInterval 0.5", REJECT, "MDCheckInterval",
         'unrecognized duration format'),
    Case("retrydelay-minus-zero", "MDRetryDelay -0", REJECT, "MDRetryDelay",
         'minimum delay must be greater than 0'),
    Case("retrydelay-zero-seconds", "MDRetryDelay 0s", REJECT, "MDRetryDelay",
         'minimum delay must be greater than 0'),
    Case("activationdelay-compound", "MDActivationDelay 1d12h", ACCEPT),
    Case("initialdelay-minus-zero", "MDInitialDelay -0", ACCEPT),
    Case("storelocks-compound", "MDStoreLocks 1d12h", ACCEPT),
    Case("storelocks-negative-junk", "MDStoreLocks -5x", REJECT, "MDStoreLocks",
         "neither 'on', 'off' or a duration specified"),
    Case("stapling-keep-negative-percent", "MDStaplingKeepResponse -5%", REJECT,
         "MDStaplingKeepResponse",
         'MDStaplingKeepResponse percent must be less than 100'),
    Case("stapling-keep-percent-only", "MDStaplingKeepResponse %", ACCEPT),
    Case("stapling-renewwindow-negative-percent", "MDStaplingRenewWindow -5%", REJECT,
         "MDStaplingRenewWindow",
         'MDStaplingRenewWindow percent must be less than 100'),
    Case("stapling-renewwindow-percent-only", "MDStaplingRenewWindow %", ACCEPT),
    Case("warnwindow-percent-only", "MDWarnWindow %", ACCEPT),
    Case("warnwindow-compound", "MDWarnWindow 1d12h", ACCEPT),
    Case("portmap-overflow-local", "MDPortMap http:99999999999999999999", REJECT, "MDPortMap",
         'unable to parse second port number'),
    Case("portmap-overflow-public", "MDPortMap 99999999999999999999:80", REJECT, "MDPortMap",
         'unable to parse first port number'),
    Case("portmap-empty-public", "MDPortMap :80", REJECT, "MDPortMap",
         'mapped port number must be 80 or 443'),
    Case("portmap-dash-junk", "MDPortMap 80:-x", ACCEPT),
    Case("portmap-other-unreachable", "MDPortMap 8080:-", REJECT, "MDPortMap",
         'mapped port number must be 80 or 443'),
    Case("portmap-name-then-name", "MDPortMap https:http:80", REJECT, "MDPortMap",
         'invalid number for port map, must be in ]0,65535]'),
    Case("portmap-plus-signs", "MDPortMap +80:+8080", ACCEPT),
    Case("portmap-swapped", "MDPortMap 443:80 80:443", ACCEPT),
    Case("retry-failover-wraps-to-1", "MDRetryFailover 4294967297", ACCEPT,
         note="atoi: the number is cut to a C int, 2^32+1 is 1"),
    Case("retry-failover-int-overflow", "MDRetryFailover 2147483648", REJECT, "MDRetryFailover",
         'invalid argument, must be a number > 0'),
    Case("members-names-outside", "MDMembers a.org b.org", REJECT, "MDMembers",
         "MDMembers is only valid inside a '<MDomainSet' context, not here"),
    # ---------------------------------------------------------------- legacy names
    Case("legacy-manageddomain", "ManagedDomain a.org b.org", REJECT, "ManagedDomain",
         "Invalid command 'ManagedDomain'", rs_verdict=ACCEPT,
         differs="mod_md-rs accepts the v0.x name ManagedDomain as an alias of MDomain"),
    Case("legacy-manageddomain-section", "<ManagedDomain a.org>\nMDRenewMode always\n"
         "</ManagedDomain>", REJECT, "ManagedDomain", "Invalid command '<ManagedDomain'",
         rs_verdict=ACCEPT,
         differs="mod_md-rs accepts the v0.x section <ManagedDomain> as an alias of <MDomain>"),
    Case("legacy-manageddomains-plural", "ManagedDomains a.org", REJECT, "ManagedDomains",
         "Invalid command 'ManagedDomains'"),
]

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case ids"


def run_case(module: MdModule, case: Case, keep: bool = False) -> tuple[int, str, HttpdServer]:
    """Render the case for ``module``, run ``apache2 -t``; returns (rc, output, server)."""
    srv = HttpdServer(module, keep=keep or None)
    for rel, content in case.files.items():
        srv.write_file(rel, content)
    srv.render(case.conf)
    rc, out = srv.config_test()
    return rc, out, srv


def normalized_output(out: str, srv: HttpdServer) -> str:
    return out.replace(str(srv.dir), "<DIR>")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_config(md_module: MdModule, case: Case):
    rc, out, srv = run_case(md_module, case)
    try:
        out = normalized_output(out, srv)
        expected = case.verdict_for(md_module.name)
        why = f"\n--- config snippet ---\n{case.conf}\n--- apache2 -t (rc={rc}) ---\n{out}"
        if case.differs and md_module.name == "rs":
            why += f"\n(deliberate difference from C: {case.differs})"
        if expected == ACCEPT:
            assert rc == 0 and "Syntax OK" in out, f"expected accept{why}"
        else:
            assert rc != 0, f"expected reject{why}"
            assert "Syntax OK" not in out, f"reject must not say Syntax OK{why}"
            if md_module.name == "c":
                msg = case.msg_for("c")
                assert msg in out, f"C message changed, expected {msg!r}{why}"
            else:
                assert case.directive in out or case.msg in out, (
                    f"error output must name {case.directive!r} (or carry the C text "
                    f"{case.msg!r}){why}")
    finally:
        srv.cleanup()


def _recorded_messages() -> dict:
    try:
        return json.loads(MESSAGES_FILE.read_text())
    except FileNotFoundError:
        return {}


WORDING_CASES = [c for c in CASES if c.verdict == REJECT and c.verdict_for("rs") == REJECT]


@pytest.mark.parametrize("case", WORDING_CASES, ids=[c.id for c in WORDING_CASES])
def test_reject_wording_matches_c(md_module: MdModule, case: Case):
    """The error text (after httpd's 'Syntax error on line N of F:') equals C's, verbatim (for
    mod_md-rs optionally after the directive's name)."""
    if md_module.name == "c" and case.older and not c_has(case.older.feature):
        # an older C module (lib/cversion.py): its own verdict and text, checked by test_config
        return test_config(md_module, case)
    recorded = _recorded_messages().get(case.id)
    assert recorded is not None, (
        f"no recorded C message for {case.id}: run test/compat/collect_c_messages.py")
    rc, out, srv = run_case(md_module, case)
    try:
        message = syntax_error_message(normalized_output(out, srv))
        assert rc != 0
        # mod_md-rs keeps C's text and names the directive first where C's text does not
        # (README "Deliberate differences"); everything after that prefix is C's, verbatim.
        allowed = [recorded["message"]]
        if md_module.name == "rs" and case.directive:
            allowed.append(f"{case.directive}: {recorded['message']}")
        assert message in allowed, (
            f"wording differs from C mod_md\n  C : {recorded['message']!r}\n"
            f"  {md_module.name:<2}: {message!r}\n--- snippet ---\n{case.conf}")
    finally:
        srv.cleanup()


def test_case_count():
    assert len(CASES) >= 400
