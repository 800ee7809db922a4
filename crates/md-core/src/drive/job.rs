//! What a renewal run records in `job.json` (SPEC 3.4): the `last` result and the job log
//! (newest first, at most 128 entries).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::store::format_http_date;
use crate::store::JobRecord;

/// Most log entries kept.
pub const MAX_LOG_ENTRIES: usize = 128;

/// Add a log entry (`starting`, `progress`, `finished`, `renewal-error`, `message-<reason>`...).
pub fn log_entry(job: &mut JobRecord, when: DateTime<Utc>, kind: &str, detail: Option<&str>) {
    let mut e = Map::new();
    e.insert("when".into(), json!(format_http_date(when)));
    e.insert("type".into(), json!(kind));
    if let Some(d) = detail {
        e.insert("detail".into(), json!(d));
    }
    let mut entries = job
        .log
        .as_ref()
        .and_then(|l| l.get("entries"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.insert(0, Value::Object(e));
    entries.truncate(MAX_LOG_ENTRIES);
    let mut log = match job.log.take() {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    log.insert("entries".into(), Value::Array(entries));
    job.log = Some(Value::Object(log));
}

/// The result of a run, as `last`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunResult {
    /// 0 = success, else an APR-style status code.
    pub status: i64,
    /// Text for the status code.
    pub status_description: Option<String>,
    /// ACME problem type (or an internal one like `challenge-mismatch`).
    pub problem: Option<String>,
    /// What happened (failures; success only records `valid-from`).
    pub detail: Option<String>,
    /// Ready time of staged certificates (success).
    pub valid_from: Option<DateTime<Utc>>,
    /// What was being done.
    pub activity: Option<String>,
    /// Subproblems of an ACME problem.
    pub subproblems: Option<Value>,
}

/// Store `r` as the job's `last`.
pub fn set_last(job: &mut JobRecord, r: &RunResult) {
    let mut m = Map::new();
    m.insert("status".into(), json!(r.status));
    if let Some(d) = &r.status_description {
        m.insert("status-description".into(), json!(d));
    }
    if let Some(p) = &r.problem {
        m.insert("problem".into(), json!(p));
    }
    if let Some(d) = &r.detail {
        m.insert("detail".into(), json!(d));
    }
    if let Some(t) = r.valid_from {
        m.insert("valid-from".into(), json!(format_http_date(t)));
    }
    if let Some(a) = &r.activity {
        m.insert("activity".into(), json!(a));
    }
    if let Some(s) = &r.subproblems {
        m.insert("subproblems".into(), s.clone());
    }
    job.last = Some(Value::Object(m));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_newest_first_and_bounded() {
        let mut job = JobRecord {
            name: "a".into(),
            ..Default::default()
        };
        let now = Utc::now();
        for i in 0..(MAX_LOG_ENTRIES + 5) {
            log_entry(&mut job, now, "progress", Some(&i.to_string()));
        }
        let entries = job.log.as_ref().unwrap()["entries"].as_array().unwrap();
        assert_eq!(entries.len(), MAX_LOG_ENTRIES);
        assert_eq!(
            entries[0]["detail"],
            json!((MAX_LOG_ENTRIES + 4).to_string())
        );
        assert_eq!(entries[0]["type"], json!("progress"));
    }

    #[test]
    fn last_result_keys() {
        let mut job = JobRecord::default();
        let r = RunResult {
            status: 111,
            status_description: Some("Connection refused".into()),
            detail: Some("Unsuccessful in contacting ACME server".into()),
            activity: Some("Contacting ACME server".into()),
            ..Default::default()
        };
        set_last(&mut job, &r);
        let last = job.last.unwrap();
        let keys: Vec<_> = last.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            vec!["status", "status-description", "detail", "activity"]
        );
    }
}
