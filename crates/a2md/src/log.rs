//! md-core's log lines on stderr, filtered by -v/-q (default: warnings and up).

use md_core::log::{Level, LogSink};

/// Writes lines of `max` and more severe to stderr.
#[derive(Debug, Clone, Copy)]
pub struct StderrLog {
    /// Most verbose level written.
    pub max: Level,
}

impl StderrLog {
    /// From the counts of -v and -q: Warning by default, each -v one level more verbose
    /// (Notice, Info, Debug, Trace1, Trace2), each -q one level less.
    pub fn from_counts(verbose: u8, quiet: u8) -> StderrLog {
        let levels = [
            Level::Emerg,
            Level::Alert,
            Level::Crit,
            Level::Err,
            Level::Warning,
            Level::Notice,
            Level::Info,
            Level::Debug,
            Level::Trace1,
            Level::Trace2,
        ];
        let i = (4 + i32::from(verbose) - i32::from(quiet)).clamp(0, levels.len() as i32 - 1);
        StderrLog {
            max: levels[i as usize],
        }
    }

    /// The label of a level, as httpd writes it.
    pub fn label(level: Level) -> &'static str {
        match level {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Err => "error",
            Level::Warning => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace1 => "trace1",
            Level::Trace2 => "trace2",
        }
    }
}

impl LogSink for StderrLog {
    fn enabled(&self, level: Level) -> bool {
        level <= self.max
    }
    fn log(&self, level: Level, _status: i32, msg: &str) {
        if self.enabled(level) {
            eprintln!("a2md [{}] {msg}", Self::label(level));
        }
    }
}
