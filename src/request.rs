//! A thin safe view over `request_rec` for the request hooks.

use std::ffi::CStr;

use crate::{apr, ffi};

/// A request being processed; valid for the duration of one hook call.
pub struct Request(*mut ffi::request_rec);

impl Request {
    /// Wrap httpd's request.
    ///
    /// # Safety
    /// `r` must be a live request_rec for as long as the wrapper is used.
    pub unsafe fn new(r: *mut ffi::request_rec) -> Request {
        Request(r)
    }

    fn r(&self) -> &ffi::request_rec {
        // SAFETY: guaranteed by the constructor's contract.
        unsafe { &*self.0 }
    }

    /// The server (vhost) the request was mapped to.
    pub fn server(&self) -> *mut ffi::server_rec {
        self.r().server
    }

    /// httpd's config pool (holds the module state).
    pub fn pconf(&self) -> *mut ffi::apr_pool_t {
        // SAFETY: the request's server is live and points to its process.
        unsafe { crate::state::pconf_of(self.r().server) }
    }

    /// The request's host name (from Host or the request line), lower-cased by httpd.
    pub fn hostname(&self) -> String {
        // SAFETY: hostname is a C string or null.
        unsafe { apr::to_string(self.r().hostname) }
    }

    /// The handler name (`SetHandler`), "" when none.
    pub fn handler(&self) -> String {
        // SAFETY: handler is a C string or null.
        unsafe { apr::to_string(self.r().handler) }
    }

    /// The parsed URI path.
    pub fn path(&self) -> String {
        // SAFETY: parsed_uri.path is a C string or null.
        unsafe { apr::to_string(self.r().parsed_uri.path) }
    }

    /// The URI as sent, with query.
    pub fn unparsed_uri(&self) -> String {
        // SAFETY: unparsed_uri is a C string or null.
        unsafe { apr::to_string(self.r().unparsed_uri) }
    }

    /// GET (HEAD is M_GET too in httpd).
    pub fn is_get(&self) -> bool {
        self.r().method_number == ffi::M_GET
    }

    /// Arrived over TLS.
    pub fn is_tls(&self) -> bool {
        // SAFETY: the connection is live for the request's lifetime.
        unsafe { ffi::ap_ssl_conn_is_ssl(self.r().connection) != 0 }
    }

    /// Host name for building URLs (IPv6 literals bracketed).
    pub fn host_for_url(&self) -> String {
        // SAFETY: r is live; the result is a pool string.
        unsafe { apr::to_string(ffi::ap_get_server_name_for_url(self.0)) }
    }

    fn pool(&self) -> *mut ffi::apr_pool_t {
        self.r().pool
    }

    /// Set a response header (copied into the request pool).
    pub fn set_header_out(&self, name: &'static CStr, value: &str) {
        // SAFETY: headers_out is the request's table; both strings live in or beyond its pool.
        unsafe {
            let v = apr::pstrdup(self.pool(), value);
            ffi::apr_table_setn(self.r().headers_out, name.as_ptr(), v);
        }
    }

    /// Set a response header unless it is already present.
    pub fn set_header_out_if_absent(&self, name: &'static CStr, value: &str) {
        // SAFETY: reading the request's live header table.
        let present = unsafe { !ffi::apr_table_get(self.r().headers_out, name.as_ptr()).is_null() };
        if !present {
            self.set_header_out(name, value);
        }
    }

    /// Write body bytes (headers are httpd's business: used inside mod_status's page).
    pub fn write(&self, body: &[u8]) {
        // SAFETY: r is live; ap_rwrite copies the bytes into the output brigade.
        unsafe {
            ffi::ap_rwrite(
                body.as_ptr() as *const std::ffi::c_void,
                body.len() as i32,
                self.0,
            );
        }
    }

    /// Start a response whose length is not known before its body is written (with
    /// [`Request::write`]); false for a HEAD request, which gets no body.
    pub fn start_body(&self, status: i32, content_type: &'static CStr) -> bool {
        // SAFETY: r is live; the content type is a static C literal httpd may keep.
        unsafe {
            (*self.0).status = status;
            ffi::ap_set_content_type(self.0, content_type.as_ptr());
            (*self.0).header_only == 0
        }
    }

    /// Send a complete response body with this status and content type.
    pub fn send_body(&self, status: i32, content_type: &'static CStr, body: &[u8]) {
        // SAFETY: r is live; the content type is a static C literal httpd may keep.
        unsafe {
            (*self.0).status = status;
            ffi::ap_set_content_type(self.0, content_type.as_ptr());
            ffi::ap_set_content_length(self.0, body.len() as ffi::apr_off_t);
            if (*self.0).header_only == 0 {
                ffi::ap_rwrite(
                    body.as_ptr() as *const std::ffi::c_void,
                    body.len() as i32,
                    self.0,
                );
            }
        }
    }
}
