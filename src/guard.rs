//! The panic guard around every `extern "C"` entry: a panic must never unwind into httpd (that
//! aborts the process); it becomes a logged error and a safe return value instead.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi;
use crate::log::log_server;
use md_core::log::Level;

/// Run `f`; on panic log at CRIT for server `s` (may be null) and return `fallback`.
pub fn guard<R>(what: &str, s: *const ffi::server_rec, fallback: R, f: impl FnOnce() -> R) -> R {
    guard_with(
        |msg| log_server(s, Level::Crit, 0, &format!("panic caught in {what}: {msg}")),
        fallback,
        f,
    )
}

/// Run `f`; on panic hand the panic message to `report` and return `fallback`.
pub fn guard_with<R>(report: impl FnOnce(&str), fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            report(&panic_message(&payload));
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

#[cfg(test)]
mod tests {
    use super::*;

    // Tests stay clear of anything that calls into httpd: the test binary cannot link it.
    #[test]
    fn panic_becomes_fallback() {
        let mut seen = String::new();
        let r = guard_with(|m| seen = m.to_string(), -1, || -> i32 { panic!("boom") });
        assert_eq!((r, seen.as_str()), (-1, "boom"));
        assert_eq!(guard_with(|_| unreachable!(), -1, || 7), 7);
    }

    #[test]
    fn panic_messages() {
        let p = std::panic::catch_unwind(|| panic!("x {}", 1)).unwrap_err();
        assert_eq!(panic_message(&p), "x 1");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(3u8)).unwrap_err();
        assert_eq!(panic_message(&p), "unknown panic");
    }
}
