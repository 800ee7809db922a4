//! Module state of one config generation, kept in pconf's user data so it is dropped (and
//! rebuilt) on every restart: no statics hold pool pointers (FFI-NOTES (h)).

use std::collections::HashSet;

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
