//! The active certificate/key pairs the parent checks at every (re)start, each read and parsed
//! once: mod_ssl's certificate hook (is the pair loadable?) and the status snapshot (the
//! leaf's facts) ask for the same files, on the dry run and again on the real pass, and again
//! at every graceful restart. Parsing a private key PEM is the expensive part (OpenSSL 3's
//! decoders); with thousands of MDs it was most of our start cost.
//!
//! An entry is reused only while both files are the very same: device, inode, size, mtime and
//! ctime (nanoseconds) unchanged. The store replaces files by rename (a new inode), so an
//! activated certificate is always read anew; the owner may also [`PairCache::forget_dir`].

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::cert::{names_covered, Certificate};
use crate::status::CertFacts;

/// What checking one pair found: the leaf's facts, independent of the MD's names.
#[derive(Debug)]
pub struct CheckedPair {
    /// The leaf's facts (`covers_all` not yet decided) and its SANs; `None` when OpenSSL
    /// could not give them (the pair still loads).
    facts: Option<(CertFacts, Vec<String>)>,
}

impl CheckedPair {
    /// The leaf's facts for an MD with `domains`.
    pub fn facts_for(&self, domains: &[String]) -> Option<CertFacts> {
        self.facts.as_ref().map(|(f, sans)| CertFacts {
            covers_all: names_covered(sans, domains),
            ..f.clone()
        })
    }
}

/// The leaf of a pair that loads: the quick proof when it is certain, else OpenSSL's full
/// decoding (which also words the error).
fn check_files(cert: &Path, key: &Path) -> Result<Certificate, String> {
    let (c, k) = super::read_pair(cert, key)?;
    if let Some(leaf) = super::quick_pair::quick_check(&c, &k) {
        return Ok(leaf);
    }
    super::matching_pair(cert, &c, key, &k).map(|(chain, _)| chain.leaf().clone())
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

struct Entry {
    ids: (FileId, FileId),
    result: Result<Arc<CheckedPair>, String>,
    used: bool,
}

/// Memo of [`super::load_matching_pair`] per (certificate, key) path; see the module doc.
#[derive(Default)]
pub struct PairCache {
    entries: Mutex<HashMap<(PathBuf, PathBuf), Entry>>,
}

impl PairCache {
    /// An empty cache.
    pub fn new() -> PairCache {
        PairCache::default()
    }

    /// [`super::load_matching_pair`] of the two files, from the memo when neither changed.
    /// A missing file is not remembered.
    pub fn check(&self, cert: &Path, key: &Path) -> Result<Arc<CheckedPair>, String> {
        let ids = FileId::of(cert).zip(FileId::of(key));
        let k = (cert.to_path_buf(), key.to_path_buf());
        if let Some(ids) = ids {
            let mut entries = self.lock();
            if let Some(e) = entries.get_mut(&k).filter(|e| e.ids == ids) {
                e.used = true;
                return e.result.clone();
            }
        }
        let result = check_files(cert, key).map(|leaf| {
            Arc::new(CheckedPair {
                facts: CertFacts::of(&leaf, &[])
                    .ok()
                    .map(|f| (f, leaf.alt_names())),
            })
        });
        // Identity taken before reading: a file replaced meanwhile is read again next time.
        if let Some(ids) = ids {
            let entry = Entry {
                ids,
                result: result.clone(),
                used: true,
            };
            self.lock().insert(k, entry);
        }
        result
    }

    /// Forget the pairs whose certificate is in `dir` (an MD's directory whose files were
    /// just replaced).
    pub fn forget_dir(&self, dir: &Path) {
        self.lock()
            .retain(|(cert, _), _| cert.parent() != Some(dir));
    }

    /// Drop the entries not asked for since the last sweep (MDs gone from the config) and
    /// start a new round.
    pub fn sweep(&self) {
        let mut entries = self.lock();
        entries.retain(|_, e| e.used);
        for e in entries.values_mut() {
            e.used = false;
        }
    }

    /// Number of remembered pairs.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, PathBuf), Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};

    fn pair(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = make_fallback_cert(&names, &key).unwrap();
        (cert.to_pem().unwrap(), key.to_pem().unwrap())
    }

    #[test]
    fn reused_until_a_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let cache = PairCache::new();
        assert!(cache.check(&c, &k).is_err(), "missing");
        assert!(cache.is_empty(), "a missing file is not remembered");
        let (cp, kp) = pair(&["a.test"]);
        std::fs::write(&c, &cp).unwrap();
        std::fs::write(&k, &kp).unwrap();
        let first = cache.check(&c, &k).unwrap();
        let again = cache.check(&c, &k).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same files: remembered");
        let names = ["a.test".to_string()];
        assert!(first.facts_for(&names).unwrap().covers_all);
        assert!(!first.facts_for(&["b.test".to_string()]).unwrap().covers_all);
        // another key, written as the store does it (rename): no longer matching
        let (_, other) = pair(&["a.test"]);
        let tmp = dir.path().join("k.tmp");
        std::fs::write(&tmp, &other).unwrap();
        std::fs::rename(&tmp, &k).unwrap();
        let e = cache.check(&c, &k).unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
        // a failure is remembered as well, until the file changes
        assert_eq!(cache.check(&c, &k).unwrap_err(), e);
        std::fs::write(&tmp, &kp).unwrap();
        std::fs::rename(&tmp, &k).unwrap();
        assert!(cache.check(&c, &k).is_ok());
        cache.forget_dir(dir.path());
        assert!(cache.is_empty());
        cache.check(&c, &k).unwrap();
        cache.sweep();
        assert_eq!(cache.len(), 1, "used since the last sweep");
        cache.sweep();
        assert!(cache.is_empty(), "not asked for in a whole round");
    }
}
