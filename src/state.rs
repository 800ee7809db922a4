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
    /// `mds` (and `status`, in the same order) by MD name and by the names they cover, for
    /// the look-ups of requests; made once the MDs' names are final (post_config #2).
    pub md_index: md_core::md::MdIndex,
    /// Keys for fallback certificates made in this generation (one per key type).
    pub fallback_keys: md_core::serve::FallbackKeys,
    /// The certificates mod_ssl primed for stapling (filled in the parent while mod_ssl
    /// configures its vhosts, read-only afterwards).
    pub ocsp: std::sync::Arc<md_core::ocsp::OcspRegistry>,
    /// The store, opened in post_config (parent).
    pub registry: Option<md_core::reg::Registry<md_core::store::FsStore>>,
    /// Cluster mode (MDClusterDatabase): its settings, read by the parent at post_config.
    pub cluster: Option<md_cluster::ClusterSettings>,
    /// A request child's reader of challenges other nodes shared (made at its first miss,
    /// never in the parent: it connects).
    pub cluster_reader: std::sync::OnceLock<Option<md_cluster::ChallengeReader>>,
}

impl ModState {
    /// Challenge material of `domain` that another cluster node shared (`None` outside
    /// cluster mode, or when there is none).
    pub fn shared_challenge(&self, domain: &str, file: &str) -> Result<Option<Vec<u8>>, String> {
        let reader = self.cluster_reader.get_or_init(|| {
            self.cluster
                .as_ref()
                .and_then(|c| md_cluster::ChallengeReader::new(c).ok())
        });
        match reader {
            Some(r) => r.lookup(domain, file),
            None => Ok(None),
        }
    }

    /// The MD of server `key` when exactly one is assigned (SSL vhosts never have more).
    pub fn md_of_server(&self, key: usize) -> Option<&ManagedDomain> {
        match self.server_mds.get(&key).map(Vec::as_slice) {
            Some([i]) => self.mds.get(*i),
            _ => None,
        }
    }
}

/// The active certificate/key pairs checked by the parent (md_core::crypt::PairCache), kept
/// in httpd's process pool: httpd unloads and loads the module again between the dry run and
/// the real pass and at every restart, so a static of ours would not outlive a pass. The key
/// names this very module file (path, device, inode, size, mtime): a replaced module starts a
/// cache of its own instead of reading one laid out by other code. Never freed: it lives as
/// long as the process, and a pool cleanup would call into a module already unloaded.
///
/// # Safety
/// `s` must be a live server_rec; call in the parent's config phase (one thread).
pub unsafe fn pair_cache(s: *const ffi::server_rec) -> &'static md_core::crypt::PairCache {
    use md_core::crypt::PairCache;
    static LOCAL: std::sync::OnceLock<PairCache> = std::sync::OnceLock::new();
    let Some(key) = module_file_key() else {
        return LOCAL.get_or_init(Default::default);
    };
    // SAFETY: s is live (contract); its process pool lives as long as the process. The value
    // under this key is only ever a PairCache of this very module file (see above).
    unsafe {
        let pool = (*(*s).process).pool;
        let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
        ffi::apr_pool_userdata_get(&mut data, key.as_ptr(), pool);
        if data.is_null() {
            let ptr = Box::into_raw(Box::<PairCache>::default());
            // apr copies the key; no cleanup (see above)
            ffi::apr_pool_userdata_set(ptr as *const std::ffi::c_void, key.as_ptr(), None, pool);
            data = ptr as *mut std::ffi::c_void;
        }
        &*(data as *const PairCache)
    }
}

/// `mod_md-rs:pairs:<path>:<dev>:<inode>:<size>:<mtime>` of the loaded module file.
fn module_file_key() -> Option<std::ffi::CString> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: dladdr only reads the loader's tables; info is plain data it fills in.
    let path = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = module_file_key as *const std::ffi::c_void;
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned()
    };
    let m = std::fs::metadata(&path).ok()?;
    let key = format!(
        "mod_md-rs:pairs:{path}:{}:{}:{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    );
    std::ffi::CString::new(key).ok()
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
