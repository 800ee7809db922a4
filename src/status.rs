//! Monitoring (SPEC 2.1-2.3): the `md-status` handler, `/.httpd/certificate-status` and the
//! mod_status section. The output is md-core's `status`; this file only maps requests to it.
//!
//! Request threads only read: the snapshots taken by the parent at post_config (the active
//! certificates under `domains/` are root-only) and, per request, the staging jobs, which the
//! child's user may read.

use std::ffi::c_int;

use chrono::Utc;

use crate::ffi;
use crate::guard::{guard, test_panic_point};
use crate::request::Request;
use crate::state::{mod_state_ref, ModState};
use md_core::status::{self, CheckAt, MdSnapshot, MdView, Renewal, StaplingView};

/// The exact path of the certificate-status resource.
const CERT_STATUS_PATH: &str = "/.httpd/certificate-status";

fn view<'a>(state: &ModState, snap: &'a MdSnapshot, staplings: &[StaplingView]) -> MdView<'a> {
    let name = &snap.record.md.name;
    MdView {
        snap,
        renewal: Renewal::load(&snap.record.md, &state.store_dir),
        ocsp: staplings
            .iter()
            .filter(|s| &s.group == name)
            .cloned()
            .collect(),
    }
}

fn views<'a>(state: &'a ModState, staplings: &[StaplingView]) -> Vec<MdView<'a>> {
    state
        .status
        .iter()
        .map(|s| view(state, s, staplings))
        .collect()
}

/// Answer md-status for `path`: one MD (with job logs) when the last path segment names an
/// MD or one of its domains, else all MDs, written one MD at a time (each MD's staging job is
/// read as it is written).
fn md_status(req: &Request, state: &ModState, path: &str) {
    let now = Utc::now();
    let staplings = status::staplings(&state.ocsp, now);
    let last = path.rsplit('/').next().unwrap_or_default();
    if let Some(snap) = status::find_md(&state.status, &state.md_index, last) {
        let v = view(state, snap, &staplings);
        let body = status::to_body(&status::md_status_json(&v, now, true));
        return req.send_body(200, c"application/json", &body);
    }
    if state.status.is_empty() {
        let body = status::to_body(&status::md_status_list(&[], now));
        return req.send_body(200, c"application/json", &body);
    }
    if !req.start_body(200, c"application/json") {
        return;
    }
    let mut sorted: Vec<&MdSnapshot> = state.status.iter().collect();
    sorted.sort_by(|a, b| a.record.md.name.cmp(&b.record.md.name));
    let w = status::ListWriter::default();
    req.write(w.head());
    for (i, snap) in sorted.into_iter().enumerate() {
        req.write(&w.item(&view(state, snap, &staplings), now, i == 0));
    }
    req.write(w.tail());
}

/// httpd: handler for `SetHandler md-status`.
#[no_mangle]
pub unsafe extern "C" fn md_rs_status_handler(r: *mut ffi::request_rec) -> c_int {
    // SAFETY: r is the live request httpd passes to the hook.
    let req = unsafe { Request::new(r) };
    guard(
        "md-status handler",
        req.server(),
        ffi::HTTP_INTERNAL_SERVER_ERROR,
        || {
            if req.handler() != "md-status" {
                return ffi::DECLINED;
            }
            if !req.is_get() {
                return ffi::HTTP_NOT_IMPLEMENTED;
            }
            test_panic_point("md-status");
            // SAFETY: the state lives in pconf, which outlives every request.
            let Some(state) = (unsafe { mod_state_ref(req.pconf()) }) else {
                return ffi::HTTP_SERVICE_UNAVAILABLE;
            };
            md_status(&req, state, &req.path());
            ffi::OK
        },
    )
}

/// httpd: post_read_request, before mod_ssl (which answers 503 on connections with a fallback
/// certificate): `/.httpd/certificate-status` for MD host names, on http and https.
#[no_mangle]
pub unsafe extern "C" fn md_rs_certificate_status(r: *mut ffi::request_rec) -> c_int {
    // SAFETY: r is the live request httpd passes to the hook.
    let req = unsafe { Request::new(r) };
    guard("certificate-status", req.server(), ffi::DECLINED, || {
        if req.path() != CERT_STATUS_PATH {
            return ffi::DECLINED;
        }
        // SAFETY: the state lives in pconf, which outlives every request.
        let Some(state) = (unsafe { mod_state_ref(req.pconf()) }) else {
            return ffi::DECLINED;
        };
        if !state.config.global.certificate_status.unwrap_or(true) {
            return ffi::DECLINED;
        }
        let host = req.hostname();
        // As the C module: the first MD covering the host name, also by a wildcard domain.
        let Some(snap) = status::find_md_by_domain(&state.status, &state.md_index, &host) else {
            return ffi::DECLINED;
        };
        if !req.is_get() {
            return ffi::HTTP_NOT_IMPLEMENTED;
        }
        let body = status::to_body(&status::certificate_status(&view(state, snap, &[])));
        req.send_body(200, c"application/json", &body);
        ffi::DONE
    })
}

/// mod_status: our section of `/server-status` (HTML) or its `?auto` form. Nothing unless
/// MDServerStatus is on (default off, as in httpd >= 2.4.69).
#[no_mangle]
pub unsafe extern "C" fn md_rs_status_hook(r: *mut ffi::request_rec, flags: c_int) -> c_int {
    // SAFETY: r is the live request httpd passes to the hook.
    let req = unsafe { Request::new(r) };
    guard("server-status", req.server(), ffi::OK, || {
        // SAFETY: the state lives in pconf, which outlives every request.
        let Some(state) = (unsafe { mod_state_ref(req.pconf()) }) else {
            return ffi::OK;
        };
        let g = &state.config.global;
        if !g.server_status.unwrap_or(false) || state.status.is_empty() {
            return ffi::OK;
        }
        let check = g
            .certificate_check
            .as_ref()
            .map(|(name, url)| CheckAt {
                name: name.clone(),
                url: url.clone(),
            })
            .unwrap_or_default();
        let now = Utc::now();
        let staplings = status::staplings(&state.ocsp, now);
        let views = views(state, &staplings);
        let text = if flags & ffi::AP_STATUS_SHORT as c_int != 0 {
            status::server_status_auto(&views, now, &check)
                + &status::staplings_auto(&staplings, now)
        } else {
            status::server_status_html(&views, now, &check)
                + &status::staplings_html(&staplings, now)
        };
        req.write(text.as_bytes());
        ffi::OK
    })
}

/// Collect the status snapshots of all MDs. Runs in the parent at post_config (not on the dry
/// run), while `domains/` is still readable.
pub fn snapshots(
    mds: &[md_core::md::ManagedDomain],
    watched: &[bool],
    store_dir: &std::path::Path,
    pairs: &md_core::crypt::PairCache,
) -> Vec<MdSnapshot> {
    mds.iter()
        .zip(watched)
        .map(|(md, w)| MdSnapshot::load_cached(md, store_dir, *w, pairs))
        .collect()
}
