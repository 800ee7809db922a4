"""Side by side with the C module: challenge choice for an explicit MDCAChallenges list, and
what a failed renewal records in staging/<md>/job.json `last` (status, description, problem).
"""

from __future__ import annotations

import json
import os
import time
from email.utils import parsedate_to_datetime

import pytest

from lib.pebble import free_port, make_tls_ca
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


def unreachable_detail(url: str) -> str:
    return (f"Unsuccessful in contacting ACME server at <{url}>. If this problem persists, "
            "please check your network connectivity from your Apache server to the ACME server. "
            "Also, older servers might have trouble verifying the certificates of the ACME "
            "server. You can check if you are able to contact it manually via the curl command. "
            "Sometimes, the ACME server might be down for maintenance, so failing to contact it "
            "is not an immediate problem. Apache will continue retrying this.")


def first_error(ca_env, edit) -> tuple[dict, str]:
    """Start a server whose renewal fails; returns job.json `last` after the first error and
    the CA URL the config names."""
    srv, peb = ca_env()
    conf, url = edit(srv, peb, md_conf(srv, peb, "MDRetryDelay 30s\nMDomain a.test\n"
                                       + vhosts("a.test")))
    srv.render(conf)
    assert srv.start().started
    deadline = time.monotonic() + 30
    while read_job(srv, "a.test").get("errors", 0) < 1:
        assert time.monotonic() < deadline, srv.error_log()[-3000:]
        time.sleep(0.1)
    return read_job(srv, "a.test")["last"], url


def contact_failure(url: str, status: int, description: str) -> dict:
    return {"status": status, "status-description": description,
            "detail": unreachable_detail(url),
            "activity": f"Contacting ACME server for a.test at {url}"}


def test_last_ca_port_refuses(ca_env, md_module):
    def edit(srv, peb, conf):
        url = f"https://127.0.0.1:{free_port()}/dir"
        return conf.replace(peb.directory_url, url), url
    last, url = first_error(ca_env, edit)
    assert last == contact_failure(url, 111, "Connection refused")


def test_last_ca_host_unresolvable(ca_env, md_module):
    """curl's "could not resolve host" is ECONNREFUSED in the C module, too."""
    def edit(srv, peb, conf):
        url = f"https://ca.example.invalid:{peb.port}/dir"
        return conf.replace(peb.directory_url, url), url
    last, url = first_error(ca_env, edit)
    assert last == contact_failure(url, 111, "Connection refused")


def test_last_ca_certificate_untrusted(ca_env, md_module):
    """MDCACertificateFile names another CA than the one that signed the CA's TLS
    certificate: verification fails (APR_EGENERAL in the C module)."""
    def edit(srv, peb, conf):
        other = make_tls_ca(str(srv.dir / "other-ca"))[0]
        return (conf.replace(f"MDCACertificateFile {peb.ca_file}",
                             f"MDCACertificateFile {other}"), peb.directory_url)
    last, url = first_error(ca_env, edit)
    assert last == contact_failure(url, 20014,
                                   "Internal error (specific information not available)")


def test_last_eab_hmac_not_base64(ca_env, md_module):
    def edit(srv, peb, conf):
        return "MDExternalAccountBinding kid-1 %%%%\n" + conf, peb.directory_url
    last, _ = first_error(ca_env, edit)
    assert last == {"status": 22, "status-description": "Invalid argument",
                    "problem": "apache:eab-hmac-invalid",
                    "detail": "external account binding HMAC value is not valid base64"}


def test_last_mandatory_profile_not_offered(ca_env, md_module):
    """MDProfile + MDProfileMandatory on, and a CA offering no profiles (Debian's pebble 2.4):
    the renewal fails with EINVAL in both modules. C records no detail and its order step as
    activity; ours says which profile the CA lacks (a documented difference)."""
    def edit(srv, peb, conf):
        return "MDProfile shortlived\nMDProfileMandatory on\n" + conf, peb.directory_url
    last, url = first_error(ca_env, edit)
    if md_module.name == "c":
        assert last == {"status": 22, "status-description": "Invalid argument",
                        "activity": "Creating new order, key-spec=default, profile=shortlived, "
                                    "replacing-cert=none"}, last
    else:
        assert last == {"status": 22, "status-description": "Invalid argument",
                        "detail": f"mandatory ACME profile 'shortlived' is not offered by CA "
                                  f"{url}",
                        "activity": "Renewing a.test"}, last


def offered_in(text: str, before: str, after: str) -> set:
    """The CA's offered types quoted in a detail (pebble shuffles their order)."""
    assert text.startswith(before) and text.endswith(after), text
    return set(text[len(before):len(text) - len(after)].split(" "))


def test_last_only_tls_alpn_without_protocol_is_a_mismatch(ca_env, md_module):
    """`MDCAChallenges tls-alpn-01` and no `acme-tls/1`: the type cannot be answered, which
    the C module reports as a mismatch of offered and available types."""
    def edit(srv, peb, conf):
        return (conf.replace("MDCAChallenges http-01", "MDCAChallenges tls-alpn-01"),
                peb.directory_url)
    last, _ = first_error(ca_env, edit)
    detail = last.pop("detail")
    assert last == {"status": 22, "status-description": "Invalid argument",
                    "problem": "challenge-mismatch",
                    "activity": "Setting up challenge 'tls-alpn-01' for domain a.test"}
    assert offered_in(detail, "None of offered challenge types for domain a.test are "
                      "supported. The server offered '",
                      "' and available are: 'tls-alpn-01'.") == {
        "http-01", "tls-alpn-01", "dns-01"}


SETUP_FAILS = """#!/bin/sh
case "$1" in challenge-setup*) exit 1;; esac
exit 0
"""


def test_last_challenge_setup_event_fails(ca_env, md_module):
    """The challenge-setup event's command fails: a setup failure (not a mismatch)."""
    def edit(srv, peb, conf):
        script = srv.write_file("conf/setup-fails.sh", SETUP_FAILS, mode=0o755)
        os.chmod(srv.dir / "conf", 0o755)  # the command runs as the User
        return f"MDMessageCmd {script}\n" + conf, peb.directory_url
    last, _ = first_error(ca_env, edit)
    detail = last.pop("detail")
    assert last == {"status": 20014,
                    "status-description": "Internal error (specific information not available)",
                    "problem": "challenge-setup-failure",
                    "activity": "Setting up challenge 'http-01' for domain a.test"}
    assert offered_in(detail, "None of the offered challenge types a.test offered for domain ",
                      " could be setup successfully. Please check the log for errors.") == {
        "http-01", "tls-alpn-01", "dns-01"}


def job_after_first_error(ca_env) -> tuple[dict, str]:
    """job.json after the first failed run (CA port refusing) and the CA URL."""
    srv, peb = ca_env()
    url = f"https://127.0.0.1:{free_port()}/dir"
    srv.render(md_conf(srv, peb, "MDRetryDelay 30s\nMDomain a.test\n" + vhosts("a.test"))
               .replace(peb.directory_url, url))
    assert srv.start().started
    deadline = time.monotonic() + 30
    while read_job(srv, "a.test").get("errors", 0) < 1:
        assert time.monotonic() < deadline, srv.error_log()[-3000:]
        time.sleep(0.1)
    time.sleep(0.5)  # the job is written once more after the run (the errored event)
    return read_job(srv, "a.test"), url


def test_job_keys_after_first_error(ca_env, md_module):
    """The job.json keys after the first failed run, the flags, the error count, and next-run =
    last-run + MDRetryDelay (30 s) jittered by [-50%, +50%), as the C module writes them."""
    job, _ = job_after_first_error(ca_env)
    assert sorted(job) == JOB_KEYS_AFTER_ERROR, sorted(job)
    assert (job["name"], job["finished"], job["notified"], job["notified-renewed"],
            job["errors"]) == ("a.test", False, False, False, 1)
    delay = (parsedate_to_datetime(job["next-run"])
             - parsedate_to_datetime(job["last-run"])).total_seconds()
    assert 14 <= delay <= 46, delay


def test_job_log_entries_after_first_error(ca_env, md_module, request):
    """`log.entries` after the first failed run: types, keys and details, newest first."""
    if md_module.name == "rs":
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "mod_md-rs writes no 'progress' entries (the C module logs each step of the run: "
            "'Checking staging area', 'Contacting ACME server ...', ...)")))
    job, url = job_after_first_error(ca_env)
    entries = job["log"]["entries"]
    assert [e["type"] for e in entries] == LOG_TYPES_AFTER_ERROR, entries
    assert [sorted(e) for e in entries] == LOG_KEYS_AFTER_ERROR, entries
    details = [e.get("detail", "").replace(url, "@URL@") for e in entries]
    assert details == LOG_DETAILS_AFTER_ERROR, details

# what the C module writes (observed), newest entry first
JOB_KEYS_AFTER_ERROR = [
    "errors",
    "finished",
    "last",
    "last-run",
    "log",
    "name",
    "next-run",
    "notified",
    "notified-renewed",
]
LOG_TYPES_AFTER_ERROR = [
    "message-errored",
    "renewal-error",
    "progress",
    "progress",
    "progress",
    "progress",
    "progress",
    "progress",
    "progress",
    "starting",
    "message-renewing",
]
LOG_KEYS_AFTER_ERROR = [
    ["type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["detail", "type", "when"],
    ["type", "when"],
    ["type", "when"],
]
LOG_DETAILS_AFTER_ERROR = [
    "",
    unreachable_detail("@URL@"),
    "Contacting ACME server for a.test at @URL@: " + unreachable_detail("@URL@"),
    "Contacting ACME server for a.test at @URL@",
    "Resetting staging for a.test",
    "Assessing current status",
    "Resetting staging area",
    "Checking staging area",
    "MDomain a.test initialized with support for ACME challenges http-01",
    "",
    "",
]
