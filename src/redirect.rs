//! MDRequireHttps: redirect plain-http requests for MD names to https, and HSTS on https
//! (post_read_request after mod_ssl). The decision is md-core's `serve::require_https`.

use std::ffi::c_int;

use crate::guard::guard;
use crate::request::Request;
use crate::state::mod_state_ref;
use md_core::serve::{self, HttpsAction, RequestFacts};

/// httpd: post_read_request, after mod_ssl.
#[no_mangle]
pub unsafe extern "C" fn md_rs_require_https(r: *mut crate::ffi::request_rec) -> c_int {
    // SAFETY: r is the live request httpd passes to the hook.
    let req = unsafe { Request::new(r) };
    guard("require_https", req.server(), crate::ffi::DECLINED, || {
        // SAFETY: the state lives in pconf, which outlives every request.
        let Some(state) = (unsafe { mod_state_ref(req.pconf()) }) else {
            return crate::ffi::DECLINED;
        };
        let Some(md) = state.md_of_server(req.server() as usize) else {
            return crate::ffi::DECLINED;
        };
        let (path, uri, host_for_url) = (req.path(), req.unparsed_uri(), req.host_for_url());
        let facts = RequestFacts {
            is_tls: req.is_tls(),
            is_get: req.is_get(),
            host_for_url: &host_for_url,
            unparsed_uri: &uri,
            path: &path,
        };
        match serve::require_https(Some(md), &req.hostname(), &facts) {
            HttpsAction::None => crate::ffi::DECLINED,
            HttpsAction::Hsts => {
                req.set_header_out_if_absent(c"Strict-Transport-Security", serve::HSTS_VALUE);
                crate::ffi::DECLINED
            }
            HttpsAction::Redirect { status, location } => {
                req.set_header_out(c"Location", &location);
                c_int::from(status)
            }
        }
    })
}
