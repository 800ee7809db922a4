//! Log levels numbered like httpd's APLOG_* and the sink that carries lines to the host.
//!
//! md-core never prints: it hands lines to a [`LogSink`]. In httpd the sink is `ap_log_error`
//! with the module index (so `LogLevel md:debug` works); in a2md it is stderr.

/// Log level, numbered like APLOG_EMERG (0) .. APLOG_TRACE8 (15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    /// System is unusable.
    Emerg = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical conditions.
    Crit = 2,
    /// Error conditions.
    Err = 3,
    /// Warning conditions.
    Warning = 4,
    /// Normal but significant.
    Notice = 5,
    /// Informational.
    Info = 6,
    /// Debug-level messages.
    Debug = 7,
    /// Trace level 1.
    Trace1 = 8,
    /// Trace level 2.
    Trace2 = 9,
}

/// Receiver of log lines. Implementations decide whether a level is enabled, so callers can skip
/// formatting lines nobody will see.
pub trait LogSink {
    /// True when lines of `level` would be written.
    fn enabled(&self, level: Level) -> bool;
    /// Write one line. `status` is an OS/APR status code or 0.
    fn log(&self, level: Level, status: i32, msg: &str);
}

/// A sink that discards everything (tests, dry runs).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl LogSink for NullSink {
    fn enabled(&self, _level: Level) -> bool {
        false
    }
    fn log(&self, _level: Level, _status: i32, _msg: &str) {}
}

/// Log through a sink, formatting only when the level is enabled.
#[macro_export]
macro_rules! md_log {
    ($sink:expr, $level:expr, $($arg:tt)*) => {{
        let sink = &$sink;
        if $crate::log::LogSink::enabled(sink, $level) {
            $crate::log::LogSink::log(sink, $level, 0, &format!($($arg)*));
        }
    }};
}
