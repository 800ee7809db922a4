//! md-status (SPEC 2.1) and `/.httpd/certificate-status` (SPEC 2.3) JSON.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::facts::{certs_json, validity_json};
use super::MdView;
use crate::store::format_http_date;

/// The `"version"` of md-status: the C module's format (a dotted version number) carrying
/// mod_md-rs's own version, so a script can tell the two implementations apart.
pub const STATUS_VERSION: &str = crate::VERSION;

/// The `renewal` object: the staging job (without its log unless asked) plus the staged
/// certificates.
fn renewal_json(view: &MdView, with_logs: bool) -> Option<Value> {
    let r = view.renewal.as_ref()?;
    let mut job = match serde_json::to_value(&r.job) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    if !with_logs {
        job.remove("log");
    }
    let staged = r.staged.iter().map(|(l, c)| (l.as_str(), c));
    job.insert("cert".into(), certs_json(staged));
    Some(Value::Object(job))
}

/// One MD's status object: md.json plus `cert`, `renew-at`, `watched`, `renew`, `renewal`.
pub fn md_status_json(view: &MdView, now: DateTime<Utc>, with_logs: bool) -> Value {
    let snap = view.snap;
    let mut o = snap.md_json();
    let mut certs = certs_json(snap.present());
    if snap.record.md.stapling {
        for (label, c) in snap.present() {
            if let (Some(s), Some(obj)) = (
                view.ocsp.iter().find(|s| s.id == c.sha1),
                certs.get_mut(label).and_then(Value::as_object_mut),
            ) {
                obj.insert("ocsp".into(), s.to_json(with_logs));
            }
        }
    }
    o.insert("cert".into(), certs);
    o.insert(
        "renew-at".into(),
        json!(format_http_date(snap.renew_at(now))),
    );
    o.insert("stapling".into(), json!(snap.record.md.stapling));
    o.insert("watched".into(), json!(snap.watched));
    if view.renew(now) {
        o.insert("renew".into(), json!(true));
        if let Some(r) = renewal_json(view, with_logs) {
            o.insert("renewal".into(), r);
        }
    }
    Value::Object(o)
}

/// `{"version": ..., "managed-domains": [...]}`, sorted by MD name, without job logs.
pub fn md_status_list(views: &[MdView], now: DateTime<Utc>) -> Value {
    let mut sorted: Vec<&MdView> = views.iter().collect();
    sorted.sort_by(|a, b| a.snap.record.md.name.cmp(&b.snap.record.md.name));
    let mds: Vec<Value> = sorted
        .into_iter()
        .map(|v| md_status_json(v, now, false))
        .collect();
    json!({"version": STATUS_VERSION, "managed-domains": mds})
}

/// The md-status document of all MDs written one MD at a time: the bytes of
/// [`md_status_list`] pretty-printed, without holding the whole document (about 1.4 KB per
/// MD: 14 MB at 10,000 MDs) in a request's memory.
pub struct ListWriter {
    /// Everything before the first MD, the indentation of an MD in the list, and what
    /// closes the document.
    head: Vec<u8>,
    indent: Vec<u8>,
    tail: Vec<u8>,
}

impl Default for ListWriter {
    fn default() -> Self {
        // The frame is the pretty-printed document itself with a marker for the list, so
        // it is byte for byte what the whole-document form makes around its MDs.
        const MARK: &str = "\u{1}md\u{1}";
        let frame = super::to_body(&json!({"version": STATUS_VERSION, "managed-domains": [MARK]}));
        let mark = serde_json::to_vec(MARK).unwrap_or_default();
        let at = frame
            .windows(mark.len())
            .position(|w| w == mark.as_slice())
            .unwrap_or(frame.len());
        let line_start = frame[..at]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        ListWriter {
            head: frame[..at].to_vec(),
            indent: frame[line_start..at].to_vec(),
            tail: frame[(at + mark.len()).min(frame.len())..].to_vec(),
        }
    }
}

impl ListWriter {
    /// What comes before the first MD.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// One MD of the list (`first`: no separator before it), as in [`md_status_list`].
    pub fn item(&self, view: &MdView, now: DateTime<Utc>, first: bool) -> Vec<u8> {
        let body = super::to_body(&md_status_json(view, now, false));
        let mut out = Vec::with_capacity(body.len() + body.len() / 8);
        if !first {
            out.extend_from_slice(b",\n");
            out.extend_from_slice(&self.indent);
        }
        // JSON strings hold no raw newline: each one starts a line of the MD's object
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
                out.extend_from_slice(&self.indent);
            }
            out.extend_from_slice(line);
        }
        out
    }

    /// What closes the document after the last MD.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }
}

/// The public certificate facts of one MD for `/.httpd/certificate-status`: the overall
/// validity, per key spec name `{valid, serial, sha256-fingerprint}`, and `renewal.cert` with
/// the staged certificates (md-status form) while a renewal job exists. No names, no logs, nothing of other MDs.
///
/// Static certificate files are labelled `"0"`, `"1"`... in md-status, so their per-spec
/// objects come out empty here, exactly as with the C module (SPEC 11.9).
pub fn certificate_status(view: &MdView) -> Value {
    let snap = view.snap;
    let mut o = Map::new();
    if let Some(v) = snap.valid() {
        o.insert("valid".into(), validity_json(&v));
    }
    for spec in &snap.record.md.private_keys {
        let name = spec.name();
        let facts = snap
            .present()
            .find(|(l, _)| *l == name)
            .map_or_else(|| json!({}), |(_, c)| c.to_public_json());
        o.insert(name.to_string(), facts);
    }
    // Only a renewal that exists is shown: a due one without job adds nothing. The staged
    // certificates appear in their md-status form (issuer too), as with the C module (observed
    // with pebble).
    if let Some(r) = &view.renewal {
        let staged = r.staged.iter().map(|(l, c)| (l.as_str(), c));
        o.insert("renewal".into(), json!({"cert": certs_json(staged)}));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::testutil::*;
    use crate::status::{MdSnapshot, Renewal};

    #[test]
    fn the_list_written_md_by_md_is_the_whole_document() {
        let (a, now) = active_snapshot("a1.test");
        let mut b = missing_snapshot("b\"\n\u{1}.test");
        b.record.md.domains.push("*.b.test".into());
        let snaps = [a, b, missing_snapshot("c.test")];
        let views: Vec<MdView> = snaps
            .iter()
            .map(|snap| MdView {
                snap,
                renewal: None,
                ocsp: Vec::new(),
            })
            .collect();
        let w = ListWriter::default();
        for n in 1..=views.len() {
            let mut sorted: Vec<&MdView> = views[..n].iter().collect();
            sorted.sort_by(|a, b| a.snap.record.md.name.cmp(&b.snap.record.md.name));
            let mut out = w.head().to_vec();
            for (i, v) in sorted.iter().enumerate() {
                out.extend(w.item(v, now, i == 0));
            }
            out.extend_from_slice(w.tail());
            let whole = crate::status::to_body(&md_status_list(&views[..n], now));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(whole).unwrap()
            );
        }
    }

    #[test]
    fn active_md_matches_c_sample_shape() {
        let (snap, now) = active_snapshot("a1.test");
        let v = md_status_json(
            &MdView {
                snap: &snap,
                renewal: None,
                ocsp: Vec::new(),
            },
            now,
            true,
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "name",
                "domains",
                "contacts",
                "transitive",
                "ca",
                "state",
                "renew-mode",
                "renew-window",
                "warn-window",
                "must-staple",
                "proto",
                "stapling",
                "profile-mandatory",
                "ari-renewals",
                "cert",
                "renew-at",
                "watched"
            ]
        );
        let rsa = &v["cert"]["rsa"];
        let rsa_keys: Vec<&str> = rsa
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            rsa_keys,
            [
                "issuer-name",
                "valid",
                "serial",
                "sha256-fingerprint",
                "ari-cert-id"
            ]
        );
        assert_eq!(rsa["valid"]["from"], "Mon, 23 Nov 2026 16:46:13 GMT");
        assert_eq!(v["cert"]["valid"], rsa["valid"]);
        assert_eq!(v["state"], 2);
        assert!(v.get("renew").is_none());
        // 5-year cert, 33% window
        assert_eq!(v["renew-at"], "Sun, 31 Mar 2030 02:51:01 GMT");
    }

    #[test]
    fn missing_cert_renews_now_with_job_and_logs_only_in_single_view() {
        let snap = missing_snapshot("b.test");
        let now = at("Tue, 24 Nov 2026 11:16:07 GMT");
        let job = error_job("b.test");
        let view = MdView {
            snap: &snap,
            renewal: Some(Renewal {
                job,
                staged: vec![],
            }),
            ocsp: Vec::new(),
        };
        let v = md_status_json(&view, now, true);
        assert_eq!(v["state"], 1);
        assert_eq!(v["state-descr"], "certificate(rsa) is missing");
        assert_eq!(v["cert"], json!({}));
        assert_eq!(v["renew-at"], "Tue, 24 Nov 2026 11:16:07 GMT");
        assert_eq!(v["renew"], true);
        assert_eq!(v["renewal"]["last"]["status"], 111);
        assert_eq!(v["renewal"]["cert"], json!({}));
        assert!(v["renewal"]["log"]["entries"].is_array());
        let list = md_status_list(std::slice::from_ref(&view), now);
        assert_eq!(list["version"], crate::VERSION);
        assert!(list["managed-domains"][0]["renewal"].get("log").is_none());
    }

    #[test]
    fn list_sorted_and_eab_masked() {
        let (a, now) = active_snapshot("z.test");
        let mut rec = missing_snapshot("m.test").record;
        rec.md.eab = Some(crate::config::values::Eab::Key {
            kid: "kid1".into(),
            hmac: "secret".into(),
        });
        let b = MdSnapshot::new(rec, vec![("rsa".into(), None)], true);
        let views = [
            MdView {
                snap: &a,
                renewal: None,
                ocsp: Vec::new(),
            },
            MdView {
                snap: &b,
                renewal: None,
                ocsp: Vec::new(),
            },
        ];
        let list = md_status_list(&views, now);
        let names: Vec<&str> = list["managed-domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["m.test", "z.test"]);
        assert_eq!(list["managed-domains"][0]["eab"]["hmac"], "***");
        assert_eq!(list["managed-domains"][0]["eab"]["kid"], "kid1");
        assert!(!list.to_string().contains("secret"));
    }

    #[test]
    fn certificate_status_forms() {
        let (snap, _) = active_snapshot("a.test");
        let view = MdView {
            snap: &snap,
            renewal: None,
            ocsp: Vec::new(),
        };
        let v = certificate_status(&view);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["valid", "rsa"]);
        assert_eq!(v["rsa"]["serial"], "0A279E967BD64722");
        assert!(v["rsa"].get("issuer-name").is_none());

        let missing = missing_snapshot("b.test");
        let view = MdView {
            snap: &missing,
            renewal: None,
            ocsp: Vec::new(),
        };
        let v = certificate_status(&view);
        assert_eq!(v, json!({"rsa": {}}), "due, but no job yet");
        let view = MdView {
            snap: &missing,
            renewal: Some(Renewal {
                job: error_job("b.test"),
                staged: vec![],
            }),
            ocsp: Vec::new(),
        };
        let v = certificate_status(&view);
        assert_eq!(v, json!({"rsa": {}, "renewal": {"cert": {}}}));

        // static files are keyed "0": the per-spec object is empty, as with the C module
        let mut st = snap.clone();
        st.certs[0].0 = "0".into();
        st.record.md.renew_mode = crate::config::values::RenewMode::Manual;
        let view = MdView {
            snap: &st,
            renewal: None,
            ocsp: Vec::new(),
        };
        let v = certificate_status(&view);
        assert_eq!(v["rsa"], json!({}));
        assert!(v["valid"].is_object() && v.get("renewal").is_none());
    }
}
