//! The stapling registry of one server generation (SPEC 6): the certificates mod_ssl primed,
//! each with its current response. Built in the parent at prime (the stored responses are
//! loaded there, so a restart staples at once), inherited by the children at fork, read by
//! every TLS handshake, updated by the OCSP watchdog in one child. Other children learn of a
//! new response from the store file's mtime, re-checked at a bounded rate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use openssl::x509::X509;

use super::id::{group_dir, response_file_name};
use super::stored::{CertStatus, StoredResponse};
use crate::store::Group;

/// A stored response file larger than this is not read (a real one is a few KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// One certificate that we staple.
#[derive(Debug)]
pub struct StapledCert {
    /// Lowercase hex SHA-1 of the certificate's DER (mod_ssl's id).
    pub id: String,
    /// The MD it belongs to; `None` for other certificates (MDStapleOthers).
    pub md: Option<String>,
    /// The certificate.
    pub cert: X509,
    /// Its issuer, from the chain mod_ssl handed over.
    pub issuer: X509,
    /// The OCSP responder URL from the certificate (the first one).
    pub responder: String,
    state: Mutex<CertState>,
}

#[derive(Debug, Default)]
struct CertState {
    /// The response in use.
    resp: Option<StoredResponse>,
    /// mtime of the store file the response came from.
    mtime: Option<SystemTime>,
    /// Earliest time to look at the store file again.
    next_check: Option<DateTime<Utc>>,
}

impl StapledCert {
    /// A certificate to staple, with the response found in the store (if any).
    pub fn new(
        id: String,
        md: Option<String>,
        cert: X509,
        issuer: X509,
        responder: String,
    ) -> StapledCert {
        StapledCert {
            id,
            md,
            cert,
            issuer,
            responder,
            state: Mutex::new(CertState::default()),
        }
    }

    /// What mod_ssl primes: the certificate id (SHA-1 of the DER) and a PEM with the
    /// certificate followed by its issuer. Declined without an issuer or a responder URL.
    pub fn from_chain_pem(
        raw_id: &[u8],
        md: Option<String>,
        pem: &[u8],
    ) -> Result<StapledCert, NotStapled> {
        let chain = X509::stack_from_pem(pem).unwrap_or_default();
        let [cert, issuer, ..] = chain.as_slice() else {
            return Err(NotStapled::NoIssuer);
        };
        let id = crate::crypt::hex_lower(raw_id);
        let Some(responder) = super::request::responder_urls(cert).into_iter().next() else {
            return Err(NotStapled::NoResponder(id));
        };
        Ok(StapledCert::new(
            id,
            md,
            cert.clone(),
            issuer.clone(),
            responder,
        ))
    }

    /// The name of its directory under `ocsp/`: the MD name or `other`.
    pub fn group(&self) -> &str {
        group_dir(self.md.as_deref())
    }

    fn state(&self) -> MutexGuard<'_, CertState> {
        // A panic while holding the lock leaves plain data: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The response in use.
    pub fn response(&self) -> Option<StoredResponse> {
        self.state().resp.clone()
    }

    /// Use `resp` (fetched by this process, or read from the store) from now on.
    pub fn set_response(&self, resp: StoredResponse, mtime: Option<SystemTime>) {
        let mut st = self.state();
        st.resp = Some(resp);
        st.mtime = mtime;
        st.next_check = None;
    }
}

/// Why a primed certificate is not stapled by us.
#[derive(Debug, PartialEq, Eq)]
pub enum NotStapled {
    /// The PEM has no second certificate (the issuer).
    NoIssuer,
    /// The certificate (with this id) names no OCSP responder.
    NoResponder(String),
}

/// All certificates primed in this generation.
#[derive(Debug, Default)]
pub struct OcspRegistry {
    /// The store directory.
    pub store_dir: PathBuf,
    certs: Vec<Arc<StapledCert>>,
    by_id: HashMap<[u8; 20], usize>,
    /// MDStaplingRenewWindow.
    pub renew_window: Option<crate::time::Timeslice>,
}

/// What the handshake hook does for a certificate id.
#[derive(Debug, PartialEq, Eq)]
pub enum Staple {
    /// Not ours: let mod_ssl decide.
    NotOurs,
    /// Ours, but no usable response now: staple nothing.
    Nothing,
    /// Staple these DER bytes.
    Response(Vec<u8>),
}

/// The raw 20-byte id of a lowercase hex id.
fn raw_id(hex: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    if hex.len() != 40 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Read a stored response file directly (children, as the `User` that owns `ocsp/`): its
/// mtime and the response. `None` when missing, too large or unreadable.
fn read_file(path: &Path) -> Option<(SystemTime, StoredResponse)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let resp = StoredResponse::parse(&text).ok()?;
    Some((meta.modified().ok()?, resp))
}

impl OcspRegistry {
    /// An empty registry for the store at `store_dir`.
    pub fn new(store_dir: PathBuf, renew_window: Option<crate::time::Timeslice>) -> Self {
        OcspRegistry {
            store_dir,
            renew_window,
            ..Default::default()
        }
    }

    /// The renew window in effect (default 33 %).
    pub fn window(&self) -> crate::time::Timeslice {
        self.renew_window
            .unwrap_or(super::stored::DEFAULT_RENEW_WINDOW)
    }

    /// Add a primed certificate (a second prime of the same id keeps the first: mod_ssl primes
    /// a certificate once per vhost that uses it).
    pub fn add(&mut self, cert: StapledCert) -> Arc<StapledCert> {
        let Some(raw) = raw_id(&cert.id) else {
            return Arc::new(cert);
        };
        if let Some(i) = self.by_id.get(&raw) {
            return self.certs[*i].clone();
        }
        let cert = Arc::new(cert);
        self.by_id.insert(raw, self.certs.len());
        self.certs.push(cert.clone());
        cert
    }

    /// Every primed certificate, in prime order.
    pub fn certs(&self) -> &[Arc<StapledCert>] {
        &self.certs
    }

    /// True when nothing was primed.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The certificate with this raw id.
    pub fn get(&self, id: &[u8]) -> Option<&Arc<StapledCert>> {
        let raw: [u8; 20] = id.try_into().ok()?;
        self.by_id.get(&raw).map(|i| &self.certs[*i])
    }

    /// Path of the stored response of `c`.
    pub fn file_of(&self, c: &StapledCert) -> PathBuf {
        self.store_dir
            .join(Group::Ocsp.dir())
            .join(c.group())
            .join(response_file_name(&c.id))
    }

    /// Re-read the store file of `c` if it changed since the response in memory was taken;
    /// returns the response in use afterwards.
    pub fn refresh_from_store(&self, c: &StapledCert) -> Option<StoredResponse> {
        let path = self.file_of(c);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut st = c.state();
        if mtime.is_some() && mtime != st.mtime {
            if let Some((m, resp)) = read_file(&path) {
                st.resp = Some(resp);
                st.mtime = Some(m);
            }
        }
        st.resp.clone()
    }

    /// The handshake's answer for certificate id `id` at `now` (SPEC 6 `ssl_ocsp_get_resp`).
    /// Looks at the store file (the watchdog may run in another child) when there is no
    /// response in memory, at every handshake (a `stat` of a missing file: the first response
    /// is stapled by every child at once), or when the one in memory is in its renew window:
    /// at most once an hour while more than a day is left, once a minute while more than a
    /// minute is left, else once a second. An expired response is never stapled.
    pub fn staple(&self, id: &[u8], now: DateTime<Utc>) -> Staple {
        let Some(c) = self.get(id) else {
            return Staple::NotOurs;
        };
        let window = self.window();
        let recheck = {
            let st = c.state();
            let wanted = match &st.resp {
                None => true,
                Some(r) => r.needs_renewal(&window, now) || r.valid.until <= now,
            };
            wanted && st.next_check.map_or(true, |t| now >= t)
        };
        if recheck {
            self.refresh_from_store(c);
            let mut st = c.state();
            let left = st.resp.as_ref().map(|r| r.valid.until - now);
            let pause = match left {
                None => ChronoDuration::zero(),
                Some(l) if l > ChronoDuration::days(1) => ChronoDuration::hours(1),
                Some(l) if l > ChronoDuration::minutes(1) => ChronoDuration::minutes(1),
                Some(_) => ChronoDuration::seconds(1),
            };
            st.next_check = Some(now + pause);
        }
        match c.state().resp.as_ref() {
            Some(r) if r.valid.until > now && r.valid.from <= now + ChronoDuration::minutes(5) => {
                Staple::Response(r.der.clone())
            }
            _ => Staple::Nothing,
        }
    }

    /// True when a certificate of MD `md` has a stored `revoked` response (the renewal
    /// watchdog then renews at once). Reads the store: the OCSP watchdog may run in another
    /// child.
    pub fn revoked_in(&self, md: &str) -> bool {
        self.certs
            .iter()
            .filter(|c| c.md.as_deref() == Some(md))
            .any(|c| {
                self.refresh_from_store(c)
                    .is_some_and(|r| r.status == CertStatus::Revoked)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};
    use crate::drive::schedule::Validity;

    fn cert() -> X509 {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        make_fallback_cert(&["a.test".to_string()], &key)
            .unwrap()
            .x509()
            .clone()
    }

    fn resp(status: CertStatus, from: DateTime<Utc>, hours: i64, der: u8) -> StoredResponse {
        StoredResponse {
            status,
            valid: Validity {
                from,
                until: from + ChronoDuration::hours(hours),
            },
            der: vec![0x30, 0x01, der],
        }
    }

    fn registry(dir: &Path) -> (OcspRegistry, Vec<u8>) {
        let c = cert();
        let id = super::super::id::cert_id(&c).unwrap();
        let raw = raw_id(&id).unwrap().to_vec();
        let mut reg = OcspRegistry::new(dir.to_path_buf(), None);
        reg.add(StapledCert::new(
            id,
            Some("a.test".into()),
            c.clone(),
            c,
            "http://127.0.0.1:1/".into(),
        ));
        (reg, raw)
    }

    fn write(reg: &OcspRegistry, r: &StoredResponse) {
        let path = reg.file_of(&reg.certs()[0]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r.to_json_string()).unwrap();
    }

    #[test]
    fn unknown_ids_decline_and_known_without_response_staple_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, raw) = registry(dir.path());
        let now = Utc::now();
        assert_eq!(reg.staple(&[0u8; 20], now), Staple::NotOurs);
        assert_eq!(reg.staple(&raw[..5], now), Staple::NotOurs);
        assert_eq!(reg.staple(&raw, now), Staple::Nothing);
    }

    #[test]
    fn a_new_store_file_is_picked_up_at_once_then_at_a_bounded_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, raw) = registry(dir.path());
        let now = Utc::now();
        assert_eq!(reg.staple(&raw, now), Staple::Nothing);
        let r = resp(CertStatus::Good, now - ChronoDuration::hours(1), 24, 1);
        write(&reg, &r);
        // without a response, every handshake looks: the first one is stapled at once
        assert_eq!(reg.staple(&raw, now), Staple::Response(r.der.clone()));
        // with one (in its renew window: 1 h left of 24 h), not again within the second...
        let late = r.valid.until - ChronoDuration::minutes(30);
        assert_eq!(reg.staple(&raw, late), Staple::Response(r.der.clone()));
        let newer = resp(CertStatus::Good, now, 24, 2);
        write(&reg, &newer);
        assert_eq!(reg.staple(&raw, late), Staple::Response(r.der.clone()));
        // ... but after it
        let later = late + ChronoDuration::minutes(2);
        assert_eq!(reg.staple(&raw, later), Staple::Response(newer.der.clone()));
        // an expired response is not stapled
        let gone = newer.valid.until + ChronoDuration::seconds(1);
        assert_eq!(reg.staple(&raw, gone), Staple::Nothing);
    }

    #[test]
    fn a_response_outside_its_window_is_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, raw) = registry(dir.path());
        let now = Utc::now();
        let r = resp(CertStatus::Good, now - ChronoDuration::hours(1), 48, 1);
        reg.certs()[0].set_response(r.clone(), None);
        // a newer file is not looked at while the response is fresh
        write(&reg, &resp(CertStatus::Good, now, 48, 2));
        assert_eq!(reg.staple(&raw, now), Staple::Response(r.der.clone()));
        // in the renew window (last 33 % of 48 h), the file is read
        let late = r.valid.until - ChronoDuration::hours(10);
        assert_eq!(
            reg.staple(&raw, late),
            Staple::Response(vec![0x30, 0x01, 2])
        );
    }

    #[test]
    fn revoked_is_read_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _) = registry(dir.path());
        let now = Utc::now();
        assert!(!reg.revoked_in("a.test"));
        write(&reg, &resp(CertStatus::Revoked, now, 24, 1));
        assert!(reg.revoked_in("a.test"));
        assert!(!reg.revoked_in("b.test"));
    }

    #[test]
    fn priming_twice_keeps_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reg, _) = registry(dir.path());
        let c = reg.certs()[0].cert.clone();
        let id = reg.certs()[0].id.clone();
        reg.add(StapledCert::new(id, None, c.clone(), c, "x".into()));
        assert_eq!(reg.certs().len(), 1);
        assert_eq!(reg.certs()[0].md.as_deref(), Some("a.test"));
    }
}
