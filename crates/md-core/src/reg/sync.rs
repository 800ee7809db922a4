//! Sync of the configured MDs into the store, with rename detection (SPEC 4.4).

use std::collections::{HashMap, HashSet};

use crate::md::ManagedDomain;
use crate::store::{files, keys, Group, MdRecord, MdState, Store, StoreError, StoreExt};

use super::Registry;

/// What a sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// MDs created in the store.
    pub new: Vec<String>,
    /// MDs whose md.json was rewritten because settings changed.
    pub changed: Vec<String>,
    /// `(old, new)` names of MDs found under another name and renamed.
    pub renamed: Vec<(String, String)>,
    /// Stored MDs no longer configured (kept in the store).
    pub removed: Vec<String>,
    /// MDs whose stored md.json is unreadable or could not be written (a full or read-only
    /// disk): `(name, message)`. Only that MD is affected: its certificates are served as
    /// they are and the renewal works from the configuration.
    pub errors: Vec<(String, String)>,
}

/// Errors that stop a sync as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The domains/ group cannot be listed or written.
    #[error("store sync: {0}")]
    Store(#[from] StoreError),
}

/// The DNS names of the leaf in a `pubcert` PEM (`None`: no parseable leaf), remembered by
/// the PEM's digest: the sync runs at every (re)start, twice at the first, and parsing
/// thousands of certificates each time was a good part of the start time. The content is the
/// key, so a changed file is always parsed anew.
fn leaf_dns_names(pem: &[u8]) -> Option<std::sync::Arc<Vec<String>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    type Memo = HashMap<[u8; 32], Option<Arc<Vec<String>>>>;
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    /// Bound for a long-lived process (renewals add entries): start over past it.
    const MAX: usize = 100_000;
    let digest: [u8; 32] = openssl::sha::sha256(pem);
    let memo = MEMO.get_or_init(Default::default);
    if let Some(hit) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&digest) {
        return hit.clone();
    }
    let names = keys::leaf_from_pem(pem)
        .ok()
        .map(|c| Arc::new(keys::dns_names(&c)));
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= MAX {
        memo.clear();
    }
    memo.insert(digest, names.clone());
    names
}

/// Assessed state from the certificates present: complete when every key spec has a
/// certificate that covers all names of the MD. MDs with static files are left as they are.
fn assess(store: &impl Store, rec: &mut MdRecord) {
    if !rec.md.cert_files.is_empty() {
        return;
    }
    let mut problem = None;
    for spec in &rec.md.private_keys {
        let leaf = store
            .load(Group::Domains, &rec.md.name, &files::pubcert(spec))
            .ok()
            .flatten()
            .and_then(|pem| leaf_dns_names(&pem));
        problem = match leaf {
            None => Some(format!("certificate({}) is missing", spec.name())),
            Some(sans) if !keys::dns_names_cover(&sans, &rec.md.domains) => Some(format!(
                "certificate({}) does not cover all domains.",
                spec.name()
            )),
            Some(_) => None,
        };
        if problem.is_some() {
            break;
        }
    }
    match problem {
        Some(descr) => {
            rec.state = MdState::Incomplete;
            rec.state_descr = Some(descr);
        }
        None if rec.state != MdState::Complete || rec.state_descr.is_some() => {
            rec.state = MdState::Complete;
            rec.state_descr = None;
        }
        None => {}
    }
}

impl<S: Store + Sync> Registry<S> {
    /// Bring domains/ in line with the configuration: create new MDs, rewrite changed ones,
    /// rename stored MDs whose names moved to a differently named MD, report removed ones and
    /// purge their challenge dirs.
    pub fn sync(&self, mds: &[ManagedDomain]) -> Result<SyncReport, SyncError> {
        let st = &self.store;
        let mut report = SyncReport::default();
        let mut stored: HashMap<String, MdRecord> = HashMap::new();
        let stored_names = st.names(Group::Domains)?;
        for name in &stored_names {
            match st.load_md(Group::Domains, name) {
                Ok(Some(r)) => {
                    stored.insert(name.clone(), r);
                }
                Ok(None) => {}
                Err(e) => report.errors.push((name.clone(), e.to_string())),
            }
        }
        let configured: HashSet<&str> = mds.iter().map(|m| m.name.as_str()).collect();
        let mut unassigned: Vec<String> = stored_names
            .iter()
            .filter(|n| !configured.contains(n.as_str()) && stored.contains_key(*n))
            .cloned()
            .collect();
        // (record, is new): written after the loop, several at a time
        let mut to_save: Vec<(MdRecord, bool)> = Vec::new();
        for md in mds {
            if report.errors.iter().any(|(n, _)| *n == md.name) {
                continue; // unreadable md.json: leave it for the admin, do not overwrite
            }
            if let Some(rec) = stored.get_mut(&md.name) {
                let mut changed = rec.update_from_config(md);
                let before = (rec.state, rec.state_descr.clone());
                assess(st, rec);
                changed |= (rec.state, rec.state_descr.clone()) != before;
                if changed {
                    to_save.push((rec.clone(), false));
                }
                continue;
            }
            if let Some(old) = pick_rename(md, &unassigned, &stored) {
                unassigned.retain(|n| *n != old);
                let mut rec = stored.remove(&old).expect("candidate is stored");
                if let Err(e) = self.rename_md(&old, &md.name) {
                    // e.g. a stray domains/<new> directory: this MD only, the admin decides
                    report
                        .errors
                        .push((md.name.clone(), format!("renaming {old}: {e}")));
                    continue;
                }
                rec.update_from_config(md);
                assess(st, &mut rec);
                if let Err(e) = st.save_md(Group::Domains, &rec) {
                    report.errors.push((md.name.clone(), e.to_string()));
                }
                report.renamed.push((old, md.name.clone()));
                continue;
            }
            let mut rec = MdRecord::new(md.clone());
            assess(st, &mut rec);
            to_save.push((rec, true));
        }
        for ((rec, new), result) in to_save.iter().zip(save_all(st, &to_save)) {
            let name = rec.md.name.clone();
            match result {
                Ok(()) if *new => report.new.push(name),
                Ok(()) => report.changed.push(name),
                Err(e) => report.errors.push((name, e.to_string())),
            }
        }
        let live: HashSet<&str> = mds
            .iter()
            .flat_map(|m| m.domains.iter().map(String::as_str))
            .collect();
        for name in unassigned {
            if let Some(rec) = stored.get(&name) {
                for d in rec.md.domains.iter().filter(|d| !live.contains(d.as_str())) {
                    if let Err(e) = st.purge(Group::Challenges, d) {
                        report.errors.push((name.clone(), e.to_string()));
                    }
                }
            }
            report.removed.push(name);
        }
        Ok(report)
    }

    /// Rename an MD's directories in domains/ and staging/ (certificates stay usable).
    fn rename_md(&self, old: &str, new: &str) -> Result<(), StoreError> {
        let st = &self.store;
        st.rename(Group::Domains, old, new)?;
        if st.exists(Group::Staging, old, files::MD) || !st.files(Group::Staging, old)?.is_empty() {
            st.purge(Group::Staging, new)?;
            st.rename(Group::Staging, old, new)?;
            if let Some(mut rec) = st.load_md(Group::Staging, new)? {
                rec.md.name = new.to_string();
                st.save_md(Group::Staging, &rec)?;
            }
        }
        Ok(())
    }
}

/// The stored MD a new MD was renamed from: one containing all its names, else the one sharing
/// the most names (ties: first by name). None when nothing overlaps.
fn pick_rename(
    md: &ManagedDomain,
    unassigned: &[String],
    stored: &HashMap<String, MdRecord>,
) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for name in unassigned {
        let rec = stored.get(name)?;
        let common = md
            .domains
            .iter()
            .filter(|d| rec.md.domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
            .count();
        if common == md.domains.len() && common > 0 {
            return Some(name.clone());
        }
        if common > 0 && best.map_or(true, |(c, _)| common > c) {
            best = Some((common, name));
        }
    }
    best.map(|(_, n)| n.clone())
}

/// Write md.json records, a few threads at a time when there are many: each is its own file in
/// its own directory, and at a first start with thousands of MDs the file creations and fsyncs
/// were most of what the parent spent. Results in the order of `recs`.
fn save_all<S: Store + Sync>(st: &S, recs: &[(MdRecord, bool)]) -> Vec<Result<(), StoreError>> {
    const WORKERS: usize = 4;
    const MIN_PER_WORKER: usize = 16;
    let save = |chunk: &[(MdRecord, bool)]| -> Vec<_> {
        chunk
            .iter()
            .map(|(rec, _)| st.save_md(Group::Domains, rec))
            .collect()
    };
    if recs.len() < 2 * MIN_PER_WORKER {
        return save(recs);
    }
    let per = recs.len().div_ceil(WORKERS).max(MIN_PER_WORKER);
    std::thread::scope(|scope| {
        let workers: Vec<_> = recs
            .chunks(per)
            .map(|chunk| scope.spawn(move || save(chunk)))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
