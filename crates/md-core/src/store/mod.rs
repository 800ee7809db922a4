//! The certificate store: mod_md 2.6's exact on-disk layout under `MDStoreDir` (SPEC 3).
//!
//! [`Store`] is the backend-neutral interface: a handful of raw operations on named files inside
//! `(group, name)` directories, plus two multi-file operations that must be all-or-nothing
//! ([`Store::save_pair`] and [`Store::activate_set`]). Typed helpers (md.json, job.json, keys,
//! certificates) are provided methods on top of the raw ones, so another backend (a database)
//! implements only the raw part. [`FsStore`] is the file-system implementation.

mod account;
mod api;
mod date;
mod fs;
mod group;
mod job;
pub mod keys;
mod mdjson;
mod meta;
mod order;
mod typed;
mod vfs;

pub use account::AccountRecord;
pub use api::{MdLock, Store};
pub use date::{format_http_date, parse_http_date};
pub use fs::{FsStore, StoreOptions};
pub use group::{FileKind, Group};
pub use job::JobRecord;
pub use mdjson::{MdRecord, MdState};
pub use meta::{HttpdReachability, StoreMeta, STORE_VERSION};
pub use order::OrderRecord;
pub use typed::{KeyAndChain, StoreExt};
pub use vfs::FaultPlan;

use std::path::PathBuf;

/// File names inside an MD's directory (SPEC 3.1).
pub mod files {
    /// The MD's settings and state.
    pub const MD: &str = "md.json";
    /// Renewal job state.
    pub const JOB: &str = "job.json";
    /// ACME order in progress (staging only).
    pub const ORDER: &str = "order.json";
    /// ACME account metadata.
    pub const ACCOUNT: &str = "account.json";
    /// ACME account key (encrypted).
    pub const ACCOUNT_KEY: &str = "account.pem";
    /// http-01 key authorization (challenges group).
    pub const HTTP01: &str = "acme-http-01.txt";

    use crate::md::KeySpec;

    /// `privkey[.<spec>].pem`.
    pub fn privkey(spec: &KeySpec) -> String {
        format!("privkey{}.pem", spec.file_suffix())
    }
    /// `pubcert[.<spec>].pem` (certificate followed by its chain).
    pub fn pubcert(spec: &KeySpec) -> String {
        format!("pubcert{}.pem", spec.file_suffix())
    }
    /// `fallback-privkey[.<spec>].pem`.
    pub fn fallback_privkey(spec: &KeySpec) -> String {
        format!("fallback-privkey{}.pem", spec.file_suffix())
    }
    /// `fallback-pubcert[.<spec>].pem`.
    pub fn fallback_pubcert(spec: &KeySpec) -> String {
        format!("fallback-pubcert{}.pem", spec.file_suffix())
    }
    /// `acme-tls-alpn-01-privkey[.<spec>].pem`.
    pub fn tls_alpn01_privkey(spec: &KeySpec) -> String {
        format!("acme-tls-alpn-01-privkey{}.pem", spec.file_suffix())
    }
    /// `acme-tls-alpn-01-pubcert[.<spec>].pem`.
    pub fn tls_alpn01_pubcert(spec: &KeySpec) -> String {
        format!("acme-tls-alpn-01-pubcert{}.pem", spec.file_suffix())
    }
}

/// Errors of reading or writing one store item.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or has the wrong shape.
    #[error("{path}: invalid JSON: {detail}")]
    Json {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A key or certificate could not be parsed, decrypted or encoded.
    #[error("{path}: {detail}")]
    Crypto {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A name that would escape its group directory (`..`, `/`, empty).
    #[error("invalid store name '{0}'")]
    InvalidName(String),
    /// A key and certificate given together do not belong together.
    #[error("{0}: private key does not match certificate")]
    KeyMismatch(String),
}

impl StoreError {
    /// True when the item simply is not there (callers often treat that as `None`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Errors of opening a store (md_store.json, version, migration, directories).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// md_store.json exists but cannot be parsed: the store secret would be lost.
    #[error(
        "{path}: the store's md_store.json cannot be read ({detail}). It holds the key that \
         protects the private keys in accounts/ and staging/. Restore it from a backup, or move \
         the whole store directory away to start a new store (accounts and staged \
         certificates are then lost; certificates in domains/ can be copied back)."
    )]
    CorruptMeta {
        /// Path of md_store.json.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// The store was written by a newer mod_md.
    #[error(
        "{path}: store version {found} is newer than the supported version {supported}; \
         refusing to use it (downgrade of mod_md?)"
    )]
    NewerVersion {
        /// Path of md_store.json.
        path: PathBuf,
        /// Version found.
        found: f64,
        /// Version this code supports.
        supported: f64,
    },
    /// Any other failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}
