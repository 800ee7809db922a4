//! tls-alpn-01 (RFC 8737): propose and switch to the `acme-tls/1` ALPN protocol on TLS
//! connections that offer it, then hand mod_ssl the challenge certificate for the SNI name.

use std::ffi::{c_char, c_int, c_void, CStr};

use crate::guard::guard;
use crate::log::log_s;
use crate::state::{mod_state_ref, pconf_of};
use crate::{apr, ffi};
use md_core::log::Level;
use md_core::serve;

const ACME_TLS_1: &CStr = c"acme-tls/1";

/// Marker stored in the connection's config vector once it switched to `acme-tls/1`.
static SWITCHED: &CStr = c"acme-tls/1";

fn switched(c: *const ffi::conn_rec) -> bool {
    // SAFETY: c is live; ap_get_module_config only indexes the conn's config vector.
    unsafe {
        let v = ffi::ap_get_module_config((*c).conn_config, crate::module::MD_MODULE.as_ptr());
        !v.is_null()
    }
}

/// httpd: propose `acme-tls/1` at connection level on TLS when the client offers it.
#[no_mangle]
pub unsafe extern "C" fn md_rs_protocol_propose(
    c: *mut ffi::conn_rec,
    r: *mut ffi::request_rec,
    s: *mut ffi::server_rec,
    offers: *const ffi::apr_array_header_t,
    proposals: *mut ffi::apr_array_header_t,
) -> c_int {
    guard("protocol_propose", s, ffi::DECLINED, || {
        // SAFETY: c is the live connection; offers an array of C strings or null.
        unsafe {
            if !r.is_null() || offers.is_null() || ffi::ap_ssl_conn_is_ssl(c) == 0 {
                return ffi::DECLINED;
            }
            if !apr::strings_of(offers)
                .iter()
                .any(|o| o == serve::ACME_TLS_1)
            {
                return ffi::DECLINED;
            }
            // httpd keeps the pointer: a static C literal.
            let slot = ffi::apr_array_push(proposals) as *mut *const c_char;
            *slot = ACME_TLS_1.as_ptr();
        }
        ffi::OK
    })
}

/// httpd: switch the connection to `acme-tls/1`: mark it and close it after the handshake.
#[no_mangle]
pub unsafe extern "C" fn md_rs_protocol_switch(
    c: *mut ffi::conn_rec,
    r: *mut ffi::request_rec,
    s: *mut ffi::server_rec,
    protocol: *const c_char,
) -> c_int {
    guard("protocol_switch", s, ffi::DECLINED, || {
        // SAFETY: c is the live connection; protocol a C string.
        unsafe {
            if !r.is_null() || protocol.is_null() || CStr::from_ptr(protocol) != ACME_TLS_1 {
                return ffi::DECLINED;
            }
            let marker = SWITCHED.as_ptr() as *mut c_void;
            ffi::ap_set_module_config((*c).conn_config, crate::module::MD_MODULE.as_ptr(), marker);
            (*c).keepalive = ffi::ap_conn_keepalive_e_AP_CONN_CLOSE;
        }
        ffi::OK
    })
}

/// httpd: the protocol of a connection we switched.
#[no_mangle]
pub unsafe extern "C" fn md_rs_protocol_get(c: *const ffi::conn_rec) -> *const c_char {
    guard("protocol_get", std::ptr::null(), std::ptr::null(), || {
        if switched(c) {
            ACME_TLS_1.as_ptr()
        } else {
            std::ptr::null()
        }
    })
}

/// mod_ssl: the challenge certificate and key for a connection switched to `acme-tls/1`.
#[no_mangle]
pub unsafe extern "C" fn md_rs_answer_challenge(
    c: *mut ffi::conn_rec,
    server_name: *const c_char,
    pcert_pem: *mut *const c_char,
    pkey_pem: *mut *const c_char,
) -> c_int {
    // SAFETY: c is the live connection.
    let s = unsafe { (*c).base_server };
    guard("ssl_answer_challenge", s, ffi::DECLINED, || {
        if !switched(c) || server_name.is_null() {
            return ffi::DECLINED;
        }
        // SAFETY: server_name is a C string; the state lives in pconf.
        let (host, state) = unsafe { (apr::to_string(server_name), mod_state_ref(pconf_of(s))) };
        let Some(state) = state else {
            return ffi::DECLINED;
        };
        let challenges = state.store_dir.join("challenges");
        match serve::tls_alpn01_pems(&state.mds, &state.md_index, &challenges, &host) {
            Ok(Some((cert, key))) => {
                log_s!(
                    s,
                    Level::Debug,
                    "answering tls-alpn-01 challenge for {host}"
                );
                // SAFETY: copies live in the connection pool, as long as mod_ssl needs them.
                unsafe {
                    *pcert_pem = apr::pstrdup((*c).pool, &cert);
                    *pkey_pem = apr::pstrdup((*c).pool, &key);
                }
                ffi::OK
            }
            Ok(None) => match shared_pems(state, &host) {
                Some((cert, key)) => {
                    log_s!(
                        s,
                        Level::Debug,
                        "answering tls-alpn-01 challenge for {host} (shared by the cluster)"
                    );
                    // SAFETY: as above.
                    unsafe {
                        *pcert_pem = apr::pstrdup((*c).pool, &cert);
                        *pkey_pem = apr::pstrdup((*c).pool, &key);
                    }
                    ffi::OK
                }
                None => {
                    log_s!(
                        s,
                        Level::Info,
                        "AH10080: {host}: no tls-alpn-01 challenge data"
                    );
                    ffi::DECLINED
                }
            },
            Err(e) => {
                log_s!(
                    s,
                    Level::Err,
                    "{host}: reading tls-alpn-01 challenge data: {e}"
                );
                ffi::DECLINED
            }
        }
    })
}

/// Cluster mode: the tls-alpn-01 material another node shared for `host`.
fn shared_pems(state: &crate::state::ModState, host: &str) -> Option<(String, String)> {
    state.cluster.as_ref()?;
    let (name, candidates) = serve::tls_alpn01_files(&state.mds, &state.md_index, host)?;
    candidates.iter().find_map(|(cert, key)| {
        let cert = state.shared_challenge(&name, cert).ok()??;
        let key = state.shared_challenge(&name, key).ok()??;
        Some((
            String::from_utf8_lossy(&cert).into_owned(),
            String::from_utf8_lossy(&key).into_owned(),
        ))
    })
}
