//! What the status output shows of OCSP stapling (SPEC 2.1, 2.2): the `ocsp` object of a
//! certificate in md-status and the "Managed Staplings" section of server-status (HTML and
//! `?auto`). Read in a request's child from the stapling registry (inherited from the parent)
//! and the store files the OCSP watchdog writes (`ocsp/<md or other>/`).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::facts::validity_json;
use super::html::{escape, time_html, url_host, ymd, JobSummary};
use crate::ocsp::{CertStatus, OcspRegistry, StoredResponse};
use crate::store::{format_http_date, JobRecord};

/// One stapled certificate as a request sees it.
#[derive(Debug, Clone)]
pub struct StaplingView {
    /// MD name or `other`.
    pub group: String,
    /// Certificate id (lowercase hex SHA-1 of the DER).
    pub id: String,
    /// OCSP responder URL.
    pub responder: String,
    /// The stored response, if any.
    pub resp: Option<StoredResponse>,
    /// `ocsp/<group>/job.json`, if any.
    pub job: Option<JobRecord>,
    /// When the response is fetched next.
    pub refresh_at: DateTime<Utc>,
}

/// A job file is small; anything larger is not read.
const MAX_JOB_BYTES: u64 = 1024 * 1024;

fn read_job(path: &std::path::Path) -> Option<JobRecord> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_JOB_BYTES {
        return None;
    }
    JobRecord::parse(&std::fs::read(path).ok()?).ok()
}

/// Every stapled certificate of `reg`, sorted by group, then id.
pub fn staplings(reg: &OcspRegistry, now: DateTime<Utc>) -> Vec<StaplingView> {
    let window = reg.window();
    let mut jobs: BTreeMap<String, Option<JobRecord>> = BTreeMap::new();
    let mut out: Vec<StaplingView> = reg
        .certs()
        .iter()
        .map(|c| {
            let group = c.group().to_string();
            let job = jobs
                .entry(group.clone())
                .or_insert_with(|| {
                    let dir = reg.file_of(c);
                    read_job(&dir.with_file_name(crate::store::files::JOB))
                })
                .clone();
            let resp = reg.refresh_from_store(c);
            let retry = job
                .as_ref()
                .filter(|j| j.errors > 0)
                .and_then(|j| j.next_run);
            let refresh_at = retry
                .or_else(|| resp.as_ref().map(|r| r.renew_at(&window)))
                .unwrap_or(now);
            StaplingView {
                group,
                id: c.id.clone(),
                responder: c.responder.clone(),
                resp,
                job,
                refresh_at,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.group, &a.id).cmp(&(&b.group, &b.id)));
    out
}

impl StaplingView {
    /// good, revoked, or unknown (no response).
    pub fn status_word(&self) -> &'static str {
        self.resp.as_ref().map_or("unknown", |r| r.status.as_str())
    }

    /// The `ocsp` object of md-status: `status`, `valid`, `renewal` (the OCSP job, its log
    /// only when asked).
    pub fn to_json(&self, with_logs: bool) -> Value {
        let mut o = Map::new();
        o.insert("status".into(), json!(self.status_word()));
        if let Some(r) = &self.resp {
            o.insert("valid".into(), validity_json(&r.valid));
        }
        if let Some(job) = &self.job {
            if let Ok(Value::Object(mut j)) = serde_json::to_value(job) {
                if !with_logs {
                    j.remove("log");
                }
                o.insert("renewal".into(), Value::Object(j));
            }
        }
        Value::Object(o)
    }

    /// The job's summary when its last run failed (the C module shows the job only then).
    fn failed_job(&self) -> Option<JobSummary> {
        let j = JobSummary::of(self.job.as_ref()?, 0);
        j.error.is_some().then_some(j)
    }
}

/// The "Managed Staplings" table (empty when nothing is stapled).
pub fn staplings_html(list: &[StaplingView], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<hr>\n<h3>Managed Staplings</h3>\n<table class='md_ocsp_status'><thead><tr>\n",
    );
    for col in [
        "Domain",
        "CertificateID",
        "OCSPStatus",
        "StaplingValid",
        "Responder",
        "Activity",
    ] {
        let _ = write!(h, "<th class=\"{col}\">{col}</th>");
    }
    h.push_str("</tr>\n</thead><tbody>");
    for (i, s) in list.iter().enumerate() {
        let class = if i % 2 == 0 { "even" } else { "odd" };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>",
            escape(&s.group),
            escape(&s.id),
            s.status_word()
        );
        if let Some(r) = &s.resp {
            if r.valid.from > now {
                let _ = write!(
                    h,
                    "from <span title='{}' style='white-space: nowrap;'>{}</span> ",
                    format_http_date(r.valid.from),
                    ymd(r.valid.from)
                );
            }
            let _ = write!(
                h,
                "until <span title='{} - {}' style='white-space: nowrap;'>{}</span>",
                format_http_date(r.valid.from),
                format_http_date(r.valid.until),
                ymd(r.valid.until)
            );
        }
        let _ = write!(
            h,
            "</td><td><a href='{}'>{}</a></td><td>",
            escape(&s.responder),
            escape(&url_host(&s.responder)),
        );
        if s.resp.is_some() {
            let _ = write!(h, "Refresh {}", time_html(s.refresh_at, now));
        }
        if let Some(j) = s.failed_job() {
            let _ = write!(h, ": {}", j.html(now));
        }
        // The C module closes the row twice; browsers ignore the extra end tags.
        h.push_str("</td></tr></td></tr>");
    }
    h.push_str("\n</tbody>\n</table>\n");
    h
}

/// The `?auto` lines: counts (OK = good, Renew = revoked, Errored = unknown, as the C module
/// counts them) and one block per stapled certificate.
pub fn staplings_auto(list: &[StaplingView], now: DateTime<Utc>) -> String {
    let count = |st: Option<CertStatus>| {
        list.iter()
            .filter(|s| s.resp.as_ref().map(|r| r.status) == st)
            .count()
    };
    let mut t = String::new();
    let _ = writeln!(t, "ManagedStaplingsTotal: {}", list.len());
    let _ = writeln!(t, "ManagedStaplingsOK: {}", count(Some(CertStatus::Good)));
    let _ = writeln!(
        t,
        "ManagedStaplingsRenew: {}",
        count(Some(CertStatus::Revoked))
    );
    let _ = writeln!(t, "ManagedStaplingsErrored: {}", count(None));
    for (i, s) in list.iter().enumerate() {
        let p = format!("ManagedStapling[{i}]");
        let _ = writeln!(t, "{p}Domain: {}", s.group);
        let _ = writeln!(t, "{p}CertificateID: {}", s.id);
        let _ = writeln!(t, "{p}OCSPStatus: {}", s.status_word());
        if let Some(r) = &s.resp {
            if r.valid.from > now {
                let _ = writeln!(t, "{p}StaplingValidFrom: {}", ymd(r.valid.from));
            }
            let _ = writeln!(t, "{p}StaplingValidUntil: {}", ymd(r.valid.until));
        }
        let _ = writeln!(t, "{p}ResponderName: {}", url_host(&s.responder));
        let _ = writeln!(t, "{p}ResponderURL: {}", s.responder);
        if s.resp.is_some() {
            let _ = writeln!(
                t,
                "{p}ActivityRefresh: {}",
                (s.refresh_at - now).num_seconds()
            );
        }
        if let Some(j) = s.failed_job() {
            j.auto(&mut t, &p, now);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::schedule::Validity;
    use crate::status::testutil::at;

    fn view(status: Option<CertStatus>) -> StaplingView {
        StaplingView {
            group: "a.test".into(),
            id: "6c27559b5e295ec9cc23df6c04d80e754e2b3055".into(),
            responder: "http://127.0.0.1:50851/".into(),
            resp: status.map(|status| StoredResponse {
                status,
                valid: Validity {
                    from: at("Sun, 29 Nov 2026 20:47:26 GMT"),
                    until: at("Sun, 29 Nov 2026 20:48:26 GMT"),
                },
                der: vec![1],
            }),
            job: None,
            refresh_at: at("Sun, 29 Nov 2026 20:48:07 GMT"),
        }
    }

    #[test]
    fn html_row_matches_the_c_module() {
        let now = at("Sun, 29 Nov 2026 20:47:29 GMT");
        let h = staplings_html(&[view(Some(CertStatus::Good))], now);
        // observed from mod_md 2.6 (test/compat/ocsp-c-observations.md)
        let row = "<tr class=\"even\"><td>a.test</td><td>6c27559b5e295ec9cc23df6c04d80e754e2b3055\
                   </td><td>good</td><td>until <span title='Sun, 29 Nov 2026 20:47:26 GMT - Sun, \
                   29 Nov 2026 20:48:26 GMT' style='white-space: nowrap;'>2026-11-29</span></td>\
                   <td><a href='http://127.0.0.1:50851/'>127.0.0.1</a></td><td>Refresh <span \
                   title='Sun, 29 Nov 2026 20:48:07 GMT'>in ~38 seconds</span></td></tr></td></tr>";
        assert!(h.contains(row), "{h}");
        assert!(h.starts_with("<hr>\n<h3>Managed Staplings</h3>\n<table class='md_ocsp_status'>"));
        assert_eq!(staplings_html(&[], now), "");
    }

    #[test]
    fn auto_lines_and_counts() {
        let now = at("Sun, 29 Nov 2026 20:47:29 GMT");
        let t = staplings_auto(
            &[
                view(Some(CertStatus::Good)),
                view(Some(CertStatus::Revoked)),
                view(None),
            ],
            now,
        );
        assert!(
            t.starts_with(
                "ManagedStaplingsTotal: 3\nManagedStaplingsOK: 1\nManagedStaplingsRenew: 1\n\
             ManagedStaplingsErrored: 1\nManagedStapling[0]Domain: a.test\n\
             ManagedStapling[0]CertificateID: 6c27559b5e295ec9cc23df6c04d80e754e2b3055\n\
             ManagedStapling[0]OCSPStatus: good\nManagedStapling[0]StaplingValidUntil: 2026-11-29\n\
             ManagedStapling[0]ResponderName: 127.0.0.1\n\
             ManagedStapling[0]ResponderURL: http://127.0.0.1:50851/\n\
             ManagedStapling[0]ActivityRefresh: 38\n"
            ),
            "{t}"
        );
        assert!(t.contains("ManagedStapling[2]OCSPStatus: unknown\n"));
        assert_eq!(
            staplings_auto(&[], now),
            "ManagedStaplingsTotal: 0\nManagedStaplingsOK: 0\nManagedStaplingsRenew: 0\n\
             ManagedStaplingsErrored: 0\n"
        );
    }

    #[test]
    fn failed_and_unknown_rows() {
        let now = at("Sun, 29 Nov 2026 20:47:29 GMT");
        let job = JobRecord::parse(
            br#"{"name": "a.test", "finished": true, "errors": 0,
                 "last": {"status": 111, "status-description": "Connection refused",
                          "detail": "OCSP status update failed (2. time)",
                          "activity": "status of certid x, contacting http://127.0.0.1:1/"}}"#,
        )
        .unwrap();
        let mut down = view(Some(CertStatus::Good));
        down.job = Some(job.clone());
        let h = staplings_html(&[down.clone()], now);
        assert!(
            h.contains(
                "in ~38 seconds</span>:  Error[Connection refused]:  OCSP status \
                            update failed (2. time)  finished successfully.\nOngoing...</td>"
            ),
            "{h}"
        );
        let t = staplings_auto(&[down], now);
        assert!(
            t.contains(
                "ManagedStapling[0]ActivityRefresh: 38\n\
                            ManagedStapling[0]ActivityLastStatus: Connection refused\n\
                            ManagedStapling[0]ActivityLastProblem: (null)\n\
                            ManagedStapling[0]ActivityFinished: yes\n\
                            ManagedStapling[0]ActivityNewStaged: 0\n"
            ),
            "{t}"
        );
        // no response: no validity, no refresh time
        let mut unknown = view(None);
        unknown.job = Some(job);
        let h = staplings_html(&[unknown.clone()], now);
        assert!(
            h.contains(
                "<td>unknown</td><td></td><td><a href='http://127.0.0.1:50851/'>\
                            127.0.0.1</a></td><td>:  Error[Connection refused]"
            ),
            "{h}"
        );
        let t = staplings_auto(&[unknown], now);
        assert!(
            !t.contains("ActivityRefresh") && !t.contains("StaplingValid"),
            "{t}"
        );
    }

    #[test]
    fn json_object() {
        let v = view(Some(CertStatus::Revoked)).to_json(false);
        assert_eq!(v["status"], "revoked");
        assert_eq!(v["valid"]["until"], "Sun, 29 Nov 2026 20:48:26 GMT");
        assert!(v.get("renewal").is_none());
        assert_eq!(view(None).to_json(true), json!({"status": "unknown"}));
    }
}
