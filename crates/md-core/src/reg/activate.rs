//! Activation of a finished staging set: `staging/<md>` -> `domains/<md>` (SPEC 4.4).

use crate::store::{
    files, keys, AccountRecord, FileKind, Group, MdState, Store, StoreError, StoreExt,
};

use super::Registry;
use crate::crypt::Certificate;
use crate::md::{KeySpec, ManagedDomain};

/// Does `cert` (of key spec `spec`) serve `md` as configured? `Err` says why not, in the
/// C module's `state-descr` words.
pub fn fits(md: &ManagedDomain, spec: &KeySpec, cert: &Certificate) -> Result<(), String> {
    if !cert.covers(&md.domains) {
        return Err(crate::md::descr_not_covered(spec.name()));
    }
    if cert.must_staple() != md.must_staple {
        return Err(crate::md::descr_must_staple(md.must_staple, spec.name()));
    }
    Ok(())
}

/// Highest account counter (ACME-<host>-0000 .. -0999).
const MAX_ACCOUNT: u32 = 999;

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The staged set is now active; the previous directory went to `archive/<archived>`.
    Activated {
        /// Archive name of the previous `domains/<md>`, if there was one.
        archived: Option<String>,
        /// Account id of a staged account that was moved into accounts/.
        account: Option<String>,
    },
    /// Staging holds no complete set yet (a renewal in progress): left alone.
    NotReady,
    /// The staged set was already active (an earlier activation crashed before cleaning up).
    AlreadyActive,
    /// A child holds the MD's renewal lock (it is still writing the set): left alone.
    Busy,
}

/// Why a staged set could not be activated.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// `staging/<md>/md.json` is unreadable.
    #[error("staged md.json of {name}: {source}")]
    BadMd {
        /// MD name.
        name: String,
        /// Cause.
        source: StoreError,
    },
    /// md.json does not say which CA issued the certificates.
    #[error("staged set of {0} has no effective CA url (ca.url)")]
    NoCaUrl(String),
    /// A key spec lacks its key, or the key is unreadable.
    #[error("staged set of {name}: private key for {spec}: {detail}")]
    BadKey {
        /// MD name.
        name: String,
        /// Key spec name.
        spec: String,
        /// What is wrong.
        detail: String,
    },
    /// The staged set does not fit the MD as configured now.
    #[error("staged set of {name} does not fit the configuration: {why}")]
    Stale {
        /// MD name.
        name: String,
        /// What differs (the C module's state-descr wording).
        why: String,
    },
    /// A certificate does not belong to its key.
    #[error("staged set of {name}: certificate({spec}) does not match its private key")]
    Mismatch {
        /// MD name.
        name: String,
        /// Key spec name.
        spec: String,
    },
    /// Reading or writing the store failed.
    #[error("activating {name}: {source}")]
    Store {
        /// MD name.
        name: String,
        /// Cause.
        source: StoreError,
    },
}

impl ActivateError {
    /// The staged set is unusable and is removed (C module 2.4.28); a store error (disk full,
    /// permissions) leaves it for the next start.
    pub fn purges_staging(&self) -> bool {
        !matches!(self, ActivateError::Store { .. })
    }
}

impl<S: Store> Registry<S> {
    /// Activate `staging/<name>` if it holds a complete, valid set.
    pub fn activate(&self, name: &str) -> Result<Activation, ActivateError> {
        self.activate_for(name, None)
    }

    /// Activate `staging/<name>` if it holds a complete, valid set that fits `md` (when
    /// given): every configured key spec, all names covered, must-staple as configured.
    pub fn activate_for(
        &self,
        name: &str,
        md: Option<&ManagedDomain>,
    ) -> Result<Activation, ActivateError> {
        let st = &self.store;
        let serr = |source| ActivateError::Store {
            name: name.to_string(),
            source,
        };
        let staged = match st.load_md(Group::Staging, name) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Activation::NotReady),
            Err(source) => {
                return Err(ActivateError::BadMd {
                    name: name.into(),
                    source,
                })
            }
        };
        let specs = staged.md.private_keys.clone();
        // Where each key spec's pair comes from: staging, or (a spec the renewal did not need
        // to order, e.g. when a second key spec was added) the active set, carried over. A
        // staged key without its certificate is a renewal in progress: not ready.
        let mut sources = Vec::new();
        for s in &specs {
            let (k, c) = (files::privkey(s), files::pubcert(s));
            if st.exists(Group::Staging, name, &c) {
                sources.push(Group::Staging);
            } else if !st.exists(Group::Staging, name, &k)
                && st.exists(Group::Domains, name, &k)
                && st.exists(Group::Domains, name, &c)
            {
                sources.push(Group::Domains);
            } else {
                return Ok(Activation::NotReady);
            }
        }
        if let Some(missing) = md.and_then(|m| m.private_keys.iter().find(|s| !specs.contains(s))) {
            return Err(ActivateError::Stale {
                name: name.into(),
                why: format!("certificate({}) is missing", missing.name()),
            });
        }
        if staged.ca_url.is_none() {
            return Err(ActivateError::NoCaUrl(name.into()));
        }
        let mut out: Vec<(String, Vec<u8>, FileKind)> = Vec::new();
        let mut all_same = true;
        for (spec, &src) in specs.iter().zip(&sources) {
            let bad = |detail: String| ActivateError::BadKey {
                name: name.into(),
                spec: spec.name().into(),
                detail,
            };
            let key = st
                .load_pkey(src, name, &files::privkey(spec))
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad("missing".into()))?;
            let cert_pem = st
                .load(src, name, &files::pubcert(spec))
                .map_err(serr)?
                .unwrap_or_default();
            let chain = keys::chain_from_pem(&cert_pem).map_err(|d| ActivateError::BadKey {
                name: name.into(),
                spec: spec.name().into(),
                detail: format!("certificate: {d}"),
            })?;
            if !keys::key_matches_cert(&key, &chain[0]) {
                return Err(ActivateError::Mismatch {
                    name: name.into(),
                    spec: spec.name().into(),
                });
            }
            if let Some(md) = md {
                let leaf = Certificate::from_x509(chain[0].clone());
                if let Err(why) = fits(md, spec, &leaf) {
                    return Err(ActivateError::Stale {
                        name: name.into(),
                        why,
                    });
                }
            }
            let active = st
                .load(Group::Domains, name, &files::pubcert(spec))
                .map_err(serr)?;
            all_same &= active.as_deref() == Some(cert_pem.as_slice());
            let plain = st.encode_key(Group::Domains, &key).map_err(serr)?;
            out.push((files::privkey(spec), plain, FileKind::PrivateKey));
            out.push((files::pubcert(spec), cert_pem, FileKind::Cert));
        }
        if all_same {
            // promoted before, crashed before the staging purge
            self.cleanup_staging(name, &staged.md.domains)
                .map_err(serr)?;
            return Ok(Activation::AlreadyActive);
        }
        let account = self.promote_account(name).map_err(serr)?;
        // md.json: the active settings (the config may have changed since the renewal started)
        // with the renewal's results
        let mut rec = match st.load_md(Group::Domains, name) {
            Ok(Some(r)) => r,
            _ => staged.clone(),
        };
        rec.ca_url = staged.ca_url.clone();
        rec.ca_account = account.clone().or(staged.ca_account.clone());
        rec.md.private_keys = specs;
        rec.state = MdState::Complete;
        rec.state_descr = None;
        out.insert(0, (files::MD.into(), rec.to_json(), FileKind::Json));
        if let Some(job) = st.load(Group::Staging, name, files::JOB).map_err(serr)? {
            out.insert(1, (files::JOB.into(), job, FileKind::Json));
        }
        let archived = st.activate_set(name, &out).map_err(serr)?;
        self.cleanup_staging(name, &staged.md.domains)
            .map_err(serr)?;
        Ok(Activation::Activated { archived, account })
    }

    fn cleanup_staging(&self, name: &str, domains: &[String]) -> Result<(), StoreError> {
        for d in domains {
            self.store.purge(Group::Challenges, d)?;
        }
        self.store.purge(Group::Staging, name)
    }

    /// Move a staged account (account.json + account.pem) into accounts/, reusing the id of a
    /// stored account with the same URL. Returns its id.
    fn promote_account(&self, name: &str) -> Result<Option<String>, StoreError> {
        let st = &self.store;
        let Some(acct) = st.load_account(Group::Staging, name)? else {
            return Ok(None);
        };
        let Some(key) = st.load_pkey(Group::Staging, name, files::ACCOUNT_KEY)? else {
            return Ok(None);
        };
        let existing = st.names(Group::Accounts)?;
        for id in &existing {
            if let Ok(Some(a)) = st.load_account(Group::Accounts, id) {
                if a.url == acct.url {
                    return Ok(Some(id.clone()));
                }
            }
        }
        let id = (0..=MAX_ACCOUNT)
            .map(|n| AccountRecord::id_for(&acct.ca_url, n))
            .find(|id| !existing.contains(id))
            .ok_or_else(|| StoreError::InvalidName("no free account id".into()))?;
        // key first: an account.json without its key would be picked and fail
        st.save_pkey(Group::Accounts, &id, files::ACCOUNT_KEY, &key)?;
        st.save_account(Group::Accounts, &id, &acct)?;
        Ok(Some(id))
    }
}
