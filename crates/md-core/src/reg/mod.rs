//! The registry: managed domains as the store knows them. Syncs the configuration into the
//! store (new, changed, renamed, removed MDs) and activates finished renewals from staging/
//! into domains/ (SPEC 4.4).
//!
//! How httpd's parent uses it in post_config #1 (as root, before privileges drop):
//!
//! ```no_run
//! # use md_core::{reg::*, store::*};
//! # fn f(mds: Vec<md_core::md::ManagedDomain>, wait: Option<std::time::Duration>) {
//! let store = FsStore::open("/etc/apache2/md", StoreOptions {
//!     child_owner: Some((33, 33)), // User/Group, only when started as root
//!     ..Default::default()
//! }).expect("store"); // OpenError: corrupt/newer md_store.json -> startup error
//! let _lock = wait.map(|w| StoreLock::acquire(store.root(), w)); // MDStoreLocks
//! let reg = Registry::new(store);
//! let report = reg.sync(&mds).expect("sync"); // report.errors: per-MD problems
//! let names = reg.staged_names().unwrap_or_default();
//! for (name, result) in reg.load_stagings(names.iter().map(String::as_str)) {
//!     // Ok(Activated) -> AH10068 + `installed` event; Err(e) -> AH10069 (already purged)
//! }
//! // ssl_add_cert_files: reg.cert_files(md, spec) per key spec
//! # }
//! ```
//!
//! The renewal driver (in the child) keeps the same `FsStore` (it holds the secret, which the
//! child could not read from md_store.json) and works in staging/ with `StoreExt`:
//! `save_md`/`save_job`/`save_order`/`save_account`, `save_pkey` (encrypted there) and
//! `save_cert_and_key` (key and certificate become visible together).

mod activate;
mod lock;
mod sync;

pub use activate::{fits, ActivateError, Activation};
pub use lock::{LockError, StoreLock, LOCK_FILE};
pub use sync::{SyncError, SyncReport};

use std::path::PathBuf;

use crate::md::{KeySpec, ManagedDomain};
use crate::store::{files, Group, MdRecord, Store, StoreError, StoreExt};

/// How long activation waits for a child that holds an MD's renewal lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Registry over a store.
#[derive(Debug)]
pub struct Registry<S: Store> {
    store: S,
}

impl<S: Store> Registry<S> {
    /// A registry on `store`.
    pub fn new(store: S) -> Registry<S> {
        Registry { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The active md.json of an MD.
    pub fn get(&self, name: &str) -> Result<Option<MdRecord>, StoreError> {
        self.store.load_md(Group::Domains, name)
    }

    /// Paths of the active key and certificate for `spec` (for mod_ssl), if both exist.
    pub fn cert_files(&self, name: &str, spec: &KeySpec) -> Option<(PathBuf, PathBuf)> {
        let (k, c) = (files::privkey(spec), files::pubcert(spec));
        if self.store.exists(Group::Domains, name, &k)
            && self.store.exists(Group::Domains, name, &c)
        {
            Some((
                self.store.path(Group::Domains, name, &k)?,
                self.store.path(Group::Domains, name, &c)?,
            ))
        } else {
            None
        }
    }

    /// Names with something in staging/ (candidates for [`Registry::load_stagings`]).
    pub fn staged_names(&self) -> Result<Vec<String>, StoreError> {
        self.store.names(Group::Staging)
    }

    /// Activate every staged set among `names` (post_config, SPEC 4.4). A failed set is
    /// purged (with its challenges) and reported; the others go on.
    pub fn load_stagings<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, Result<Activation, ActivateError>)> {
        self.load_stagings_of(names.into_iter().map(|n| (n, None)))
    }

    /// As [`Registry::load_stagings`] for the configured `mds`: a staged set that no longer
    /// fits its MD (a name, key spec or must-staple setting changed since it was ordered) is
    /// refused and purged, so the renewal orders one that does.
    pub fn load_stagings_for(
        &self,
        mds: &[ManagedDomain],
    ) -> Vec<(String, Result<Activation, ActivateError>)> {
        self.load_stagings_of(mds.iter().map(|m| (m.name.as_str(), Some(m))))
    }

    fn load_stagings_of<'a>(
        &self,
        mds: impl IntoIterator<Item = (&'a str, Option<&'a ManagedDomain>)>,
    ) -> Vec<(String, Result<Activation, ActivateError>)> {
        let mut out = Vec::new();
        for (name, md) in mds {
            if !self.store.exists(Group::Staging, name, files::MD) {
                continue;
            }
            // A child (of this or the previous generation) still writes or checks this set:
            // wait a moment (a check takes milliseconds), else leave it to the next restart
            // rather than take half of it or purge it under the writer.
            let deadline = std::time::Instant::now() + LOCK_WAIT;
            let taken = loop {
                match self.store.lock_md(name, false) {
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    other => break other,
                }
            };
            let _lock = match taken {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    out.push((name.to_string(), Ok(Activation::Busy)));
                    continue;
                }
                Err(e) => {
                    let e = ActivateError::Store {
                        name: name.to_string(),
                        source: e,
                    };
                    out.push((name.to_string(), Err(e)));
                    continue;
                }
            };
            let r = self.activate_for(name, md);
            if matches!(r, Err(ref e) if e.purges_staging()) {
                let _ = self.purge_challenges_of(name);
                let _ = self.store.purge(Group::Staging, name);
            }
            out.push((name.to_string(), r));
        }
        out
    }

    /// Remove `challenges/<name>` of every name no MD in `mds` has (startup, as the C module):
    /// material of removed MDs or abandoned renewals. Returns the names removed.
    pub fn purge_unused_challenges(
        &self,
        mds: &[ManagedDomain],
    ) -> Result<Vec<String>, StoreError> {
        let live: std::collections::HashSet<String> = mds
            .iter()
            .flat_map(|m| m.domains.iter().map(|d| d.to_ascii_lowercase()))
            .collect();
        let mut removed = Vec::new();
        for name in self.store.names(Group::Challenges)? {
            if !live.contains(&name.to_ascii_lowercase()) {
                self.store.purge(Group::Challenges, &name)?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    fn purge_challenges_of(&self, name: &str) -> Result<(), StoreError> {
        let domains = match self.store.load_md(Group::Staging, name) {
            Ok(Some(r)) => r.md.domains,
            _ => match self.store.load_md(Group::Domains, name) {
                Ok(Some(r)) => r.md.domains,
                _ => vec![name.to_string()],
            },
        };
        for d in domains {
            self.store.purge(Group::Challenges, &d)?;
        }
        Ok(())
    }
}
