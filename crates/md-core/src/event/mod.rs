//! Events for the admin's commands (SPEC 2.4): MDMessageCmd gets `<reason> <md>` for every
//! event, MDNotifyCmd `<md>` for `renewed`. Commands run without a shell. Each delivered
//! message is recorded in the job log as `message-<reason>`, also when no command is
//! configured (as the C module does), and those entries drive the rate limits.

pub mod exec;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::drive::job::{log_entry, set_last, RunResult};
use crate::log::{Level, LogSink};
use crate::store::{parse_http_date, JobRecord};

/// How long the admin's command may run.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// At most one delivery of `reason` per this period (None: no limit).
pub fn rate_limit(reason: &str) -> Option<Duration> {
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86400);
    match reason {
        "renewing" | "errored" | "ocsp-errored" => Some(HOUR),
        "renewed" | "installed" | "expiring" | "ocsp-renewed" => Some(DAY),
        _ => None,
    }
}

/// The configured commands. They get the server's environment and nothing added, as from
/// the C module (which runs them with `APR_PROGRAM_ENV` and no extra variables).
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// MDMessageCmd.
    pub message_cmd: Option<String>,
    /// MDNotifyCmd.
    pub notify_cmd: Option<String>,
}

/// Why an event could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

fn last_message(job: &JobRecord, reason: &str) -> Option<DateTime<Utc>> {
    let kind = format!("message-{reason}");
    job.log
        .as_ref()?
        .get("entries")?
        .as_array()?
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(kind.as_str()))
        .filter_map(|e| {
            e.get("when")
                .and_then(Value::as_str)
                .and_then(parse_http_date)
        })
        .max()
}

/// Record a failed command: log line, job log entry, and the job's `last` result with the
/// C module's problem URN (`urn:org:apache:httpd:log:AH10109:` etc.).
fn failed(
    job: &mut JobRecord,
    now: DateTime<Utc>,
    log: &dyn LogSink,
    ah: &str,
    kind: &str,
    detail: String,
) -> EventError {
    crate::md_log!(*log, Level::Err, "{ah}: {detail}");
    log_entry(job, now, kind, Some(&detail));
    let result = RunResult {
        status: 1,
        problem: Some(format!("urn:org:apache:httpd:log:{ah}:")),
        detail: Some(detail.clone()),
        ..Default::default()
    };
    set_last(job, &result);
    EventError(detail)
}

impl Events {
    /// The events of a server: its commands.
    pub fn new(message_cmd: Option<String>, notify_cmd: Option<String>) -> Self {
        Events {
            message_cmd,
            notify_cmd,
        }
    }

    fn run(&self, cmd: &str, args: &[&str], log: &dyn LogSink) -> Result<(), String> {
        let (result, out) = match exec::run_command(cmd, args, &[], CMD_TIMEOUT) {
            Ok(out) => (Ok(()), out),
            Err((e, out)) => (Err(e.to_string()), out),
        };
        for line in &out.stderr_lines {
            crate::md_log!(*log, Level::Info, "{cmd}: {line}");
        }
        result
    }

    /// Raise `reason` for MD `md`, recording it in `job`. A rate-limited repeat counts as
    /// delivered without running anything. An error means the command failed (for `renewing`
    /// that is a veto, for `renewed`/`expiring` a reason to retry later).
    pub fn raise(
        &self,
        reason: &str,
        md: &str,
        job: &mut JobRecord,
        now: DateTime<Utc>,
        log: &dyn LogSink,
    ) -> Result<(), EventError> {
        if let (Some(limit), Some(last)) = (rate_limit(reason), last_message(job, reason)) {
            if (now - last).to_std().unwrap_or_default() < limit {
                crate::md_log!(
                    *log,
                    Level::Debug,
                    "{md}: rate limiting notification about '{reason}'"
                );
                return Ok(());
            }
        }
        // MDNotifyCmd before MDMessageCmd, in the C module's order.
        if reason == "renewed" {
            if let Some(cmd) = &self.notify_cmd {
                if let Err(e) = self.run(cmd, &[md], log) {
                    let detail = format!("MDNotifyCmd {md}: {e}");
                    return Err(failed(job, now, log, "AH10108", "notify-error", detail));
                }
            }
        }
        if let Some(cmd) = &self.message_cmd {
            if let Err(e) = self.run(cmd, &[reason, md], log) {
                let detail = format!("MDMessageCmd {reason} {md}: {e}");
                return Err(failed(job, now, log, "AH10109", "message-error", detail));
            }
        }
        log_entry(job, now, &format!("message-{reason}"), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::NullSink;

    fn script(dir: &std::path::Path, body: &str) -> String {
        let p = dir.join("cmd.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn types(job: &JobRecord) -> Vec<String> {
        job.log.as_ref().unwrap()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn messages_are_recorded_rate_limited_and_run_with_server_env() {
        let dir = std::env::temp_dir().join(format!("md-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("calls");
        let cmd = script(
            &dir,
            &format!(
                "echo \"[${{MD_VERSION-unset}}] [${{MD_STORE-unset}}] $@\" >> {}",
                out.display()
            ),
        );
        let ev = Events::new(Some(cmd), None);
        let mut job = JobRecord::default();
        let now = Utc::now();
        ev.raise("renewing", "a.test", &mut job, now, &NullSink)
            .unwrap();
        ev.raise("renewing", "a.test", &mut job, now, &NullSink)
            .unwrap();
        ev.raise(
            "renewing",
            "a.test",
            &mut job,
            now + chrono::Duration::hours(2),
            &NullSink,
        )
        .unwrap();
        let calls = std::fs::read_to_string(&out).unwrap();
        // nothing added to the environment (the C module adds nothing either)
        let line = "[unset] [unset] renewing a.test\n";
        assert_eq!(
            calls,
            line.repeat(2),
            "the second within the hour is rate limited"
        );
        assert_eq!(types(&job), vec!["message-renewing", "message-renewing"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failures_are_errors_and_recorded() {
        let dir = std::env::temp_dir().join(format!("md-events-f-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fail = script(&dir, "exit 3");
        let ev = Events::new(Some(fail.clone()), None);
        let mut job = JobRecord::default();
        assert!(ev
            .raise("renewing", "a", &mut job, Utc::now(), &NullSink)
            .is_err());
        assert_eq!(types(&job), vec!["message-error"]);
        let ev = Events::new(None, Some(fail));
        let mut job = JobRecord::default();
        let e = ev
            .raise("renewed", "a", &mut job, Utc::now(), &NullSink)
            .unwrap_err();
        assert!(e.0.starts_with("MDNotifyCmd a"), "{e}");
        assert_eq!(types(&job), vec!["notify-error"]);
        let last = job.last.as_ref().unwrap();
        assert_eq!(last["problem"], "urn:org:apache:httpd:log:AH10108:");
        // Without commands, messages are still recorded (drives the rate limits).
        let ev = Events::default();
        let mut job = JobRecord::default();
        ev.raise("expiring", "a", &mut job, Utc::now(), &NullSink)
            .unwrap();
        assert_eq!(types(&job), vec!["message-expiring"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
