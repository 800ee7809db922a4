"""pytest wiring for the mod_md e2e suite.

* ``--md-modules c,rs`` (or env ``MD_MODULES``) chooses the md_module implementations; every
  test that takes the ``md_module`` fixture runs once per module.
* "c"  = Debian's /usr/lib/apache2/modules/mod_md.so (the reference; env ``MD_C_MODULE``).
* "rs" = env ``MD_RS_MODULE``, default <repo>/target/release/libmod_md.so. A missing file FAILS
  the rs tests (never skips: a skipped test must not look like a passing one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lib.cversion import c_md_version  # noqa: E402
from lib.httpd import APACHE2, HttpdServer, module_by_name, selected_module_names  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--md-modules", default=None,
                     help="comma separated md modules to test: c, rs (default: env "
                          "MD_MODULES or 'c,rs')")


def pytest_generate_tests(metafunc):
    if "md_module_name" in metafunc.fixturenames:
        names = selected_module_names(metafunc.config.getoption("--md-modules"))
        metafunc.parametrize("md_module_name", names, scope="session")


def pytest_report_header(config):
    names = selected_module_names(config.getoption("--md-modules"))
    header = [f"md modules: " + ", ".join(f"{n}={module_by_name(n).path}" for n in names),
            f"apache2: {APACHE2}"]
    if "c" in names:
        try:
            header.append(f"C reference: {c_md_version()}")
        except (OSError, RuntimeError) as e:  # the c tests fail on their own then
            header.append(f"C reference: unknown ({e})")
    return header


@pytest.fixture(scope="session")
def md_module(md_module_name):
    """The md module under test.

    A missing module file is not checked here (that would be a setup ERROR) but when the
    test creates its HttpdServer, so each affected test FAILS with lib.httpd.ModuleMissing.
    """
    return module_by_name(md_module_name)


@pytest.fixture
def httpd_factory(md_module):
    """Make HttpdServer instances for md_module; all are stopped and removed at teardown."""
    servers: list[HttpdServer] = []

    def make(**kwargs) -> HttpdServer:
        srv = HttpdServer(md_module, **kwargs)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.cleanup()
