"""Side by side with the C module: challenge choice for an explicit MDCAChallenges list, and
what a failed renewal records in staging/<md>/job.json `last` (status, description, problem).
"""

from __future__ import annotations

import json
import time

from lib.httpd import HttpdServer
from test_renewal import ca_env, md_conf, vhosts, wait_staged, read_job  # noqa: F401


def test_explicit_tls_alpn_without_protocol_falls_back_to_http01(ca_env, md_module):
    """`MDCAChallenges tls-alpn-01 http-01` but no vhost of the MD has `acme-tls/1` in
    Protocols: tls-alpn-01 is dropped for this MD and http-01 gets the certificate."""
    srv, peb = ca_env()
    srv.render(md_conf(srv, peb, "MDomain a.test\n" + vhosts("a.test"),
                       challenges="tls-alpn-01 http-01"))
    assert srv.start().started
    job = wait_staged(srv, "a.test", timeout=40)
    assert job["finished"] is True
    log = srv.error_log()
    assert "AH10173" not in log
    # the C module's words (md:info) when it passes over tls-alpn-01 for the domain
    assert ("a.test: protocol 'acme-tls/1' seems not enabled for this or any other associated "
            "domain. Not attempting challenge type tls-alpn-01.") in log
    assert ("while[Setting up challenge 'tls-alpn-01' for domain a.test] detail[error setting "
            "up challenge 'tls-alpn-01' for a.test, for domain a.test, looking for other "
            "option]") in log
    staged = json.loads((srv.dir / "md" / "staging" / "a.test" / "md.json").read_text())
    assert staged["domains"] == ["a.test"]
