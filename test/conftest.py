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

import json
import os
import sys
import tempfile
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


# ---- the fault matrix's figures (test_faults.py::test_fault) ---------------------------------
# Each case puts its record in its report's user_properties ("fault_result"): reports reach
# this process also from pytest-xdist workers, so the file and the table cover every case.

FAULT_RESULTS: list[dict] = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        FAULT_RESULTS.extend(v for k, v in report.user_properties if k == "fault_result")


def pytest_terminal_summary(terminalreporter, config):
    if not FAULT_RESULTS or hasattr(config, "workerinput"):  # an xdist worker: not its job
        return
    path = Path(os.environ.get("MD_FAULTS_JSON")
                or Path(tempfile.gettempdir()) / "md-faults-results.json")
    path.write_text(json.dumps(FAULT_RESULTS, indent=2) + "\n")
    tr = terminalreporter
    tr.write_line("")
    tr.write_line(f"fault matrix ({len(FAULT_RESULTS)} cases; figures in {path}):")
    tr.write_line(f"{'module':6} {'step':12} {'fault':9} {'asked':6} {'injected':8} "
                  f"{'survived':8} {'orders':6} {'s to cert':9} {'crashes':7} {'acct keys':9} "
                  "checks")
    for r in FAULT_RESULTS:
        t = f"{r['seconds_to_cert']:.1f}" if r["seconds_to_cert"] is not None else "-"
        tr.write_line(f"{r['module']:6} {r['step']:12} {r['kind']:9} {r['asked']:6} "
                      f"{r['injected']:<8} {'yes' if r['survived'] else 'NO':8} "
                      f"{r['orders']:<6} {t:9} {r['crashes']:<7} {r['account_keys']:<9} "
                      f"{r['checks']}")


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
