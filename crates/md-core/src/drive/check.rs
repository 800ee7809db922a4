//! One watchdog pass over the watched MDs: decide, per MD, whether it is due for renewal or in
//! its warn window (SPEC 4.3). Running the renewals is the driver's other half.
//!
//! The decision uses only what the parent read at post_config ([`ActiveCerts`]): the active
//! certificates under `domains/` and static MDCertificateFiles are often root-only, and the
//! renewal runs in a child as the `User`. A child that read them itself would see no
//! certificate and order again at every start.

use chrono::{DateTime, Utc};

use super::schedule::{in_warn_window, renew_at, Validity};
use crate::config::values::RenewMode;
use crate::md::ManagedDomain;
use crate::status::MdSnapshot;
use crate::store::MdState;

/// The active certificates of an MD as the parent found them (one entry per key spec, or per
/// static file), and whether they are enough for its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActiveCerts {
    /// Validity per key spec (`None` = missing or unreadable).
    pub certs: Vec<Option<Validity>>,
    /// Why the MD needs new certificates at once (the C module's `state-descr`: a key spec
    /// without certificate, a name not covered, a must-staple mismatch), if it does.
    pub incomplete: Option<String>,
    /// Per key spec: the certificate is present and fits the MD (names, must-staple). A
    /// renewal orders only the specs whose certificate does not fit or is due; the others are
    /// carried over into the new set at activation.
    pub fits: Vec<bool>,
    /// Per key spec: the RFC 9773 id of the certificate (for renewalInfo and `replaces`).
    pub ari_ids: Vec<Option<String>>,
    /// Per key spec: renew now whatever the renew window says (a stored OCSP `revoked`, or
    /// the CA's ARI window has come).
    pub forced: Vec<bool>,
}

impl ActiveCerts {
    /// The facts of a status snapshot (taken by the parent, as root).
    pub fn from_snapshot(s: &MdSnapshot) -> ActiveCerts {
        ActiveCerts {
            certs: s
                .certs
                .iter()
                .map(|(_, c)| c.as_ref().map(|c| c.valid))
                .collect(),
            incomplete: (s.record.state == MdState::Incomplete || s.certs.is_empty()).then(|| {
                s.record
                    .state_descr
                    .clone()
                    .unwrap_or_else(|| "no certificate".into())
            }),
            fits: s
                .certs
                .iter()
                .map(|(_, c)| {
                    c.as_ref()
                        .is_some_and(|c| c.covers_all && c.must_staple == s.record.md.must_staple)
                })
                .collect(),
            ari_ids: s
                .certs
                .iter()
                .map(|(_, c)| c.as_ref().and_then(|c| c.ari_cert_id.clone()))
                .collect(),
            forced: vec![false; s.certs.len()],
        }
    }

    /// Renew key spec `i` now (all of them with `None`), whatever its window says.
    pub fn force(&mut self, i: Option<usize>) {
        self.forced.resize(self.certs.len(), false);
        match i {
            Some(i) => {
                if let Some(f) = self.forced.get_mut(i) {
                    *f = true;
                }
            }
            None => self.forced.iter_mut().for_each(|f| *f = true),
        }
    }

    /// True when a key spec is to be renewed now regardless of its window.
    pub fn any_forced(&self) -> bool {
        self.forced.iter().any(|f| *f)
    }

    /// The validity of key spec `i`'s certificate when it can stay as it is at `now`:
    /// present, fitting the MD and not yet in `md`'s renew window.
    pub fn keeps(&self, i: usize, md: &ManagedDomain, now: DateTime<Utc>) -> Option<Validity> {
        let v = self.certs.get(i).copied().flatten()?;
        let forced = self.forced.get(i).copied().unwrap_or(false);
        (self.fits.get(i).copied().unwrap_or(false)
            && !forced
            && v.window_start(&md.renew_window) > now)
            .then_some(v)
    }

    /// A complete set just staged by this process: it replaces the picture, so that a pass
    /// after the restart that activates it (while this child still runs) does not order again.
    pub fn staged(certs: &[Validity]) -> ActiveCerts {
        ActiveCerts {
            certs: certs.iter().copied().map(Some).collect(),
            incomplete: None,
            fits: vec![true; certs.len()],
            ari_ids: vec![None; certs.len()],
            forced: vec![false; certs.len()],
        }
    }

    /// The earliest end of the present certificates.
    pub fn valid_until(&self) -> Option<DateTime<Utc>> {
        self.certs.iter().flatten().map(|v| v.until).min()
    }
}

/// What a check found for one MD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdCheck {
    /// The MD's name.
    pub name: String,
    /// Renewals are driven for this MD (mode always, or auto without static files).
    pub renews: bool,
    /// When it is due (now or earlier: due).
    pub renew_at: DateTime<Utc>,
    /// A present certificate is in the warn window.
    pub warn: bool,
}

impl MdCheck {
    /// Due for renewal at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.renews && self.renew_at <= now
    }
}

/// Check one MD at `now` against the facts the parent handed over.
pub fn check_md(md: &ManagedDomain, active: &ActiveCerts, now: DateTime<Utc>) -> MdCheck {
    let renews = match md.renew_mode {
        RenewMode::Always => true,
        RenewMode::Auto => md.cert_files.is_empty(),
        RenewMode::Manual => false,
    };
    let renew_at = if active.incomplete.is_some() || active.any_forced() {
        now
    } else {
        renew_at(&active.certs, &md.renew_window, now)
    };
    MdCheck {
        name: md.name.clone(),
        renews,
        renew_at,
        warn: in_warn_window(&active.certs, &md.warn_window, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};

    fn md(lines: &[&str]) -> ManagedDomain {
        crate::md::tests_support::mds_from_config(lines).remove(0)
    }

    /// The parent's picture of `m` with the files under `dir` (as post_config takes it).
    fn picture(m: &ManagedDomain, dir: &std::path::Path) -> ActiveCerts {
        ActiveCerts::from_snapshot(&MdSnapshot::load(m, dir, true))
    }

    fn write_cert(dir: &std::path::Path, m: &ManagedDomain, names: &[&str]) {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = make_fallback_cert(&names, &key).unwrap();
        let d = dir.join("domains").join(&m.name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("pubcert.pem"), cert.to_pem().unwrap()).unwrap();
        std::fs::write(d.join("privkey.pem"), key.to_pem().unwrap()).unwrap();
    }

    #[test]
    fn missing_cert_is_due_now_and_present_one_by_window() {
        let dir = tempfile::tempdir().unwrap();
        let m = md(&["MDRenewWindow 10d", "MDomain a.test"]);
        let now = Utc::now();
        let c = check_md(&m, &picture(&m, dir.path()), now);
        assert!(c.is_due(now) && c.renews && !c.warn);

        // A 14-day certificate with a 10-day window: due in about 4 days.
        write_cert(dir.path(), &m, &["a.test"]);
        let active = picture(&m, dir.path());
        assert_eq!(active.incomplete, None);
        let c = check_md(&m, &active, now);
        assert!(!c.is_due(now));
        let days = (c.renew_at - now).num_hours() as f64 / 24.0;
        assert!((3.9..=4.1).contains(&days), "{days}");
    }

    #[test]
    fn the_check_reads_no_file() {
        // The child cannot read domains/: the decision rests on the picture alone.
        let dir = tempfile::tempdir().unwrap();
        let m = md(&["MDRenewWindow 10d", "MDomain a.test"]);
        write_cert(dir.path(), &m, &["a.test"]);
        let active = picture(&m, dir.path());
        std::fs::remove_dir_all(dir.path().join("domains")).unwrap();
        let now = Utc::now();
        assert!(!check_md(&m, &active, now).is_due(now));
    }

    #[test]
    fn incomplete_mds_are_due_now() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        // A name added to the MD.
        let m = md(&["MDomain a.test www.a.test"]);
        write_cert(dir.path(), &m, &["a.test"]);
        let active = picture(&m, dir.path());
        assert_eq!(
            active.incomplete.as_deref(),
            Some("certificate(rsa) does not cover all domains.")
        );
        assert!(check_md(&m, &active, now).is_due(now));
        // A key spec added: its certificate is missing.
        let m = md(&["MDPrivateKeys rsa2048 secp256r1", "MDomain a.test"]);
        let active = picture(&m, dir.path());
        assert_eq!(
            active.incomplete.as_deref(),
            Some("certificate(secp256r1) is missing")
        );
        assert!(check_md(&m, &active, now).is_due(now));
        // MDMustStaple switched on.
        let m = md(&["MDMustStaple on", "MDomain a.test"]);
        let active = picture(&m, dir.path());
        assert_eq!(
            active.incomplete.as_deref(),
            Some("'must-staple' is requested, but certificate(rsa) has it not enabled.")
        );
        assert!(check_md(&m, &active, now).is_due(now));
    }

    #[test]
    fn an_added_key_spec_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let m = md(&["MDPrivateKeys rsa2048 secp256r1", "MDomain a.test"]);
        write_cert(dir.path(), &m, &["a.test"]);
        let active = picture(&m, dir.path());
        assert!(active.keeps(0, &m, now).is_some(), "rsa: present, fits");
        assert!(active.keeps(1, &m, now).is_none(), "secp256r1: missing");
        let wide = md(&[
            "MDRenewWindow 100d",
            "MDPrivateKeys rsa2048",
            "MDomain a.test",
        ]);
        assert!(active.keeps(0, &wide, now).is_none(), "in its renew window");
    }

    #[test]
    fn a_staged_set_replaces_the_picture() {
        let now = Utc::now();
        let m = md(&["MDomain a.test"]);
        let v = Validity {
            from: now,
            until: now + chrono::Duration::days(90),
        };
        let active = ActiveCerts::staged(&[v]);
        assert!(!check_md(&m, &active, now).is_due(now));
        assert_eq!(active.valid_until(), Some(v.until));
    }

    #[test]
    fn manual_mode_never_renews() {
        let dir = tempfile::tempdir().unwrap();
        let m = md(&["MDRenewMode manual", "MDomain a.test"]);
        let now = Utc::now();
        assert!(!check_md(&m, &picture(&m, dir.path()), now).is_due(now));
    }
}
