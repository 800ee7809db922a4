//! Fixtures for the status tests: snapshots shaped like the C module's samples.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{CertFacts, MdSnapshot};
use crate::drive::schedule::Validity;
use crate::md::tests_support::md_with_keys;
use crate::md::KeySpec;
use crate::store::{parse_http_date, JobRecord, MdRecord, MdState};

pub fn at(s: &str) -> DateTime<Utc> {
    parse_http_date(s).unwrap()
}

/// The certificate of reference/samples/md-status-active-N1.json.
pub fn sample_facts() -> CertFacts {
    CertFacts {
        issuer_name: "/CN=Pebble Intermediate CA 506d24".into(),
        issuer_uri: None,
        valid: Validity {
            from: at("Mon, 23 Nov 2026 16:46:13 GMT"),
            until: at("Sun, 23 Nov 2031 16:46:12 GMT"),
        },
        serial: "0A279E967BD64722".into(),
        sha256: "4b2cbdc06a39b3c483c687bcef1452a4786dc349a0f8cf8b1bc5647aef4fe1ab".into(),
        sha1: "6c27559b5e295ec9cc23df6c04d80e754e2b3055".into(),
        ari_cert_id: Some("yKKTpp1khioPRstyaAdJkgfPmQI.CieelnvWRyI".into()),
        covers_all: true,
        must_staple: false,
    }
}

/// An MD with its one RSA certificate present, and the time of the sample.
pub fn active_snapshot(name: &str) -> (MdSnapshot, DateTime<Utc>) {
    let mut md = md_with_keys(name, vec![KeySpec::Default]);
    md.ca_urls = vec!["https://127.0.0.1:34000/dir".into()];
    md.contacts = vec!["mailto:admin@anchor.test".into()];
    let mut rec = MdRecord::new(md);
    rec.state = MdState::Complete;
    let snap = MdSnapshot::new(rec, vec![("rsa".into(), Some(sample_facts()))], true);
    (snap, at("Mon, 23 Nov 2026 16:46:15 GMT"))
}

/// An MD without certificate.
pub fn missing_snapshot(name: &str) -> MdSnapshot {
    let mut md = md_with_keys(name, vec![KeySpec::Default]);
    md.ca_urls = vec!["https://127.0.0.1:9/directory".into()];
    let mut rec = MdRecord::new(md);
    rec.state = MdState::Incomplete;
    rec.state_descr = Some("certificate(rsa) is missing".into());
    MdSnapshot::new(rec, vec![("rsa".into(), None)], true)
}

/// A job that failed to reach the CA (as the C module writes it).
pub fn error_job(name: &str) -> JobRecord {
    let text = json!({
        "name": name, "finished": false, "notified": false, "notified-renewed": false,
        "next-run": "Tue, 24 Nov 2026 11:16:39 GMT",
        "last-run": "Tue, 24 Nov 2026 11:16:03 GMT",
        "errors": 1,
        "last": {"status": 111, "status-description": "Connection refused",
                 "detail": "Unsuccessful in contacting ACME server at <https://127.0.0.1:9/directory>.",
                 "activity": "Contacting ACME server"},
        "log": {"entries": [{"when": "Tue, 24 Nov 2026 11:16:03 GMT", "type": "starting"}]}
    });
    JobRecord::parse(text.to_string().as_bytes()).unwrap()
}
