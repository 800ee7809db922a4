//! MDActivationRestart (mod_md-rs only): the httpd parent notices a finished, ready renewal and
//! performs the graceful restart that activates it. Runs in the MPM's `monitor` hook: the
//! parent's own loop, as root, single-threaded (FFI-NOTES (j): a parent watchdog is not
//! possible with forking MPMs, and children cannot signal the parent).

use std::ffi::{c_int, c_void, CStr};
use std::process::Command;

use chrono::Utc;

use crate::guard::guard;
use crate::log::log_s;
use crate::state::{mod_state_ref, pconf_of};
use crate::{apr, ffi};
use md_core::drive::restart::staged_ready;
use md_core::log::Level;

/// Least time between two restarts of our own making.
const MIN_INTERVAL_SECS: i64 = 60;
/// Memory across restarts, kept as text in the process pool (which outlives generations and
/// this DSO, so it holds no Rust types and no cleanup pointing into our code).
const MEMO_KEY: &CStr = c"mod_md-rs:activation-restart";

/// The memo: `<unix time of last restart> <md>@<ready unix time> ...`.
#[derive(Default)]
struct Memo {
    last: i64,
    tried: Vec<String>,
}

impl Memo {
    fn parse(s: &str) -> Memo {
        let mut it = s.split_whitespace();
        let last = it.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        Memo {
            last,
            tried: it.map(String::from).collect(),
        }
    }
    fn render(&self) -> String {
        std::iter::once(self.last.to_string())
            .chain(self.tried.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

unsafe fn load_memo(pool: *mut ffi::apr_pool_t) -> Memo {
    let mut data: *mut c_void = std::ptr::null_mut();
    // SAFETY: reads the C string we stored under this key, if any.
    unsafe {
        ffi::apr_pool_userdata_get(&mut data, MEMO_KEY.as_ptr(), pool);
        Memo::parse(&apr::to_string(data as *const _))
    }
}

unsafe fn save_memo(pool: *mut ffi::apr_pool_t, memo: &Memo) {
    // SAFETY: a pool copy of the text; apr_pool_userdata_set copies the key; no cleanup.
    unsafe {
        let text = apr::pstrdup(pool, &memo.render());
        ffi::apr_pool_userdata_set(text as *const c_void, MEMO_KEY.as_ptr(), None, pool);
    }
}

/// `apache2 <same arguments> -t`: a graceful restart with a broken config stops the server,
/// and `apachectl graceful`'s own check is skipped when we signal ourselves.
unsafe fn config_ok(process: *const ffi::process_rec) -> Result<(), String> {
    // SAFETY: process_rec's argv holds argc C strings for the life of the process.
    let args: Vec<String> = unsafe {
        let p = &*process;
        (0..p.argc.max(0) as usize)
            .map(|i| apr::to_string(*p.argv.add(i)))
            .collect()
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(
            args.iter()
                .skip(1)
                .filter(|a| *a != "-k" && !["start", "restart", "graceful"].contains(&a.as_str())),
        )
        .arg("-t")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// httpd: the MPM parent's monitor hook.
#[no_mangle]
pub unsafe extern "C" fn md_rs_monitor(_p: *mut ffi::apr_pool_t, s: *mut ffi::server_rec) -> c_int {
    guard("monitor", s, ffi::DECLINED, || {
        // SAFETY: s is the live base server; its process and pools outlive this call.
        let (state, process) = unsafe { (mod_state_ref(pconf_of(s)), (*s).process) };
        let Some(state) = state else {
            return ffi::DECLINED;
        };
        if !state.config.global.activation_restart.unwrap_or(false) {
            return ffi::DECLINED;
        }
        let mut mpm_state: c_int = 0;
        // SAFETY: a plain query of the MPM's state.
        unsafe { ffi::ap_mpm_query(ffi::AP_MPMQ_MPM_STATE, &mut mpm_state) };
        if mpm_state == ffi::AP_MPMQ_STOPPING {
            return ffi::DECLINED;
        }
        let Some(registry) = &state.registry else {
            return ffi::DECLINED;
        };
        // SAFETY: process->pool lives as long as the parent.
        let pool = unsafe { (*process).pool };
        let mut memo = unsafe { load_memo(pool) };
        let now = Utc::now();
        if now.timestamp() - memo.last < MIN_INTERVAL_SECS {
            return ffi::DECLINED;
        }
        let ready: Vec<String> = state
            .mds
            .iter()
            .filter_map(|md| {
                staged_ready(registry.store(), md, now)
                    .map(|t| format!("{}@{}", md.name, t.timestamp()))
            })
            .filter(|tag| !memo.tried.contains(tag))
            .collect();
        if ready.is_empty() {
            return ffi::DECLINED;
        }
        // Each ready set causes at most one restart attempt, even if activation then fails.
        memo.tried.extend(ready.iter().cloned());
        memo.last = now.timestamp();
        // SAFETY: as above.
        unsafe { save_memo(pool, &memo) };
        // SAFETY: process is the live process_rec.
        if let Err(e) = unsafe { config_ok(process) } {
            log_s!(s, Level::Err, "MDActivationRestart: renewed certificates are ready ({}), but the configuration test fails, not restarting: {e}", ready.join(" "));
            return ffi::DECLINED;
        }
        log_s!(
            s,
            Level::Notice,
            "MDActivationRestart: renewed certificates are ready ({}), graceful restart",
            ready.join(" ")
        );
        // SAFETY: signalling our own process: the MPM's handler starts a graceful restart.
        unsafe { libc::kill(libc::getpid(), ffi::AP_SIG_GRACEFUL) };
        ffi::OK
    })
}
