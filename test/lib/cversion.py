"""Which C mod_md is the reference, and what that version does differently (one table).

The side-by-side tests expect of the C module what the installed version does. Debian 12's
apache2 comes in more than one build (2.4.71 from the security suite, 2.4.68 without it), and
httpd's copy of mod_md carries changes before (or without) a mod_md release that has them. So a
behaviour is tied to the first mod_md version *or* the first httpd version that has it.

``c_md_version()`` reads both from the module file itself (the module is tested, not the httpd
binary next to it, so ``MD_C_MODULE`` may point at another build):

* the mod_md version: the only ``N.N.N`` string constant in the .so (``MOD_MD_VERSION``, which
  the C module reports as md-status ``"version"`` and in its User-Agent);
* the httpd version it was built for: the ``Apache/N.N.N`` constant (``AP_SERVER_BASEVERSION``)
  in the .so; if that is missing, ``apache2 -v`` of the httpd under test.

Our module's expectations never depend on these: it is tested against the newest behaviour in
``C_FEATURES`` (Debian's apache2 2.4.71).
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from typing import Optional

from lib.httpd import APACHE2, C_MODULE_PATH

Version = tuple[int, ...]


@dataclass(frozen=True)
class Since:
    """A behaviour of the C module and the first versions that have it: the mod_md release
    (``md``) or the httpd release whose copy of mod_md has it (``httpd``), either suffices.
    ``None`` = no such release (e.g. a change made in httpd only)."""

    md: Optional[Version]
    httpd: Optional[Version]
    what: str


# The one table of version-dependent C behaviour. From mod_md's and httpd's change logs (SPEC 0,
# 10) and checked side by side with Debian's 2.4.68 and 2.4.71 builds (mod_md reports 2.6.10 in
# both).
C_FEATURES: dict[str, Since] = {
    # mod_md 2.6.11 / httpd 2.4.71. Before: MDHttpProxy inside <MDomain> is rejected ("is not
    # allowed inside an '<MDomainSet' context"), MDCACertificateFile there is accepted (no
    # per-MD value), and md.json has no proxy-url/ca-certs/proxy-ca-certs.
    "per-md-proxy": Since((2, 6, 11), (2, 4, 71),
                          "MDHttpProxy and MDCACertificateFile per <MDomain>"),
    # mod_md 2.6.11 / httpd 2.4.71. Before: "Invalid command 'MDHttpProxyCACertificateFile'".
    "proxy-ca-file": Since((2, 6, 11), (2, 4, 71), "the directive MDHttpProxyCACertificateFile"),
    # httpd 2.4.69 only (upstream mod_md keeps it on). Before: the "Managed Certificates"
    # section is in server-status without MDServerStatus.
    "server-status-off": Since(None, (2, 4, 69), "MDServerStatus off by default"),
}


@dataclass(frozen=True)
class CVersion:
    md: Version  # mod_md version (md-status "version")
    httpd: Version  # httpd version the module was built for
    md_text: str  # the version as the module prints it, e.g. "2.6.10"

    def has(self, feature: str) -> bool:
        since = C_FEATURES[feature]
        return ((since.md is not None and self.md >= since.md)
                or (since.httpd is not None and self.httpd >= since.httpd))

    def __str__(self) -> str:
        return f"mod_md {self.md_text} (httpd {'.'.join(map(str, self.httpd))})"


def _parse(text: str) -> Version:
    return tuple(int(x) for x in text.split("."))


def _strings(data: bytes) -> list[bytes]:
    return re.findall(rb"[\x20-\x7e]{4,}", data)


@functools.lru_cache(maxsize=None)
def c_md_version(path: str = C_MODULE_PATH) -> CVersion:
    """The version of the C module at ``path`` (see the module doc). Raises if it cannot be
    told: a test must not guess which behaviour to expect."""
    with open(path, "rb") as f:
        strings = _strings(f.read())
    md = sorted({s.decode() for s in strings if re.fullmatch(rb"\d+\.\d+\.\d+", s)})
    if len(md) != 1:
        raise RuntimeError(f"cannot tell the mod_md version of {path}: version-like strings "
                           f"{md}")
    httpd = sorted({m.group(1).decode() for s in strings
                    for m in [re.fullmatch(rb"Apache/(\d+\.\d+\.\d+)", s)] if m})
    if len(httpd) != 1:
        out = subprocess.run([APACHE2, "-v"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"Apache/(\d+\.\d+\.\d+)", out)
        if not m:
            raise RuntimeError(f"cannot tell the httpd version of {path} nor of {APACHE2}")
        httpd = [m.group(1)]
    return CVersion(_parse(md[0]), _parse(httpd[0]), md[0])


def c_has(feature: str) -> bool:
    """Does the C reference module have this behaviour of C_FEATURES?"""
    return c_md_version().has(feature)


def expect_c_feature(module_name: str, feature: str) -> bool:
    """Whether the module under test is expected to show ``feature``: ours always (it follows
    the newest C module), the C module when its version has it."""
    return module_name != "c" or c_has(feature)
