//! The renewal watchdog: a singleton mod_watchdog thread in one child process (the `User`),
//! never in the parent (FFI-NOTES (e), (j)). Each run is short, returns success (a failing
//! callback is never called again), and reschedules itself.

use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

use crate::guard::guard;
use crate::log::log_s;
use crate::{apr, ffi};
use md_core::drive::{self, check::check_md};
use md_core::log::Level;
use md_core::md::ManagedDomain;
use md_core::time::jittered;

/// Default MDCheckInterval.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// What the renewal watchdog works on; owned by pconf, read in the child.
pub struct RenewWatch {
    mds: Vec<ManagedDomain>,
    store_dir: PathBuf,
    check_interval: Duration,
    server: *mut ffi::server_rec,
    wd: *mut ffi::ap_watchdog_t,
}

/// Start the renewal watchdog for the watched MDs (post_config, not on the dry run).
///
/// # Safety
/// `pconf` and `s` must be httpd's live config pool and base server.
pub unsafe fn start(
    pconf: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
    mds: Vec<ManagedDomain>,
    store_dir: PathBuf,
    check_interval: Option<Duration>,
    initial_delay: Option<Duration>,
) -> Result<(), ffi::apr_status_t> {
    let watch = RenewWatch {
        mds,
        store_dir,
        check_interval: check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL),
        server: s,
        wd: std::ptr::null_mut(),
    };
    // SAFETY: the watch lives in pconf as long as the watchdog of this generation.
    unsafe {
        let watch = apr::pool_box(pconf, watch);
        let first = initial_delay.unwrap_or_default().as_micros() as ffi::apr_interval_time_t;
        let rv = ffi::md_rs_glue_watchdog_start(
            pconf,
            c"_md_renew_".as_ptr(),
            first,
            watch as *mut c_void,
            Some(renew_callback),
            &mut (*watch).wd,
        );
        if rv == 0 {
            Ok(())
        } else {
            Err(rv)
        }
    }
}

/// mod_watchdog: one run of the renewal check.
unsafe extern "C" fn renew_callback(
    state: c_int,
    data: *mut c_void,
    _pool: *mut ffi::apr_pool_t,
) -> ffi::apr_status_t {
    // SAFETY: data is the RenewWatch registered in start(), alive for this generation.
    let watch = unsafe { &*(data as *const RenewWatch) };
    guard("renewal watchdog", watch.server, 0, || {
        if state != ffi::AP_WATCHDOG_STATE_RUNNING as c_int {
            return 0;
        }
        let next = run_checks(watch);
        // SAFETY: wd and data belong to this generation's watchdog.
        unsafe {
            ffi::md_rs_glue_watchdog_set_interval(
                watch.wd,
                next.as_micros() as ffi::apr_interval_time_t,
                data,
                Some(renew_callback),
            );
        }
        0
    })
}

/// Check every watched MD; returns the delay until the next run.
fn run_checks(watch: &RenewWatch) -> Duration {
    let now = Utc::now();
    let mut next = jittered(watch.check_interval, drive::random_jitter());
    for md in &watch.mds {
        let c = check_md(md, &watch.store_dir, now);
        if c.is_due(now) {
            // Obtaining certificates is not part of this build yet (README "Status").
            log_s!(
                watch.server,
                Level::Info,
                "{}: renewal due, but this build does not renew",
                md.name
            );
        } else if c.renews {
            let until = (c.renew_at - now).to_std().unwrap_or_default();
            next = next.min(until);
            log_s!(
                watch.server,
                Level::Debug,
                "{}: renewal due at {}",
                md.name,
                c.renew_at
            );
        }
        if c.warn {
            log_s!(
                watch.server,
                Level::Warning,
                "{}: certificate is in its warn window",
                md.name
            );
        }
    }
    next.max(Duration::from_secs(1))
}
