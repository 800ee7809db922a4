//! The panic guard around every `extern "C"` entry: a panic must never unwind into httpd (that
//! aborts the process); it becomes a logged error and a safe return value instead.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi;
use crate::log::log_server;
use md_core::log::Level;

/// Run `f`; on panic log at CRIT for server `s` (may be null) and return `fallback`.
pub fn guard<R>(what: &str, s: *const ffi::server_rec, fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = panic_message(&payload);
            log_server(s, Level::Crit, 0, &format!("panic caught in {what}: {msg}"));
            fallback
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Fault injection for the end-to-end tests: `MD_RS_TEST_PANIC=<where>` makes the named entry
/// panic (e.g. `directive:MDRenewMode`), proving the guard turns it into an error, not a crash.
pub fn test_panic_point(point: &str) {
    if std::env::var("MD_RS_TEST_PANIC").is_ok_and(|v| v == point) {
        panic!("test panic injected at {point}");
    }
}
