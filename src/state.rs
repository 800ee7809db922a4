//! Module state of one config generation, kept in pconf's user data so it is dropped (and
//! rebuilt) on every restart: no statics hold pool pointers (FFI-NOTES (h)).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::{apr, ffi};
use md_core::config::ModConfig;
use md_core::md::ManagedDomain;

/// Everything the module knows in this generation.
#[derive(Default)]
pub struct ModState {
    /// What the directives set (MD definitions, module-wide settings).
    pub config: ModConfig,
    /// The resolved MDs (after post_config #1).
    pub mds: Vec<ManagedDomain>,
    /// Keys (server_rec addresses) of the servers mod_ssl asked for certificates: SSL vhosts.
    pub ssl_servers: HashSet<usize>,
    /// Per server key, the indices (into `mds`) of the MDs assigned to it.
    pub server_mds: HashMap<usize, Vec<usize>>,
    /// The store directory (MDStoreDir, default `<ServerRoot>/md`).
    pub store_dir: PathBuf,
    /// Status facts of every MD (same order as `mds`), taken in the parent at post_config:
    /// the active certificates under `domains/` cannot be read by the children.
    pub status: Vec<md_core::status::MdSnapshot>,
    /// Keys for fallback certificates made in this generation (one per key type).
    pub fallback_keys: md_core::serve::FallbackKeys,
    /// The certificates mod_ssl primed for stapling (filled in the parent while mod_ssl
    /// configures its vhosts, read-only afterwards).
    pub ocsp: std::sync::Arc<md_core::ocsp::OcspRegistry>,
    /// The store, opened in post_config (parent).
    pub registry: Option<md_core::reg::Registry<md_core::store::FsStore>>,
}

impl ModState {
    /// The MD of server `key` when exactly one is assigned (SSL vhosts never have more).
    pub fn md_of_server(&self, key: usize) -> Option<&ManagedDomain> {
        match self.server_mds.get(&key).map(Vec::as_slice) {
            Some([i]) => self.mds.get(*i),
            _ => None,
        }
    }
}

/// Read-only view of the state at request time (in a child, after fork; the state is not
/// changed after post_config, so shared reads from worker threads are fine).
///
/// # Safety
/// `pconf` must be httpd's live configuration pool.
pub unsafe fn mod_state_ref<'a>(pconf: *mut ffi::apr_pool_t) -> Option<&'a ModState> {
    // SAFETY: read-only lookup of the value stored by mod_state in this pool.
    unsafe { apr::pool_userdata_get(pconf, c"mod_md-rs:state") }
}

/// The state of the generation that `pconf` belongs to.
///
/// # Safety
/// `pconf` must be httpd's live configuration pool; single-threaded use only (config phase and
/// post_config run in the parent's main thread).
pub unsafe fn mod_state<'a>(pconf: *mut ffi::apr_pool_t) -> &'a mut ModState {
    // SAFETY: see above; the key is used with ModState only.
    unsafe { apr::pool_userdata(pconf, c"mod_md-rs:state", ModState::default) }
}

/// The config pool of the process that owns server `s`.
///
/// # Safety
/// `s` must be a live server_rec.
pub unsafe fn pconf_of(s: *const ffi::server_rec) -> *mut ffi::apr_pool_t {
    // SAFETY: every server_rec points to its process_rec, which holds pconf.
    unsafe { (*(*s).process).pconf }
}
