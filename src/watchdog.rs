//! The renewal watchdog: a singleton mod_watchdog thread in one child process (the `User`),
//! never in the parent (FFI-NOTES (e), (j)). Each run renews what is due (up to
//! [`MAX_PARALLEL`] MDs at once, so many MDs do not queue behind one another), records the
//! results in the store, returns success (a failing callback is never called again) and
//! reschedules itself for the earliest next job.

use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::guard::guard;
use crate::log::{log_s, ServerLog};
use crate::{apr, ffi};
use md_core::drive;
use md_core::drive::check::ActiveCerts;
use md_core::drive::renew::{MdOutcome, RenewSettings, Renewer};
use md_core::event::Events;
use md_core::log::Level;
use md_core::md::challenges::ChallengeSupport;
use md_core::md::ManagedDomain;
use md_core::store::FsStore;
use md_core::time::jittered;

/// Renewal passes running in this process, and whether the process is going away. A child
/// that exits runs OpenSSL's atexit cleanup; a renewal thread still using OpenSSL then
/// crashes the child (seen in graceful restarts). So the child's exit waits, bounded, for the
/// passes to end, and no new work starts. These statics live in a child only as long as it.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);
/// How long an exiting child waits for running renewals.
const EXIT_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct InFlight;
impl InFlight {
    pub(crate) fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}
impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// httpd: a new child. Its pool's cleanup runs before the child exits.
#[no_mangle]
pub unsafe extern "C" fn md_rs_child_init(pchild: *mut ffi::apr_pool_t, s: *mut ffi::server_rec) {
    guard("child_init", s, (), || {
        STOPPING.store(false, Ordering::SeqCst);
        // SAFETY: pchild is the child's pool; the cleanup is a plain function of ours.
        unsafe {
            ffi::apr_pool_cleanup_register(
                pchild,
                std::ptr::null(),
                Some(child_exit),
                Some(ffi::apr_pool_cleanup_null),
            );
        }
    })
}

unsafe extern "C" fn child_exit(_data: *mut c_void) -> ffi::apr_status_t {
    guard("child exit", std::ptr::null(), 0, || {
        STOPPING.store(true, Ordering::SeqCst);
        let start = std::time::Instant::now();
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && start.elapsed() < EXIT_WAIT {
            std::thread::sleep(Duration::from_millis(20));
        }
        0
    })
}

/// Default MDCheckInterval.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// Longest pause between renewal passes while an MD has stapling on.
const REVOCATION_CHECK: Duration = Duration::from_secs(3600);
/// Renewals of different MDs that run at the same time.
pub const MAX_PARALLEL: usize = 8;

/// One MD the renewal watchdog watches.
pub struct WatchedMd {
    /// The MD as configured (with the names MDMembers auto added).
    pub md: ManagedDomain,
    /// What the server offers for its challenges.
    pub support: ChallengeSupport,
    /// Its active certificates as the parent read them (the child cannot read `domains/`
    /// nor root-only static files); a renewal staged in this child replaces them.
    pub active: Mutex<ActiveCerts>,
    /// A stored OCSP response said `revoked`: renewing at once (once per generation).
    pub revoked: AtomicBool,
    /// When a pass must look at this MD again (what its last visit answered, at most one
    /// check interval on); `None`: at the next pass. A pass skips MDs not due yet, so a
    /// retry of one MD does not read the staging of all others.
    pub next_visit: Mutex<Option<DateTime<Utc>>>,
}

/// What the renewal watchdog works on, prepared in the parent.
pub struct RenewPlan {
    /// Watched MDs.
    pub mds: Vec<WatchedMd>,
    /// The store, opened in the parent (it holds the secret the child cannot read).
    pub store: FsStore,
    /// Its directory.
    pub store_dir: PathBuf,
    /// Retry, failover, activation settings.
    pub settings: RenewSettings,
    /// MDMessageCmd / MDNotifyCmd.
    pub events: Events,
    /// MDCheckInterval.
    pub check_interval: Option<Duration>,
    /// MDInitialDelay.
    pub initial_delay: Option<Duration>,
    /// The stapled certificates (their stored responses tell of revocations).
    pub ocsp: std::sync::Arc<md_core::ocsp::OcspRegistry>,
    /// The CA's renewal information, cached in the child for all MDs (MDRenewViaARI).
    pub ari: md_core::drive::ari::AriCache,
    /// HTTP and ACME clients of the child, shared by all MDs and kept across passes (one
    /// runtime thread and trust store per distinct setting, one directory fetch and nonce
    /// pool per CA). Empty until the child's first renewal: nothing is built in the parent.
    pub connections: md_core::drive::connections::Connections,
    /// Cluster mode: the database, connected in the child at its first pass.
    pub cluster: Option<ClusterPlan>,
}

/// The cluster of the renewal child, made at its first pass (never in the parent: it
/// connects, and connections must not cross a fork).
pub struct ClusterPlan {
    settings: md_cluster::ClusterSettings,
    cluster: std::sync::OnceLock<Result<md_cluster::PgCluster, String>>,
}

impl ClusterPlan {
    pub fn new(settings: md_cluster::ClusterSettings) -> ClusterPlan {
        ClusterPlan {
            settings,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// The cluster, ready for a pass (its view of the published sets refreshed), or why
    /// not; the pass renews nothing without it.
    fn for_pass(&self, log: &ServerLog) -> Option<&md_cluster::PgCluster> {
        use md_core::drive::cluster::Cluster;
        let c = match self
            .cluster
            .get_or_init(|| md_cluster::PgCluster::new(self.settings.clone()))
        {
            Ok(c) => c,
            Err(e) => {
                md_core::md_log!(*log, Level::Err, "cluster database: {e}");
                return None;
            }
        };
        if let Err(e) = c.refresh() {
            md_core::md_log!(
                *log,
                Level::Warning,
                "cluster database unavailable, serving the certificates at hand, renewing \
                 nothing: {e}"
            );
        }
        Some(c)
    }
}

/// Work that a singleton mod_watchdog thread runs in one child: a pass returns the pause
/// until the next one.
pub(crate) trait Pass: 'static {
    /// What the watchdog is called in log lines.
    const WHAT: &'static str;
    /// What its runs do, for the debug line after each (`next <CHECK> in N s`; tests count
    /// the renewal watchdog's runs by it).
    const CHECK: &'static str;
    /// One pass in the watchdog's child; `server` is the base server.
    fn run(&self, server: *mut ffi::server_rec) -> Duration;
}

/// A pass with what mod_watchdog needs, boxed in pconf for one config generation.
struct Watch<P: Pass> {
    pass: P,
    server: *mut ffi::server_rec,
    wd: *mut ffi::ap_watchdog_t,
}

/// Start the singleton watchdog `name` (post_config, not on the dry run): `pass` runs first
/// after `first`, then after the pause each run returns.
///
/// # Safety
/// `pconf` and `s` must be httpd's live config pool and base server.
pub(crate) unsafe fn start_singleton<P: Pass>(
    pconf: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
    name: &'static std::ffi::CStr,
    first: Duration,
    pass: P,
) -> Result<(), ffi::apr_status_t> {
    let watch = Watch {
        pass,
        server: s,
        wd: std::ptr::null_mut(),
    };
    // SAFETY: the watch lives in pconf as long as the watchdog of this generation.
    unsafe {
        let watch = apr::pool_box(pconf, watch);
        let rv = ffi::md_rs_glue_watchdog_start(
            pconf,
            name.as_ptr(),
            first.as_micros() as ffi::apr_interval_time_t,
            watch as *mut c_void,
            Some(callback::<P>),
            &mut (*watch).wd,
        );
        if rv == 0 {
            Ok(())
        } else {
            Err(rv)
        }
    }
}

/// mod_watchdog: one run. It always returns success (a failing callback is never called
/// again) and reschedules itself.
unsafe extern "C" fn callback<P: Pass>(
    state: c_int,
    data: *mut c_void,
    _pool: *mut ffi::apr_pool_t,
) -> ffi::apr_status_t {
    // SAFETY: data is the Watch<P> registered in start_singleton, alive for this generation.
    let watch = unsafe { &*(data as *const Watch<P>) };
    guard(P::WHAT, watch.server, 0, || {
        if state != ffi::AP_WATCHDOG_STATE_RUNNING as c_int {
            return 0;
        }
        let next = watch.pass.run(watch.server);
        log_s!(
            watch.server,
            Level::Debug,
            "next {} in {} s",
            P::CHECK,
            next.as_secs()
        );
        // SAFETY: wd and data belong to this generation's watchdog.
        unsafe {
            ffi::md_rs_glue_watchdog_set_interval(
                watch.wd,
                next.as_micros() as ffi::apr_interval_time_t,
                data,
                Some(callback::<P>),
            );
        }
        0
    })
}

impl Pass for RenewPlan {
    const WHAT: &'static str = "renewal watchdog";
    const CHECK: &'static str = "renewal check";
    fn run(&self, server: *mut ffi::server_rec) -> Duration {
        run_pass(self, server)
    }
}

/// Start the renewal watchdog (post_config, not on the dry run).
///
/// # Safety
/// `pconf` and `s` must be httpd's live config pool and base server.
pub unsafe fn start(
    pconf: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
    plan: RenewPlan,
) -> Result<(), ffi::apr_status_t> {
    let first = plan.initial_delay.unwrap_or_default();
    // SAFETY: as the caller's.
    unsafe { start_singleton(pconf, s, c"_md_renew_", first, plan) }
}

/// This child is going away: it exits (pool cleanup), or httpd told it to stop (graceful
/// restart: a new generation's child takes over the renewals).
pub(crate) fn stopping() -> bool {
    if STOPPING.load(Ordering::SeqCst) {
        return true;
    }
    let mut state: c_int = 0;
    // SAFETY: ap_mpm_query only reads the MPM's state into the int we pass.
    unsafe { ffi::ap_mpm_query(ffi::AP_MPMQ_MPM_STATE as c_int, &mut state) };
    state == ffi::AP_MPMQ_STOPPING as c_int
}

/// Renew what is due (bounded parallelism); returns the delay until the next run.
fn run_pass(plan: &RenewPlan, server: *mut ffi::server_rec) -> Duration {
    let _in_flight = InFlight::enter();
    if STOPPING.load(Ordering::SeqCst) {
        return Duration::from_secs(1);
    }
    let log = ServerLog(server);
    let mut renewer = Renewer::new(
        &plan.store,
        plan.store_dir.clone(),
        &log,
        plan.settings.clone(),
        plan.events.clone(),
    );
    renewer.stopping = &stopping;
    renewer.ari = Some(&plan.ari);
    renewer.connections = Some(&plan.connections);
    let cluster = plan.cluster.as_ref().map(|c| c.for_pass(&log));
    if let Some(c) = cluster {
        match c {
            Some(c) => renewer.cluster = Some(c),
            // a configured cluster that cannot be used: nothing may be renewed alone
            None => {
                return plan
                    .cluster
                    .as_ref()
                    .map_or(Duration::from_secs(60), |c| c.settings.poll)
            }
        }
    }
    let now = Utc::now();
    let interval = plan.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
    let regular = jittered(interval, drive::random_jitter());
    let next = Mutex::new(regular);
    let earlier = |d: Duration| {
        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
        *n = (*n).min(d);
    };
    // In a cluster, sets other nodes publish are taken over when an MD is visited: every
    // pass visits every MD there.
    let visit_all = plan.cluster.is_some();
    let visited = AtomicUsize::new(0);
    let queue = Mutex::new(plan.mds.iter());
    std::thread::scope(|scope| {
        for _ in 0..MAX_PARALLEL.min(plan.mds.len()) {
            scope.spawn(|| loop {
                if stopping() {
                    break;
                }
                let Some(w) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                    break;
                };
                let revoked = w.md.stapling
                    && !w.revoked.load(Ordering::SeqCst)
                    && plan.ocsp.revoked_in(&w.md.name);
                let mut next_visit = w.next_visit.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = next_visit.filter(|t| *t > now && !revoked && !visit_all) {
                    earlier((t - now).to_std().unwrap_or_default());
                    continue;
                }
                visited.fetch_add(1, Ordering::Relaxed);
                let mut active = w.active.lock().unwrap_or_else(|p| p.into_inner());
                if revoked {
                    // SPEC 6: a revoked certificate of an MD with stapling is renewed at once.
                    w.revoked.store(true, Ordering::SeqCst);
                    md_core::md_log!(
                        log,
                        Level::Warning,
                        "AH10500: md({}): need to renew, OCSP reports revoked certificate(s)",
                        w.md.name
                    );
                    active.force(None);
                }
                let until = match renewer.run_md(&w.md, w.support, &mut active, now) {
                    MdOutcome::Idle(Some(t)) | MdOutcome::Failed(t) => Some(t),
                    MdOutcome::Idle(None) | MdOutcome::Staged => None,
                };
                if let Some(t) = until {
                    earlier((t - Utc::now()).to_std().unwrap_or_default());
                }
                // at the latest with the regular pass (an MD with nothing scheduled, or
                // a changed ARI suggestion, is looked at once per check interval)
                let regular_at = now + chrono::Duration::from_std(regular).unwrap_or_default();
                *next_visit = Some(until.map_or(regular_at, |t| t.min(regular_at)));
            });
        }
    });
    md_core::md_log!(
        log,
        Level::Debug,
        "renewal pass: {} of {} MD(s) due",
        visited.into_inner(),
        plan.mds.len()
    );
    let mut next = next.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = &plan.cluster {
        // other nodes publish renewals: look for them
        next = next.min(c.settings.poll);
    }
    if plan.mds.iter().any(|w| w.md.stapling) {
        // The OCSP watchdog (maybe in another child) stores a revocation; look at least
        // hourly, so a revoked certificate is renewed within the hour, not at the next
        // MDCheckInterval (the C module waits for that, or for a restart).
        next = next.min(REVOCATION_CHECK);
    }
    next.max(Duration::from_secs(1))
}
