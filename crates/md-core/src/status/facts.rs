//! What the status output shows about certificates, collected from the store and static files.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::crypt::{Certificate, CertificateChain, CryptError};
use crate::drive::schedule::{self, Validity};
use crate::md::ManagedDomain;
use crate::store::{files, format_http_date, JobRecord, MdRecord, MdState};

/// The facts of one certificate that the status output shows.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFacts {
    /// Issuer DN in OpenSSL's oneline form.
    pub issuer_name: String,
    /// caIssuers URI from AIA.
    pub issuer_uri: Option<String>,
    /// notBefore / notAfter.
    pub valid: Validity,
    /// Serial, upper-case hex.
    pub serial: String,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
    /// SHA-1 of the DER, lower-case hex: the id of a stapled certificate.
    pub sha1: String,
    /// RFC 9773 certificate id.
    pub ari_cert_id: Option<String>,
    /// All names the certificate covers (for the coverage check).
    pub(crate) covers_all: bool,
    /// It has the TLS feature `status_request` (MDMustStaple).
    pub must_staple: bool,
}

impl CertFacts {
    /// The facts of `cert`; `domains` are the names it should cover.
    pub fn of(cert: &Certificate, domains: &[String]) -> Result<CertFacts, CryptError> {
        Ok(CertFacts {
            issuer_name: cert.issuer_name(),
            issuer_uri: cert.issuer_uri(),
            valid: Validity {
                from: cert.not_before(),
                until: cert.not_after(),
            },
            serial: cert.serial_hex(),
            sha256: cert.sha256_fingerprint()?,
            sha1: crate::ocsp::cert_id(cert.x509())?,
            ari_cert_id: cert.ari_cert_id(),
            covers_all: cert.covers(domains),
            must_staple: cert.must_staple(),
        })
    }

    /// The leaf of the PEM chain in `path`; `None` when missing or unparseable.
    pub fn from_file(path: &Path, domains: &[String]) -> Option<CertFacts> {
        let pem = std::fs::read(path).ok()?;
        let chain = CertificateChain::from_pem(&pem).ok()?;
        CertFacts::of(chain.leaf(), domains).ok()
    }

    /// The md-status form (key order as the C module).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("issuer-name".into(), json!(self.issuer_name));
        if let Some(u) = &self.issuer_uri {
            o.insert("issuer-uri".into(), json!(u));
        }
        o.insert("valid".into(), validity_json(&self.valid));
        o.insert("serial".into(), json!(self.serial));
        o.insert("sha256-fingerprint".into(), json!(self.sha256));
        if let Some(id) = &self.ari_cert_id {
            o.insert("ari-cert-id".into(), json!(id));
        }
        Value::Object(o)
    }

    /// The certificate-status form: public facts only.
    pub fn to_public_json(&self) -> Value {
        json!({
            "valid": validity_json(&self.valid),
            "serial": self.serial,
            "sha256-fingerprint": self.sha256,
        })
    }
}

/// `{"from": ..., "until": ...}` in RFC 1123 GMT.
pub(crate) fn validity_json(v: &Validity) -> Value {
    json!({"from": format_http_date(v.from), "until": format_http_date(v.until)})
}

/// The window in which all of `certs` are valid (latest start, earliest end).
pub(crate) fn intersection<'a>(certs: impl Iterator<Item = &'a CertFacts>) -> Option<Validity> {
    certs.map(|c| c.valid).reduce(|a, b| Validity {
        from: a.from.max(b.from),
        until: a.until.min(b.until),
    })
}

/// `{"<label>": {...}, ..., "valid": {...}}` for the present certificates.
pub(crate) fn certs_json<'a>(certs: impl Iterator<Item = (&'a str, &'a CertFacts)>) -> Value {
    let mut o = Map::new();
    let mut present = Vec::new();
    for (label, c) in certs {
        o.insert(label.to_string(), c.to_json());
        present.push(c);
    }
    if let Some(v) = intersection(present.into_iter()) {
        o.insert("valid".into(), validity_json(&v));
    }
    Value::Object(o)
}

/// One MD as the parent knows it after post_config. Immutable afterwards, so worker threads
/// may share it.
#[derive(Debug, Clone)]
pub struct MdSnapshot {
    /// Settings and assessed state (the md.json content).
    pub record: MdRecord,
    /// The md.json form with the EAB hmac masked, rendered once as compact JSON text: a
    /// parsed map was 5 KB per MD, the text is about 1 KB (see [`MdSnapshot::md_json`]).
    md_json: Box<str>,
    /// Active certificates: (label, facts). Labels are key spec names (`rsa`, a curve), or
    /// `"0"`, `"1"`... for static certificate files, as the C module keys them.
    pub certs: Vec<(String, Option<CertFacts>)>,
    /// The MD is watched by the renewal watchdog.
    pub watched: bool,
}

impl MdSnapshot {
    /// Collect the facts of `md`: static files, else `domains/<md>/pubcert[.spec].pem`; the
    /// stored md.json (account, CA used) when there is one. Reads root-only files: call in the
    /// parent before privileges drop.
    pub fn load(md: &ManagedDomain, store_dir: &Path, watched: bool) -> MdSnapshot {
        MdSnapshot::load_cached(md, store_dir, watched, &crate::crypt::PairCache::new())
    }

    /// [`MdSnapshot::load`], checking the active pairs through `pairs` (each unchanged pair
    /// parsed once, also across restarts).
    pub fn load_cached(
        md: &ManagedDomain,
        store_dir: &Path,
        watched: bool,
        pairs: &crate::crypt::PairCache,
    ) -> MdSnapshot {
        let domains_dir = store_dir.join("domains").join(&md.name);
        let certs: Vec<(String, Option<CertFacts>)> = if md.cert_files.is_empty() {
            crate::serve::store_pair_paths(md, store_dir)
                .map(|(spec, cert, key)| {
                    // a pair mod_ssl cannot load is no certificate (see serve::cert_files)
                    let facts = pairs
                        .check(&cert, &key)
                        .ok()
                        .and_then(|p| p.facts_for(&md.domains));
                    (spec.name().to_string(), facts)
                })
                .collect()
        } else {
            md.cert_files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        i.to_string(),
                        CertFacts::from_file(Path::new(f), &md.domains),
                    )
                })
                .collect()
        };
        let stored = std::fs::read(domains_dir.join(files::MD))
            .ok()
            .and_then(|d| MdRecord::parse(&d).ok());
        let mut record = match stored {
            Some(mut r) => {
                r.update_from_config(md);
                r
            }
            None => MdRecord::new(md.clone()),
        };
        let (state, descr) = assess(md, &certs);
        record.state = state;
        record.state_descr = descr;
        MdSnapshot::new(record, certs, watched)
    }

    /// A snapshot from parts (tests, other stores).
    pub fn new(
        record: MdRecord,
        certs: Vec<(String, Option<CertFacts>)>,
        watched: bool,
    ) -> MdSnapshot {
        let mut md_json = match serde_json::from_slice(&record.to_json()) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        };
        // The EAB hmac is a credential: status output shows only that one is set.
        if let Some(Value::Object(eab)) = md_json.get_mut("eab") {
            if eab.contains_key("hmac") {
                eab.insert("hmac".into(), json!("***"));
            }
        }
        MdSnapshot {
            record,
            md_json: Value::Object(md_json).to_string().into_boxed_str(),
            certs,
            watched,
        }
    }

    /// The md.json form with the EAB hmac masked (the status output's base object).
    pub fn md_json(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.md_json) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        }
    }

    /// The present active certificates.
    pub fn present(&self) -> impl Iterator<Item = (&str, &CertFacts)> {
        self.certs
            .iter()
            .filter_map(|(l, c)| c.as_ref().map(|c| (l.as_str(), c)))
    }

    /// The window in which all present certificates are valid.
    pub fn valid(&self) -> Option<Validity> {
        intersection(self.present().map(|(_, c)| c))
    }

    /// When renewal is due: now for an incomplete MD (a missing certificate, or one not
    /// covering all names), else the start of the renew window.
    pub fn renew_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.record.state == MdState::Incomplete {
            return now;
        }
        let v: Vec<Option<Validity>> = self
            .certs
            .iter()
            .map(|(_, c)| c.as_ref().map(|c| c.valid))
            .collect();
        schedule::renew_at(&v, &self.record.md.renew_window, now)
    }
}

/// The MD's state from its certificates, with the C module's descriptions. They name the key
/// spec, also for static files (file `i` goes with key spec `i`, as in the C module).
fn assess(md: &ManagedDomain, certs: &[(String, Option<CertFacts>)]) -> (MdState, Option<String>) {
    for (i, (label, c)) in certs.iter().enumerate() {
        let name = md.private_keys.get(i).map_or(label.as_str(), |k| k.name());
        match c {
            None => {
                return (
                    MdState::Incomplete,
                    Some(format!("certificate({name}) is missing")),
                )
            }
            // static files too: the C module reports those incomplete as well (observed)
            Some(c) if !c.covers_all => {
                return (
                    MdState::Incomplete,
                    Some(crate::md::descr_not_covered(name)),
                )
            }
            Some(c) if c.must_staple != md.must_staple => {
                let descr = crate::md::descr_must_staple(md.must_staple, name);
                return (MdState::Incomplete, Some(descr));
            }
            Some(_) => {}
        }
    }
    if certs.is_empty() {
        return (MdState::Incomplete, None);
    }
    (MdState::Complete, None)
}

/// A renewal in progress or finished in `staging/<md>/`: its job and the certificates staged.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// `staging/<md>/job.json`.
    pub job: JobRecord,
    /// Staged certificates per key spec name.
    pub staged: Vec<(String, CertFacts)>,
}

impl Renewal {
    /// Read the staging job of `md` (readable by the child's user); `None` when there is none.
    pub fn load(md: &ManagedDomain, store_dir: &Path) -> Option<Renewal> {
        let dir = store_dir.join("staging").join(&md.name);
        let text = std::fs::read(dir.join(files::JOB)).ok()?;
        let job = JobRecord::parse(&text).ok()?;
        let staged = md
            .private_keys
            .iter()
            .filter_map(|spec| {
                let f = CertFacts::from_file(&dir.join(files::pubcert(spec)), &md.domains)?;
                Some((spec.name().to_string(), f))
            })
            .collect();
        Some(Renewal { job, staged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};
    use crate::md::tests_support::md_with_keys;
    use crate::md::KeySpec;

    fn cert_for(names: &[&str]) -> Vec<u8> {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        make_fallback_cert(&names, &key).unwrap().to_pem().unwrap()
    }

    /// `pubcert<sfx>.pem` and `privkey<sfx>.pem` of a new pair for `names` in `d`.
    fn put_pair(d: &std::path::Path, sfx: &str, names: &[&str]) {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = make_fallback_cert(&names, &key).unwrap();
        std::fs::write(d.join(format!("pubcert{sfx}.pem")), cert.to_pem().unwrap()).unwrap();
        std::fs::write(d.join(format!("privkey{sfx}.pem")), key.to_pem().unwrap()).unwrap();
    }

    #[test]
    fn store_certs_per_key_spec() {
        let dir = tempfile::tempdir().unwrap();
        let ec = KeySpec::Ec {
            curve: "secp256r1".into(),
        };
        let md = md_with_keys("a.test", vec![ec, KeySpec::Default]);
        let d = dir.path().join("domains").join("a.test");
        std::fs::create_dir_all(&d).unwrap();
        put_pair(&d, ".secp256r1", &["a.test"]);
        let now = Utc::now();
        let s = MdSnapshot::load(&md, dir.path(), true);
        assert_eq!(s.record.state, MdState::Incomplete);
        assert_eq!(
            s.record.state_descr.as_deref(),
            Some("certificate(rsa) is missing")
        );
        assert_eq!(s.renew_at(now), now, "incomplete: due now");
        let labels: Vec<&str> = s.present().map(|(l, _)| l).collect();
        assert_eq!(labels, ["secp256r1"]);
        let f = s.present().next().unwrap().1;
        assert!(f
            .serial
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_lowercase()));
        assert_eq!(f.sha256.len(), 64);

        // a certificate whose key is not beside it (or does not match) is no certificate
        std::fs::write(d.join("pubcert.pem"), cert_for(&["a.test"])).unwrap();
        let s = MdSnapshot::load(&md, dir.path(), true);
        assert_eq!(s.record.state, MdState::Incomplete);
        std::fs::copy(d.join("privkey.secp256r1.pem"), d.join("privkey.pem")).unwrap();
        let s = MdSnapshot::load(&md, dir.path(), true);
        assert_eq!(s.record.state, MdState::Incomplete);
        put_pair(&d, "", &["a.test"]);
        let s = MdSnapshot::load(&md, dir.path(), true);
        assert_eq!(s.record.state, MdState::Complete);
        assert_eq!(s.record.state_descr, None);
        assert!(s.renew_at(now) > now);
        assert_eq!(s.md_json()["state"], 2);
    }

    #[test]
    fn static_files_are_indexed_and_must_cover_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.crt");
        std::fs::write(&f, cert_for(&["other.test"])).unwrap();
        let mut md = md_with_keys("s.test", vec![KeySpec::Default]);
        md.cert_files = vec![f.display().to_string()];
        let s = MdSnapshot::load(&md, dir.path(), false);
        assert_eq!(s.certs[0].0, "0");
        assert_eq!(
            s.record.state_descr.as_deref(),
            Some("certificate(rsa) does not cover all domains.")
        );
        assert!(!s.watched);
    }
}
