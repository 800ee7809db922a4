"""pytest wiring for the mod_md e2e suite.

* ``--md-modules c,rs`` (or env ``MD_MODULES``) chooses the md_module implementations; every
  test that takes the ``md_module`` fixture runs once per module.
* "c"  = Debian's /usr/lib/apache2/modules/mod_md.so (the reference; env ``MD_C_MODULE``).
* "rs" = env ``MD_RS_MODULE``, default <repo>/target/release/libmod_md.so. A missing file FAILS
  the rs tests (never skips: a skipped test must not look like a passing one).
* ``pg_factory`` / ``cluster_factory``: a throw-away PostgreSQL (lib/postgres.py) and httpd
  nodes sharing it with one pebble (lib/cluster.py); made inside the test, so missing
  PostgreSQL binaries FAIL it as a missing module does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lib.cversion import c_md_version  # noqa: E402
from lib.cluster import Cluster  # noqa: E402
from lib.httpd import APACHE2, HttpdServer, module_by_name, selected_module_names  # noqa: E402
from lib.postgres import Postgres  # noqa: E402


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


@pytest.fixture
def pg_factory():
    """make(**kwargs) -> a started Postgres; every one is stopped and removed at teardown."""
    made: list[Postgres] = []

    def make(**kwargs) -> Postgres:
        pg = Postgres(**kwargs)
        made.append(pg)
        return pg.start()

    yield make
    for pg in made:
        pg.cleanup()


@pytest.fixture
def cluster_factory():
    """make(module name, n=3, pg=None, **kwargs) -> a Cluster with its pebble running (nodes
    not started); all nodes, pebbles and dirs are stopped and removed at teardown."""
    made: list[Cluster] = []

    def make(module: str = "rs", n: int = 3, **kwargs) -> Cluster:
        cluster = Cluster(module_by_name(module), n, **kwargs)
        made.append(cluster)
        return cluster.start_pebble()

    yield make
    for cluster in made:
        cluster.cleanup()
