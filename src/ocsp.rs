//! OCSP stapling (SPEC 6): mod_ssl's `ssl_ocsp_prime_hook` (parent, per certificate, while
//! mod_ssl configures its vhosts), `ssl_ocsp_get_resp_hook` (children, per handshake) and the
//! `_md_ocsp_` watchdog (one child) that keeps the responses fresh.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use chrono::Utc;

use crate::config::srv_conf;
use crate::guard::guard;
use crate::log::{log_s, ServerLog};
use crate::state::{mod_state, mod_state_ref, pconf_of};
use crate::watchdog::{start_singleton, Pass};
use crate::{apr, ffi};
use md_core::http::{HttpConfig, ReqwestClient};
use md_core::log::Level;
use md_core::ocsp::{self, NotStapled, OcspRegistry, OcspWatch, Staple, StapledCert};
use md_core::store::FsStore;

const OK: c_int = ffi::OK;
const DECLINED: c_int = ffi::DECLINED;

/// Which group a certificate of server `s` is stapled in: `Some(Some(md))` for an MD with
/// stapling on, `Some(None)` for others (MDStapling and MDStapleOthers on for the server),
/// `None`: not stapled by us.
///
/// # Safety
/// `s` must be a live server_rec of this generation.
unsafe fn stapling_group(s: *mut ffi::server_rec) -> Option<Option<String>> {
    // SAFETY: s is live; the state belongs to its process' config pool.
    let (state, settings) = unsafe { (mod_state(pconf_of(s)), &srv_conf(s).settings) };
    if let Some(md) = state.md_of_server(s as usize) {
        if md.stapling {
            return Some(Some(md.name.clone()));
        }
    }
    let others = settings.stapling.unwrap_or(false) && settings.staple_others.unwrap_or(true);
    others.then_some(None)
}

/// mod_ssl: a certificate (`pem`: the certificate and its issuer) of server `s` can be
/// stapled. OK claims it; DECLINED leaves it to mod_ssl.
#[no_mangle]
pub unsafe extern "C" fn md_rs_ocsp_prime(
    s: *mut ffi::server_rec,
    _p: *mut ffi::apr_pool_t,
    id: *const c_char,
    id_len: ffi::apr_size_t,
    pem: *const c_char,
) -> c_int {
    guard("ocsp prime", s, DECLINED, || {
        // SAFETY: s is the live vhost mod_ssl configures.
        let Some(group) = (unsafe { stapling_group(s) }) else {
            return DECLINED;
        };
        // SAFETY: mod_ssl passes the id bytes and a NUL-terminated PEM.
        let (raw_id, pem) = unsafe {
            (
                std::slice::from_raw_parts(id as *const u8, id_len),
                apr::to_string(pem),
            )
        };
        let label = ocsp::id::group_dir(group.as_deref()).to_string();
        let cert = match StapledCert::from_chain_pem(raw_id, group.clone(), pem.as_bytes()) {
            Ok(c) => c,
            Err(NotStapled::NoIssuer) => {
                log_s!(
                    s,
                    Level::Debug,
                    "{label}: no issuer with the certificate, not stapled"
                );
                return DECLINED;
            }
            Err(NotStapled::NoResponder(id)) => {
                log_s!(
                    s,
                    Level::Debug,
                    "{label}: certificate {id} has no OCSP responder URL, not stapled"
                );
                return DECLINED;
            }
        };
        let (id, responder) = (cert.id.clone(), cert.responder.clone());
        // SAFETY: parent, single-threaded config phase.
        let state = unsafe { mod_state(pconf_of(s)) };
        let stored = state
            .registry
            .as_ref()
            .map(|r| ocsp::stored::load(r.store(), group.as_deref(), &id));
        let Some(reg) = Arc::get_mut(&mut state.ocsp) else {
            log_s!(
                s,
                Level::Err,
                "{label}: OCSP registry in use, {id} not stapled"
            );
            return DECLINED;
        };
        let entry = reg.add(cert);
        match stored {
            Some(Ok(Some(resp))) => {
                let mtime = std::fs::metadata(reg.file_of(&entry))
                    .and_then(|m| m.modified())
                    .ok();
                entry.set_response(resp, mtime);
            }
            Some(Err(e)) => log_s!(s, Level::Warning, "{label}: {e}; fetching a new one"),
            _ => {}
        }
        log_s!(
            s,
            Level::Debug,
            "{label}: stapling certificate {id} (responder {responder})"
        );
        OK
    })
}

/// mod_ssl: the OCSP response to staple in this handshake for certificate `id`.
#[no_mangle]
pub unsafe extern "C" fn md_rs_ocsp_get_resp(
    s: *mut ffi::server_rec,
    _c: *mut ffi::conn_rec,
    id: *const c_char,
    id_len: ffi::apr_size_t,
    cb: ffi::ap_ssl_ocsp_copy_resp,
    userdata: *mut c_void,
) -> c_int {
    guard("ocsp get_resp", s, DECLINED, || {
        // SAFETY: s is live; the state is read-only after post_config.
        let Some(state) = (unsafe { mod_state_ref(pconf_of(s)) }) else {
            return DECLINED;
        };
        // SAFETY: mod_ssl passes the id bytes.
        let raw_id = unsafe { std::slice::from_raw_parts(id as *const u8, id_len) };
        match state.ocsp.staple(raw_id, Utc::now()) {
            // Nothing to staple: mod_ssl fails the handshake when a provider says OK without
            // a response, so decline (mod_ssl has no stapling data of its own for a
            // certificate a provider primed: it sends none).
            Staple::NotOurs | Staple::Nothing => DECLINED,
            Staple::Response(der) => {
                if let Some(cb) = cb {
                    // SAFETY: mod_ssl's callback copies the bytes during the call.
                    unsafe { cb(der.as_ptr(), der.len(), userdata) };
                }
                OK
            }
        }
    })
}

/// What the OCSP watchdog works with, prepared in the parent.
struct OcspWatchData {
    watch: OcspWatch,
    store: FsStore,
    proxy_url: Option<String>,
}

/// Start the OCSP watchdog when certificates were primed (post_config #2, not the dry run).
/// Also deletes stored responses older than MDStaplingKeepResponse.
///
/// # Safety
/// `pconf` and `s` must be httpd's live config pool and base server.
pub unsafe fn start(
    pconf: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
    registry: Arc<OcspRegistry>,
    store: FsStore,
    settings: &md_core::config::ModConfig,
    events: md_core::event::Events,
    retry_delay: std::time::Duration,
) -> Result<(), ffi::apr_status_t> {
    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86400);
    let g = &settings.global;
    let keep = g
        .stapling_keep_response
        .as_ref()
        .map(|t| t.length_for(WEEK))
        .unwrap_or(WEEK);
    let log = ServerLog(s);
    let purged = ocsp::purge_old_responses(&store, keep, std::time::SystemTime::now(), &log);
    if purged > 0 {
        log_s!(
            s,
            Level::Info,
            "removed {purged} OCSP response file(s) older than MDStaplingKeepResponse"
        );
    }
    if registry.is_empty() {
        return Ok(());
    }
    log_s!(
        s,
        Level::Debug,
        "{} certificate(s) stapled, starting the OCSP watchdog",
        registry.certs().len()
    );
    let data = OcspWatchData {
        watch: OcspWatch::new(registry, retry_delay, events),
        store,
        proxy_url: g.env.proxy_url.clone(),
    };
    // SAFETY: as the caller's; the first run comes at once.
    unsafe { start_singleton(pconf, s, c"_md_ocsp_", std::time::Duration::ZERO, data) }
}

impl Pass for OcspWatchData {
    const WHAT: &'static str = "OCSP watchdog";
    const CHECK: &'static str = "OCSP check";

    fn run(&self, server: *mut ffi::server_rec) -> std::time::Duration {
        let _in_flight = crate::watchdog::InFlight::enter();
        if crate::watchdog::stopping() {
            return std::time::Duration::from_secs(1);
        }
        let config = HttpConfig {
            proxy_url: self.proxy_url.clone(),
            connect_timeout: std::time::Duration::from_secs(10),
            timeout: std::time::Duration::from_secs(60),
            max_body: ocsp::MAX_RESPONSE_BYTES,
            ..HttpConfig::default()
        };
        let http = match ReqwestClient::new(&config) {
            Ok(h) => h,
            Err(e) => {
                log_s!(server, Level::Err, "OCSP: {e}");
                return ocsp::watch::MAX_PAUSE;
            }
        };
        let log = ServerLog(server);
        self.watch.run_pass(
            &self.store,
            &http,
            &log,
            Utc::now(),
            &crate::watchdog::stopping,
        )
    }
}
