//! Log lines into httpd's error log with md_module's index, so `LogLevel md:debug` applies and
//! lines carry the `[md:...]` tag. The variadic ap_log_error is reached through a C trampoline.

use std::ffi::{CStr, CString};

use crate::ffi;
use md_core::log::Level;

/// Log a formatted line for a server (null = main server) with this file and line.
macro_rules! log_s {
    ($s:expr, $level:expr, $($arg:tt)*) => {{
        let s: *const $crate::ffi::server_rec = $s;
        if $crate::log::enabled(s, $level) {
            let file = concat!(file!(), "\0");
            $crate::log::write(
                std::ffi::CStr::from_bytes_with_nul(file.as_bytes()).unwrap_or(c"mod_md"),
                line!(), s, $level, 0, &format!($($arg)*),
            );
        }
    }};
}
pub(crate) use log_s;

/// Would a line of `level` be logged for server `s`?
pub fn enabled(s: *const ffi::server_rec, level: Level) -> bool {
    if level <= Level::Notice || s.is_null() {
        return true;
    }
    // SAFETY: s is a live server_rec handed to us by httpd.
    unsafe { ffi::md_rs_glue_log_is_level(s, level as i32) != 0 }
}

/// Write one line (the level check is the caller's).
pub fn write(
    file: &CStr,
    line: u32,
    s: *const ffi::server_rec,
    level: Level,
    status: i32,
    msg: &str,
) {
    // Interior NULs cannot be passed to C; escape them rather than lose the line.
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: file and msg are valid C strings, s a server_rec or null; the glue formats "%s".
    unsafe {
        ffi::md_rs_glue_log(
            file.as_ptr(),
            line as i32,
            level as i32,
            status,
            s,
            msg.as_ptr(),
        );
    }
}

/// Log without a call site (used by the panic guard).
pub fn log_server(s: *const ffi::server_rec, level: Level, status: i32, msg: &str) {
    if enabled(s, level) {
        write(c"mod_md", 0, s, level, status, msg);
    }
}

/// A [`md_core::log::LogSink`] writing for one server; md-core's lines carry the file name
/// `md-core`.
pub struct ServerLog(pub *const ffi::server_rec);

// SAFETY: the server_rec is read-only after startup and lives as long as the generation;
// ap_log_error may be called from any thread.
unsafe impl Send for ServerLog {}
// SAFETY: as above.
unsafe impl Sync for ServerLog {}

impl md_core::log::LogSink for ServerLog {
    fn enabled(&self, level: Level) -> bool {
        enabled(self.0, level)
    }
    fn log(&self, level: Level, status: i32, msg: &str) {
        write(c"md-core", 0, self.0, level, status, msg);
    }
}
