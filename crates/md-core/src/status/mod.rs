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
pub use json::{certificate_status, md_status_json, md_status_list, ListWriter, STATUS_VERSION};
pub use stapling::{staplings, staplings_auto, staplings_html, StaplingView};

use crate::md::MdIndex;
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

/// The index of status snapshots (by MD name and by the names they cover).
pub fn index_of(snaps: &[MdSnapshot]) -> MdIndex {
    MdIndex::new(
        snaps
            .iter()
            .map(|s| (s.record.md.name.as_str(), s.record.md.domains.as_slice())),
    )
}

/// The first MD with a domain covering `host`, as the C module's `md_get_by_domain`: equal
/// (case-insensitive, as DNS names are), or a `*.rest` domain and a host whose part from its
/// first dot is `.rest` (one label only: `*.a.test` covers `www.a.test`, not `x.www.a.test`
/// nor `a.test`). `index` is [`index_of`] the snapshots.
pub fn find_md_by_domain<'a>(
    snaps: &'a [MdSnapshot],
    index: &MdIndex,
    host: &str,
) -> Option<&'a MdSnapshot> {
    index.covering(host, true).and_then(|i| snaps.get(i))
}

/// Find the MD for a name (md-status/<name>): an MD name first, else as
/// [`find_md_by_domain`] (the C module's handler does the same two look-ups).
pub fn find_md<'a>(snaps: &'a [MdSnapshot], index: &MdIndex, name: &str) -> Option<&'a MdSnapshot> {
    index
        .by_name(name)
        .or_else(|| index.covering(name, true))
        .and_then(|i| snaps.get(i))
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
        let ix = index_of(&snaps);
        assert_eq!(
            find_md(&snaps, &ix, "WWW.A.test").unwrap().record.md.name,
            "a.test"
        );
        assert_eq!(
            find_md(&snaps, &ix, "www.b.test").unwrap().record.md.name,
            "www.b.test"
        );
        assert!(find_md(&snaps, &ix, "md-status").is_none());

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
        let mut a = missing_snapshot("a");
        a.record.md.domains = vec!["*.a.test".into()];
        let snaps = [a];
        let ix = index_of(&snaps);
        let covered = |h: &str| find_md_by_domain(&snaps, &ix, h).is_some();
        assert!(covered("www.a.test"));
        assert!(covered("WWW.A.Test"));
        assert!(covered("*.a.test"));
        assert!(!covered("x.www.a.test"));
        assert!(!covered("a.test"));
        assert!(!covered("wwwa.test"));
        let mut w = missing_snapshot("w.test");
        w.record.md.domains = vec!["w.test".into(), "*.w.test".into()];
        let mut c = missing_snapshot("*.c.test");
        c.record.md.domains = vec!["*.c.test".into()];
        let snaps = [w, c];
        let ix = index_of(&snaps);
        let name = |n: &str| find_md(&snaps, &ix, n).map(|s| s.record.md.name.clone());
        assert_eq!(name("www.w.test").as_deref(), Some("w.test"));
        assert_eq!(name("*.w.test").as_deref(), Some("w.test"));
        assert_eq!(name("x.c.test").as_deref(), Some("*.c.test"));
        assert_eq!(name("*.c.test").as_deref(), Some("*.c.test"));
        assert_eq!(name("a.b.w.test"), None);
        assert_eq!(name("c.test"), None);
        let host = |n: &str| find_md_by_domain(&snaps, &ix, n).map(|s| s.record.md.name.clone());
        assert_eq!(host("y.c.test").as_deref(), Some("*.c.test"));
        assert_eq!(host("w.test").as_deref(), Some("w.test"));
        assert_eq!(host("a.b.w.test"), None);
    }
}
