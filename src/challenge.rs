//! http-01 answers in post_read_request (before authentication, so challenges work behind
//! access restrictions). The decision is md-core's `serve::http01`.

use std::ffi::c_int;

use crate::guard::guard;
use crate::log::log_s;
use crate::request::Request;
use crate::state::mod_state_ref;
use md_core::log::Level;
use md_core::serve::{self, Http01};

/// httpd: post_read_request, answer `/.well-known/acme-challenge/<token>` for MD hosts.
#[no_mangle]
pub unsafe extern "C" fn md_rs_http_challenge(r: *mut crate::ffi::request_rec) -> c_int {
    // SAFETY: r is the live request httpd passes to the hook.
    let req = unsafe { Request::new(r) };
    guard("http_challenge", req.server(), crate::ffi::DECLINED, || {
        let path = req.path();
        if !path.starts_with(serve::ACME_CHALLENGE_PREFIX) {
            return crate::ffi::DECLINED;
        }
        // SAFETY: the state lives in pconf, which outlives every request.
        let Some(state) = (unsafe { mod_state_ref(req.pconf()) }) else {
            return crate::ffi::DECLINED;
        };
        let challenges = state.store_dir.join("challenges");
        match serve::http01(
            &state.mds,
            &state.md_index,
            &challenges,
            &req.hostname(),
            &path,
            req.is_get(),
        ) {
            Http01::Decline => crate::ffi::DECLINED,
            Http01::Answer(body) => {
                log_s!(
                    req.server(),
                    Level::Debug,
                    "answering http-01 challenge for {}",
                    req.hostname()
                );
                req.send_body(200, c"text/plain", body.as_bytes());
                crate::ffi::DONE
            }
            Http01::NotFound if req.is_get() => {
                // Cluster mode: another node may have ordered, and shared the answer.
                let host = req.hostname().to_ascii_lowercase();
                match state.shared_challenge(&host, serve::HTTP01_FILE) {
                    Ok(Some(body)) => {
                        log_s!(
                            req.server(),
                            Level::Debug,
                            "answering http-01 challenge for {host} (shared by the cluster)"
                        );
                        req.send_body(200, c"text/plain", &body);
                        crate::ffi::DONE
                    }
                    Ok(None) => crate::ffi::HTTP_NOT_FOUND,
                    Err(e) => {
                        log_s!(
                            req.server(),
                            Level::Warning,
                            "http-01 challenge for {host}: cluster database: {e}"
                        );
                        crate::ffi::HTTP_NOT_FOUND
                    }
                }
            }
            Http01::NotFound => crate::ffi::HTTP_NOT_FOUND,
            Http01::NotImplemented => crate::ffi::HTTP_NOT_IMPLEMENTED,
            Http01::Error(e) => {
                log_s!(req.server(), Level::Err, "http-01 challenge: {e}");
                crate::ffi::HTTP_INTERNAL_SERVER_ERROR
            }
        }
    })
}
