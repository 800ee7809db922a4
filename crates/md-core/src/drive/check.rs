//! One watchdog pass over the watched MDs: read the active certificates and decide, per MD,
//! whether it is due for renewal or in its warn window (SPEC 4.3). Running the renewals is
//! the driver's other half.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::schedule::{in_warn_window, renew_at, Validity};
use crate::config::values::RenewMode;
use crate::crypt::CertificateChain;
use crate::md::ManagedDomain;

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
    /// Validity per key spec (`None` = missing or unreadable).
    pub certs: Vec<Option<Validity>>,
}

impl MdCheck {
    /// Due for renewal at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.renews && self.renew_at <= now
    }
}

/// The validity of the active certificate of each key spec: static files, else
/// `domains/<md>/pubcert[.spec].pem`.
pub fn active_validity(md: &ManagedDomain, store_dir: &Path) -> Vec<Option<Validity>> {
    let read = |path: &Path| {
        let pem = std::fs::read(path).ok()?;
        let chain = CertificateChain::from_pem(&pem).ok()?;
        let leaf = chain.leaf();
        Some(Validity {
            from: leaf.not_before(),
            until: leaf.not_after(),
        })
    };
    if !md.cert_files.is_empty() {
        return md.cert_files.iter().map(|f| read(Path::new(f))).collect();
    }
    let dir = store_dir.join("domains").join(&md.name);
    md.private_keys
        .iter()
        .map(|spec| read(&dir.join(format!("pubcert{}.pem", spec.file_suffix()))))
        .collect()
}

/// Check one MD at `now`.
pub fn check_md(md: &ManagedDomain, store_dir: &Path, now: DateTime<Utc>) -> MdCheck {
    let certs = active_validity(md, store_dir);
    let renews = match md.renew_mode {
        RenewMode::Always => true,
        RenewMode::Auto => md.cert_files.is_empty(),
        RenewMode::Manual => false,
    };
    MdCheck {
        name: md.name.clone(),
        renews,
        renew_at: renew_at(&certs, &md.renew_window, now),
        warn: in_warn_window(&certs, &md.warn_window, now),
        certs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};

    fn md(lines: &[&str]) -> ManagedDomain {
        crate::md::tests_support::mds_from_config(lines).remove(0)
    }

    #[test]
    fn missing_cert_is_due_now_and_present_one_by_window() {
        let dir = std::env::temp_dir().join(format!("md-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let m = md(&["MDRenewWindow 10d", "MDomain a.test"]);
        let now = Utc::now();
        let c = check_md(&m, &dir, now);
        assert!(c.is_due(now) && c.renews && !c.warn && c.certs == vec![None]);

        // A 14-day certificate with a 10-day window: due in about 4 days.
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let cert = make_fallback_cert(&m.domains, &key).unwrap();
        let d = dir.join("domains").join("a.test");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("pubcert.pem"), cert.to_pem().unwrap()).unwrap();
        let c = check_md(&m, &dir, now);
        assert!(!c.is_due(now));
        let days = (c.renew_at - now).num_hours() as f64 / 24.0;
        assert!((3.9..=4.1).contains(&days), "{days}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn manual_mode_never_renews() {
        let dir = std::env::temp_dir().join("md-check-none");
        let m = md(&["MDRenewMode manual", "MDomain a.test"]);
        assert!(!check_md(&m, &dir, Utc::now()).is_due(Utc::now()));
    }
}
