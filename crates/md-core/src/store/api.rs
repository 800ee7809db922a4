//! The backend-neutral store interface.

use std::path::PathBuf;

use super::{FileKind, Group, HttpdReachability, StoreError};

/// A held renewal lock of one MD ([`Store::lock_md`]); released on drop.
#[derive(Debug)]
pub struct MdLock {
    /// The locked file (`None`: nobody ever took this lock, so there is nothing to hold).
    pub(crate) _file: Option<std::fs::File>,
}

/// Raw store operations. Names are MD names (or account ids, DNS names for challenges): one
/// path component, never `.`/`..`. Files are single names inside `(group, name)`.
///
/// Every `save` is atomic (old or new content, never a mix). The two multi-file operations are
/// all-or-nothing across a crash, which is what the renewal and activation rely on.
pub trait Store {
    /// The store secret (pass phrase of encrypted private keys).
    fn secret(&self) -> &[u8];

    /// Read a file, `None` if absent.
    fn load(&self, group: Group, name: &str, file: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Write a file atomically, creating `(group, name)` if needed.
    fn save(
        &self,
        group: Group,
        name: &str,
        file: &str,
        data: &[u8],
        kind: FileKind,
    ) -> Result<(), StoreError>;

    /// Write a file atomically into an existing `(group, name)`; `Ok(false)` (nothing written)
    /// when it is gone. A process that lost the race against the parent's purge of a staging
    /// dir must not bring the dir back with a stale file in it.
    fn save_existing(
        &self,
        group: Group,
        name: &str,
        file: &str,
        data: &[u8],
        kind: FileKind,
    ) -> Result<bool, StoreError>;

    /// Take the renewal lock of MD `name` without waiting: one process at a time drives an MD
    /// (the children of two generations overlap at a graceful restart) and the parent does
    /// not activate or clean up what a child is writing. `Ok(None)`: another process holds it.
    /// With `create` false a lock nobody ever made counts as free (the parent, as root, never
    /// creates files in the child's directories).
    fn lock_md(&self, name: &str, create: bool) -> Result<Option<MdLock>, StoreError>;

    /// Finish or discard interrupted writes in `(group, name)` (as [`Store::recover`] does
    /// for the whole store), for the process that holds the MD's lock.
    fn recover_dir(&self, group: Group, name: &str) -> Result<(), StoreError>;

    /// Remove a file (absent is fine).
    fn remove(&self, group: Group, name: &str, file: &str) -> Result<(), StoreError>;

    /// Does the file exist?
    fn exists(&self, group: Group, name: &str, file: &str) -> bool;

    /// Names present in a group, sorted.
    fn names(&self, group: Group) -> Result<Vec<String>, StoreError>;

    /// File names inside `(group, name)`, sorted (empty if absent).
    fn files(&self, group: Group, name: &str) -> Result<Vec<String>, StoreError>;

    /// Remove `(group, name)` with everything in it (absent is fine).
    fn purge(&self, group: Group, name: &str) -> Result<(), StoreError>;

    /// Rename `(group, from)` to `(group, to)`; `to` must not exist.
    fn rename(&self, group: Group, from: &str, to: &str) -> Result<(), StoreError>;

    /// Write a private key and its certificate so that a reader (and a restart after a crash)
    /// sees either the old pair, the new pair, or the key alone: never a key with a
    /// certificate that does not belong to it.
    #[allow(clippy::too_many_arguments)]
    fn save_pair(
        &self,
        group: Group,
        name: &str,
        key_file: &str,
        key_pem: &[u8],
        cert_file: &str,
        cert_pem: &[u8],
    ) -> Result<(), StoreError>;

    /// Replace `domains/<name>` by exactly `files`, keeping the old directory as
    /// `archive/<name>.<N>`. All-or-nothing: after a crash at any point `domains/<name>` is
    /// either the old set or the new one (completed on [`Store::recover`]). Returns the archive
    /// name used, if there was an old directory.
    fn activate_set(
        &self,
        name: &str,
        files: &[(String, Vec<u8>, FileKind)],
    ) -> Result<Option<String>, StoreError>;

    /// Finish or discard operations interrupted by a crash (called on open).
    fn recover(&self) -> Result<(), StoreError>;

    /// Path of a file, for consumers that need one (mod_ssl takes file names). `None` for
    /// backends without files.
    fn path(&self, group: Group, name: &str, file: &str) -> Option<PathBuf>;

    /// httpd.json; `None` when absent (= default reachability).
    fn load_reachability(&self) -> Result<Option<HttpdReachability>, StoreError>;

    /// Write httpd.json, or remove it when `r` is the default.
    fn save_reachability(&self, r: HttpdReachability) -> Result<(), StoreError>;
}
