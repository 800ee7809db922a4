//! Monitoring output (SPEC 2.1-2.3): the md-status JSON, `/.httpd/certificate-status` and the
//! "Managed Certificates" section of server-status (HTML and `?auto`).
//!
//! The work is split the way the processes are: the facts of the *active* certificates live in
//! `domains/`, which only root may read, so the parent collects them once per config
//! generation into an [`MdSnapshot`] (with the md.json form already rendered). A request in a
//! child then only reads the staging job (`staging/<md>/job.json`, readable by the `User`) and
//! the staged certificates, and assembles the output with the current time.

mod facts;
mod html;
mod json;
mod stapling;

pub use facts::{CertFacts, MdSnapshot, Renewal};
pub use html::{server_status_auto, server_status_html, CheckAt};
pub use json::{certificate_status, md_status_json, md_status_list, STATUS_VERSION};
pub use stapling::{staplings, staplings_auto, staplings_html, StaplingView};

use chrono::{DateTime, Utc};

/// One MD as a request sees it: the parent's snapshot plus the staging job read now.
pub struct MdView<'a> {
    /// Facts collected at post_config.
    pub snap: &'a MdSnapshot,
    /// The renewal in `staging/`, if any.
    pub renewal: Option<Renewal>,
    /// Its stapled certificates (MDStapling on).
    pub ocsp: Vec<StaplingView>,
}

impl MdView<'_> {
    /// Renewal is due: the renew window is reached (or a certificate is missing). As with the
    /// C module this does not depend on the renew mode: a manual or static-file MD whose
    /// certificate does not cover its names is reported due too (observed).
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        self.snap.renew_at(now) <= now
    }

    /// `renew: true` is reported: a staging job exists or renewal is due.
    pub fn renew(&self, now: DateTime<Utc>) -> bool {
        self.renewal.is_some() || self.due(now)
    }
}

/// A status document as a response body: pretty-printed, as the C module sends it.
pub fn to_body(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Does the MD domain `pattern` cover the host `name`? The C module's `md_dns_matches`:
/// equal (case-insensitive, as DNS names are), or a `*.rest` wildcard and a name whose part
/// from its first dot is `.rest` (one label only: `*.a.test` covers `www.a.test`, not
/// `x.www.a.test` nor `a.test`).
pub fn dns_matches(pattern: &str, name: &str) -> bool {
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    match (pattern.strip_prefix('*'), name.find('.')) {
        (Some(rest), Some(dot)) => rest.starts_with('.') && rest.eq_ignore_ascii_case(&name[dot..]),
        _ => false,
    }
}

/// The first MD with a domain covering `host` (exactly or by wildcard), as the C module's
/// `md_get_by_domain`: MDs in order, each checked for both.
pub fn find_md_by_domain<'a>(snaps: &'a [MdSnapshot], host: &str) -> Option<&'a MdSnapshot> {
    snaps
        .iter()
        .find(|s| s.record.md.domains.iter().any(|d| dns_matches(d, host)))
}

/// Find the MD for a name (md-status/<name>): an MD name first, else as
/// [`find_md_by_domain`] (the C module's handler does the same two look-ups).
pub fn find_md<'a>(snaps: &'a [MdSnapshot], name: &str) -> Option<&'a MdSnapshot> {
    snaps
        .iter()
        .find(|s| s.record.md.name.eq_ignore_ascii_case(name))
        .or_else(|| find_md_by_domain(snaps, name))
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn find_by_name_then_domain() {
        let (mut a, now) = active_snapshot("a.test");
        a.record.md.domains = vec!["a.test".into(), "www.a.test".into()];
        let b = missing_snapshot("www.b.test");
        let snaps = [a, b];
        assert_eq!(
            find_md(&snaps, "WWW.A.test").unwrap().record.md.name,
            "a.test"
        );
        assert_eq!(
            find_md(&snaps, "www.b.test").unwrap().record.md.name,
            "www.b.test"
        );
        assert!(find_md(&snaps, "md-status").is_none());

        let v = MdView {
            snap: &snaps[1],
            renewal: None,
            ocsp: Vec::new(),
        };
        assert!(v.due(now) && v.renew(now));
        let v = MdView {
            snap: &snaps[0],
            renewal: None,
            ocsp: Vec::new(),
        };
        assert!(!v.due(now) && !v.renew(now));
    }

    #[test]
    fn wildcard_domains_cover_one_label() {
        assert!(dns_matches("*.a.test", "www.a.test"));
        assert!(dns_matches("*.a.test", "WWW.A.Test"));
        assert!(dns_matches("*.a.test", "*.a.test"));
        assert!(!dns_matches("*.a.test", "x.www.a.test"));
        assert!(!dns_matches("*.a.test", "a.test"));
        assert!(!dns_matches("*.a.test", "wwwa.test"));
        assert!(!dns_matches("www.a.test", "x.a.test"));
        let mut w = missing_snapshot("w.test");
        w.record.md.domains = vec!["w.test".into(), "*.w.test".into()];
        let mut c = missing_snapshot("*.c.test");
        c.record.md.domains = vec!["*.c.test".into()];
        let snaps = [w, c];
        let name = |n: &str| find_md(&snaps, n).map(|s| s.record.md.name.clone());
        assert_eq!(name("www.w.test").as_deref(), Some("w.test"));
        assert_eq!(name("*.w.test").as_deref(), Some("w.test"));
        assert_eq!(name("x.c.test").as_deref(), Some("*.c.test"));
        assert_eq!(name("*.c.test").as_deref(), Some("*.c.test"));
        assert_eq!(name("a.b.w.test"), None);
        assert_eq!(name("c.test"), None);
        let host = |n: &str| find_md_by_domain(&snaps, n).map(|s| s.record.md.name.clone());
        assert_eq!(host("y.c.test").as_deref(), Some("*.c.test"));
        assert_eq!(host("w.test").as_deref(), Some("w.test"));
        assert_eq!(host("a.b.w.test"), None);
    }
}
