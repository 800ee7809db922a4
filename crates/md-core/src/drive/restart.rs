//! MDActivationRestart (beyond the C module, whose #1 complaint is "who restarts httpd?"):
//! decide in the httpd parent whether a finished renewal is ready to be activated, so that the
//! parent can do the graceful restart itself.

use chrono::{DateTime, Utc};

use crate::crypt::Certificate;
use crate::md::ManagedDomain;
use crate::store::{Group, Store, StoreExt};

/// A staged set that is ready: finished, its ready time (MDActivationDelay) reached, and
/// every key spec's key and certificate present, matching and covering the MD's names. Only
/// such a set may cause a restart: the restart activates it, and a restart for a set that
/// activation would reject would only repeat.
pub fn staged_ready<S: Store>(
    store: &S,
    md: &ManagedDomain,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let job = store.load_job(Group::Staging, &md.name).ok()??;
    if !job.finished {
        return None;
    }
    let ready = job.valid_from.unwrap_or(now);
    if ready > now {
        return None;
    }
    for spec in &md.private_keys {
        let (_, chain) = store
            .load_cert_and_key(Group::Staging, &md.name, spec)
            .ok()??;
        let leaf = Certificate::from_x509(chain.first()?.clone());
        if !leaf.covers(&md.domains) || leaf.not_after() <= now {
            return None;
        }
    }
    Some(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FsStore, JobRecord, StoreOptions};

    #[test]
    fn only_finished_ready_and_complete_sets() {
        let dir = std::env::temp_dir().join(format!("md-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FsStore::open(&dir, StoreOptions::default()).unwrap();
        let md = crate::md::tests_support::md_with_keys(
            "a.test",
            vec![crate::md::KeySpec::Ec {
                curve: "P-256".into(),
            }],
        );
        let now = Utc::now();
        assert_eq!(staged_ready(&store, &md, now), None);
        let mut job = JobRecord {
            name: "a.test".into(),
            finished: true,
            ..Default::default()
        };
        job.valid_from = Some(now + chrono::Duration::hours(1));
        store.save_job(Group::Staging, "a.test", &job).unwrap();
        assert_eq!(staged_ready(&store, &md, now), None, "not ready yet");
        job.valid_from = Some(now);
        store.save_job(Group::Staging, "a.test", &job).unwrap();
        assert_eq!(
            staged_ready(&store, &md, now),
            None,
            "no certificate staged"
        );
        let key = crate::crypt::PrivateKey::generate(crate::crypt::KeyType::Ec(
            crate::crypt::EcCurve::P256,
        ))
        .unwrap();
        let cert = crate::crypt::make_fallback_cert(&md.domains, &key).unwrap();
        let spec = &md.private_keys[0];
        store
            .save_cert_and_key(
                Group::Staging,
                "a.test",
                spec,
                key.pkey(),
                &[cert.x509().clone()],
            )
            .unwrap();
        assert!(staged_ready(&store, &md, now).is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
