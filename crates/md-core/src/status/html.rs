//! The "Managed Certificates" section of mod_status (SPEC 2.2): an HTML table and the
//! `?auto` key/value lines.
//!
//! Every value that comes from the config, the store or a CA is HTML-escaped: a CA URL or an
//! error detail is not trusted markup. (The C module prints job details unescaped.)

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::MdView;
use crate::config::values::known_ca_name;
use crate::store::{format_http_date, JobRecord, MdState};

/// MDCertificateCheck: link text and URL prefix (the SHA-256 fingerprint is appended).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckAt {
    /// Link text, e.g. `crt.sh`.
    pub name: String,
    /// URL prefix, e.g. `https://crt.sh?q=`.
    pub url: String,
}

impl Default for CheckAt {
    fn default() -> Self {
        CheckAt {
            name: "crt.sh".into(),
            url: "https://crt.sh?q=".into(),
        }
    }
}

/// Escape text for HTML content and single- or double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Times closer than this are shown relative ("in ~3 hours").
const RELATIVE_LIMIT_SECS: i64 = 4 * 86400;

fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let a = secs.abs();
    let (n, unit) = if a < 60 {
        (a, "seconds")
    } else if a < 3600 {
        (a / 60, "minutes")
    } else if a < 86400 {
        (a / 3600, "hours")
    } else {
        (a / 86400, "days")
    };
    if secs >= 0 {
        format!("in ~{n} {unit}")
    } else {
        format!("~{n} {unit} ago")
    }
}

pub(super) fn ymd(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// A time as the table shows it: relative when near, else the date; the RFC date as tooltip.
pub(super) fn time_html(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let title = format_http_date(t);
    if (t - now).num_seconds().abs() < RELATIVE_LIMIT_SECS {
        format!("<span title='{title}'>{}</span>", relative(t, now))
    } else {
        format!(
            "<span title='{title}' style='white-space: nowrap;'>{}</span>",
            ymd(t)
        )
    }
}

fn status_text(view: &MdView, now: DateTime<Utc>) -> String {
    let rec = &view.snap.record;
    match rec.state {
        MdState::Complete => match view.snap.valid() {
            Some(v) if v.until < now => "expired".into(),
            _ => "good".into(),
        },
        MdState::Incomplete => format!(
            "incomplete: {}",
            rec.state_descr.as_deref().unwrap_or_default()
        ),
        MdState::Error => "error".into(),
        MdState::MissingInformation => "missing information".into(),
        MdState::Unknown => "unknown".into(),
    }
}

/// The CA links: the CA actually used, else every configured one. (name, url) pairs.
fn cas(view: &MdView) -> Vec<(String, String)> {
    let rec = &view.snap.record;
    let urls: Vec<String> = match &rec.ca_url {
        Some(u) => vec![u.clone()],
        None => rec.md.ca_urls.clone(),
    };
    urls.into_iter()
        .map(|u| {
            let name = known_ca_name(&u)
                .map(String::from)
                .unwrap_or_else(|| url_host(&u));
            (name, u)
        })
        .collect()
}

pub(super) fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    host_port.split(':').next().unwrap_or(host_port).to_string()
}

/// What a job says, for the Activity cell and the `?auto` keys (renewal and OCSP jobs).
pub(super) struct JobSummary {
    pub(super) error: Option<(String, Option<String>, String)>,
    pub(super) finished: bool,
    staged: usize,
    pub(super) errors: u32,
    next_run: Option<DateTime<Utc>>,
}

impl JobSummary {
    /// The summary of `job`, which staged `staged` certificates.
    pub(super) fn of(job: &JobRecord, staged: usize) -> JobSummary {
        let last = job.last.as_ref();
        let field = |k: &str| {
            last.and_then(|l| l.get(k))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        let error = match job.last_status() {
            Some(s) if s != 0 => Some((
                field("status-description").unwrap_or_else(|| s.to_string()),
                field("problem"),
                field("detail").unwrap_or_default(),
            )),
            _ => None,
        };
        JobSummary {
            error,
            finished: job.finished,
            staged,
            errors: job.errors,
            next_run: job.next_run,
        }
    }

    /// The Activity cell's text for a job: error, result, next run.
    pub(super) fn html(&self, now: DateTime<Utc>) -> String {
        let mut s = String::new();
        if let Some((desc, problem, detail)) = &self.error {
            let problem = problem.as_deref().unwrap_or_default();
            let _ = write!(
                s,
                " Error[{}]: {} {}",
                escape(desc),
                escape(problem),
                escape(detail)
            );
        }
        if self.finished {
            match self.staged {
                0 => s.push_str("  finished successfully."),
                1 => s.push_str("  finished, 1 new certificate staged."),
                n => {
                    let _ = write!(s, "  finished, {n} new certificates staged.");
                }
            }
        }
        s.push('\n');
        match self.next_run {
            Some(t) if t > now => {
                let _ = write!(s, "Next run {}", time_html(t, now));
            }
            _ => s.push_str("Ongoing..."),
        }
        s
    }

    /// The `?auto` Activity lines of a job, keys prefixed with `p`.
    pub(super) fn auto(&self, t: &mut String, p: &str, now: DateTime<Utc>) {
        if let Some((desc, problem, _)) = &self.error {
            let _ = writeln!(t, "{p}ActivityLastStatus: {desc}");
            // the C module prints a missing problem type as "(null)"; scripts see that
            let _ = writeln!(
                t,
                "{p}ActivityLastProblem: {}",
                problem.as_deref().unwrap_or("(null)")
            );
        }
        let _ = writeln!(
            t,
            "{p}ActivityFinished: {}",
            if self.finished { "yes" } else { "no" }
        );
        if self.finished {
            let _ = writeln!(t, "{p}ActivityNewStaged: {}", self.staged);
        }
        if let Some((_, _, detail)) = &self.error {
            let _ = writeln!(t, "{p}ActivityLastDetail: {}", one_line(detail));
        }
        // No retry count: the C module shows none for a failing job either (observed
        // with 3 errors) although SPEC 2.2 lists an ActivityRetries key.
        if let Some(nr) = self.next_run {
            let _ = writeln!(t, "{p}ActivityNextRun: {}", (nr - now).num_seconds());
        } else if !self.finished {
            let _ = writeln!(t, "{p}Activity: Ongoing");
        }
    }
}

fn job_summary(view: &MdView) -> Option<JobSummary> {
    let r = view.renewal.as_ref()?;
    Some(JobSummary::of(&r.job, r.staged.len()))
}

fn activity_html(view: &MdView, now: DateTime<Utc>) -> String {
    let Some(j) = job_summary(view) else {
        let at = view.snap.renew_at(now);
        if at > now {
            return format!("Renew {}", time_html(at, now));
        }
        // also for manual and static-file MDs (the C module, observed)
        return "Pending".into();
    };
    j.html(now)
}

/// The HTML section (empty without MDs).
pub fn server_status_html(views: &[MdView], now: DateTime<Utc>, check: &CheckAt) -> String {
    if views.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<&MdView> = views.iter().collect();
    sorted.sort_by(|a, b| a.snap.record.md.name.cmp(&b.snap.record.md.name));
    let mut h =
        String::from("<hr>\n<h3>Managed Certificates</h3>\n<table class='md_status'><thead><tr>\n");
    for col in [
        "Domain", "Names", "Status", "Valid", "CA", "Stapling", "CheckAt", "Activity",
    ] {
        let _ = write!(h, "<th class=\"{col}\">{col}</th>");
    }
    h.push_str("</tr>\n</thead><tbody>");
    for (i, v) in sorted.into_iter().enumerate() {
        let md = &v.snap.record.md;
        let class = if i % 2 == 0 { "even" } else { "odd" };
        let _ = write!(h, "<tr class=\"{class}\"><td>{}</td>", escape(&md.name));
        let _ = write!(
            h,
            "<td><div style=\"max-width:400px;\">{}</div></td>",
            escape(&md.domains.join(" "))
        );
        let _ = write!(h, "<td>{}</td>", escape(&status_text(v, now)));
        h.push_str("<td>");
        if let Some(valid) = v.snap.valid() {
            if valid.from > now {
                // always the date here, also when near (as the C module)
                let _ = write!(
                    h,
                    "from <span title='{}' style='white-space: nowrap;'>{}</span> ",
                    format_http_date(valid.from),
                    ymd(valid.from)
                );
            }
            let _ = write!(
                h,
                "until <span title='{} - {}' style='white-space: nowrap;'>{}</span>",
                format_http_date(valid.from),
                format_http_date(valid.until),
                ymd(valid.until)
            );
        }
        h.push_str("</td><td>");
        let links: Vec<String> = cas(v)
            .iter()
            .map(|(n, u)| format!("<a href='{}'>{}</a>", escape(u), escape(n)))
            .collect();
        h.push_str(&links.join(", "));
        let _ = write!(
            h,
            "</td><td>{}</td><td>",
            if md.stapling { "on" } else { "" }
        );
        for (label, c) in v.snap.present() {
            let _ = write!(
                h,
                "<a href=\"{}{}\">{}[{}]</a><br>",
                escape(&check.url),
                escape(&c.sha256),
                escape(&check.name),
                escape(label)
            );
        }
        let _ = write!(h, "</td><td>{}</td></tr>", activity_html(v, now));
    }
    h.push_str("\n</tbody>\n</table>\n");
    h
}

/// `?auto` lines (plain text, `Key: value`) of the MDs; the stapling lines follow from
/// [`super::staplings_auto`].
pub fn server_status_auto(views: &[MdView], now: DateTime<Utc>, check: &CheckAt) -> String {
    let mut sorted: Vec<&MdView> = views.iter().collect();
    sorted.sort_by(|a, b| a.snap.record.md.name.cmp(&b.snap.record.md.name));
    let (mut ok, mut renew, mut errored, mut ready) = (0, 0, 0, 0);
    for v in &sorted {
        let state = v.snap.record.state;
        let j = job_summary(v);
        if state == MdState::Complete {
            ok += 1;
        }
        let renewing = v.renew(now);
        if renewing {
            renew += 1;
        }
        let job_failed = j
            .as_ref()
            .is_some_and(|j| j.errors > 0 || j.error.is_some());
        if (renewing && job_failed) || !matches!(state, MdState::Complete | MdState::Incomplete) {
            errored += 1;
        }
        if renewing && j.as_ref().is_some_and(|j| j.finished) {
            ready += 1;
        }
    }
    let mut t = String::new();
    let _ = writeln!(t, "ManagedCertificatesTotal: {}", sorted.len());
    let _ = writeln!(t, "ManagedCertificatesOK: {ok}");
    let _ = writeln!(t, "ManagedCertificatesRenew: {renew}");
    let _ = writeln!(t, "ManagedCertificatesErrored: {errored}");
    let _ = writeln!(t, "ManagedCertificatesReady: {ready}");
    for (i, v) in sorted.iter().enumerate() {
        let md = &v.snap.record.md;
        let p = format!("ManagedDomain[{i}]");
        let _ = writeln!(t, "{p}Domain: {}", md.name);
        for (k, d) in md.domains.iter().enumerate() {
            let _ = writeln!(t, "{p}Names[{k}]: {d}");
        }
        let _ = writeln!(t, "{p}Status: {}", status_text(v, now));
        if let Some(valid) = v.snap.valid() {
            if valid.from > now {
                let _ = writeln!(t, "{p}ValidFrom: {}", ymd(valid.from));
            }
            let _ = writeln!(t, "{p}ValidUntil: {}", ymd(valid.until));
        }
        for (k, (name, url)) in cas(v).iter().enumerate() {
            let n = if k == 0 { String::new() } else { k.to_string() };
            let _ = writeln!(t, "{p}CAName{n}: {name}");
            let _ = writeln!(t, "{p}CAURL{n}: {url}");
        }
        if md.stapling {
            let _ = writeln!(t, "{p}Stapling: on");
        }
        for (label, c) in v.snap.present() {
            let _ = writeln!(t, "{p}CheckAtType: {label}");
            let _ = writeln!(t, "{p}CheckAtName: {}", check.name);
            let _ = writeln!(t, "{p}CheckAtURL: {}{}", check.url, c.sha256);
            let _ = writeln!(t, "{p}CheckAtFingerprint: {}", c.sha256);
        }
        match job_summary(v) {
            Some(j) => j.auto(&mut t, &p, now),
            None => {
                let at = v.snap.renew_at(now);
                if at > now {
                    let _ = writeln!(t, "{p}ActivityRenew: {}", (at - now).num_seconds());
                } else {
                    let _ = writeln!(t, "{p}Activity: Pending");
                }
            }
        }
    }
    t
}

/// Keep a value on its line: a newline in a CA's detail would forge another key.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::testutil::*;
    use crate::status::{MdSnapshot, Renewal};

    #[test]
    fn html_matches_c_sample_row() {
        let (snap, now) = active_snapshot("a1.test");
        let views = [MdView {
            snap: &snap,
            renewal: None,
            ocsp: Vec::new(),
        }];
        let h = server_status_html(&views, now, &CheckAt::default());
        assert!(h.starts_with("<hr>\n<h3>Managed Certificates</h3>\n<table class='md_status'>"));
        assert!(h.contains(
            "<td>a1.test</td><td><div style=\"max-width:400px;\">a1.test</div></td><td>good</td>"
        ));
        assert!(h.contains("until <span title='Mon, 23 Nov 2026 16:46:13 GMT - Sun, 23 Nov 2031 16:46:12 GMT' style='white-space: nowrap;'>2031-11-23</span>"));
        assert!(h.contains("<a href='https://127.0.0.1:34000/dir'>127.0.0.1</a>"));
        assert!(h.contains("<a href=\"https://crt.sh?q=4b2cbdc06a39b3c483c687bcef1452a4786dc349a0f8cf8b1bc5647aef4fe1ab\">crt.sh[rsa]</a><br>"));
        assert!(h.contains("Renew <span title='Sun, 31 Mar 2030 02:51:01 GMT' style='white-space: nowrap;'>2030-03-31</span>"));
        assert!(server_status_html(&[], now, &CheckAt::default()).is_empty());
    }

    #[test]
    fn auto_matches_c_sample() {
        let (snap, now) = active_snapshot("a1.test");
        let views = [MdView {
            snap: &snap,
            renewal: None,
            ocsp: Vec::new(),
        }];
        let t = server_status_auto(&views, now, &CheckAt::default())
            + &super::super::staplings_auto(&[], now);
        // The C sample says 105703485: its clock was a fraction past the whole second.
        let expected = "ManagedCertificatesTotal: 1\nManagedCertificatesOK: 1\n\
            ManagedCertificatesRenew: 0\nManagedCertificatesErrored: 0\n\
            ManagedCertificatesReady: 0\nManagedDomain[0]Domain: a1.test\n\
            ManagedDomain[0]Names[0]: a1.test\nManagedDomain[0]Status: good\n\
            ManagedDomain[0]ValidUntil: 2031-11-23\nManagedDomain[0]CAName: 127.0.0.1\n\
            ManagedDomain[0]CAURL: https://127.0.0.1:34000/dir\n\
            ManagedDomain[0]CheckAtType: rsa\nManagedDomain[0]CheckAtName: crt.sh\n\
            ManagedDomain[0]CheckAtURL: https://crt.sh?q=4b2cbdc06a39b3c483c687bcef1452a4786dc349a0f8cf8b1bc5647aef4fe1ab\n\
            ManagedDomain[0]CheckAtFingerprint: 4b2cbdc06a39b3c483c687bcef1452a4786dc349a0f8cf8b1bc5647aef4fe1ab\n\
            ManagedDomain[0]ActivityRenew: 105703486\n\
            ManagedStaplingsTotal: 0\nManagedStaplingsOK: 0\nManagedStaplingsRenew: 0\n\
            ManagedStaplingsErrored: 0\n";
        assert_eq!(t, expected);
    }

    #[test]
    fn errored_job_and_hostile_values_are_escaped() {
        let mut rec = missing_snapshot("x.test").record;
        rec.md.ca_urls = vec!["https://ca.test/<script>alert(1)</script>".into()];
        rec.md.domains = vec!["x.test".into(), "\"'><b>".into()];
        let snap = MdSnapshot::new(rec, vec![("rsa".into(), None)], true);
        let now = at("Tue, 24 Nov 2026 11:16:08 GMT");
        let views = [MdView {
            snap: &snap,
            renewal: Some(Renewal {
                job: error_job("x.test"),
                staged: vec![],
            }),
            ocsp: Vec::new(),
        }];
        let h = server_status_html(&views, now, &CheckAt::default());
        assert!(!h.contains("<script>") && !h.contains("<b>") && !h.contains("<https://"));
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains(" Error[Connection refused]:  Unsuccessful in contacting ACME server at &lt;https://127.0.0.1:9/directory&gt;."));
        assert!(h.contains(
            "\nNext run <span title='Tue, 24 Nov 2026 11:16:39 GMT'>in ~31 seconds</span>"
        ));
        let t = server_status_auto(&views, now, &CheckAt::default());
        for line in [
            "ManagedCertificatesRenew: 1",
            "ManagedCertificatesErrored: 1",
            "ManagedDomain[0]Status: incomplete: certificate(rsa) is missing",
            "ManagedDomain[0]CAName: ca.test",
            "ManagedDomain[0]ActivityLastStatus: Connection refused",
            "ManagedDomain[0]ActivityLastProblem: (null)",
            "ManagedDomain[0]ActivityFinished: no",
            "ManagedDomain[0]ActivityNextRun: 31",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing in\n{t}");
        }
    }

    #[test]
    fn hosts_and_relative_times() {
        assert_eq!(url_host("https://127.0.0.1:9/directory"), "127.0.0.1");
        assert_eq!(url_host("https://u@[::1]:8/d"), "::1");
        assert_eq!(url_host("acme.test"), "acme.test");
        let now = at("Tue, 24 Nov 2026 11:00:00 GMT");
        let d = |s: i64| now + chrono::Duration::seconds(s);
        assert_eq!(relative(d(31), now), "in ~31 seconds");
        assert_eq!(relative(d(3 * 3600 + 5), now), "in ~3 hours");
        assert_eq!(relative(d(-2 * 86400), now), "~2 days ago");
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
