//! `job.json` (SPEC 3.4): persisted state of a renewal (or OCSP) job.
//!
//! The renewal driver owns the meaning; the store keeps the shape. `last` and `log` stay JSON
//! values so that fields this code does not know survive a rewrite.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::date::{format_http_date, parse_http_date};

/// job.json content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobRecord {
    /// MD name.
    pub name: String,
    /// All certificates of the renewal are staged.
    #[serde(default)]
    pub finished: bool,
    /// A notification for this job succeeded.
    #[serde(default)]
    pub notified: bool,
    /// The `renewed` notification succeeded.
    #[serde(default)]
    pub notified_renewed: bool,
    /// When the job should run next.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
    /// When it last ran.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DateTime<Utc>>,
    /// Ready time of the staged certificates.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// Consecutive errored runs.
    #[serde(default)]
    pub errors: u32,
    /// Until when the CA asked us to wait (Retry-After, capped at 24 h). Not a C module key:
    /// this delay survives restarts, unlike our own backoff.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub ca_retry_until: Option<DateTime<Utc>>,
    /// Result of the last run (`status`, `problem`, `detail`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Value>,
    /// `{"entries": [...]}`, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Value>,
    /// Unknown members, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

mod opt_date {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(t) => s.serialize_str(&format_http_date(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        // an unparseable date is treated as absent rather than failing the whole job
        let v: Option<Value> = Option::deserialize(d)?;
        Ok(v.as_ref().and_then(Value::as_str).and_then(parse_http_date))
    }
}

impl JobRecord {
    /// Parse job.json.
    pub fn parse(text: &[u8]) -> Result<JobRecord, String> {
        serde_json::from_slice(text).map_err(|e| e.to_string())
    }

    /// Serialize deterministically.
    pub fn to_json(&self) -> Vec<u8> {
        super::typed::to_json_bytes(self)
    }

    /// `last.status` (0 = ok), if present.
    pub fn last_status(&self) -> Option<i64> {
        self.last.as_ref()?.get("status")?.as_i64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_job_round_trip() {
        let text = r#"{
  "name": "a1.test",
  "finished": true,
  "notified": true,
  "notified-renewed": true,
  "last-run": "Tue, 24 Nov 2026 10:52:45 GMT",
  "valid-from": "Tue, 24 Nov 2026 10:52:46 GMT",
  "errors": 0,
  "last": {
    "status": 0,
    "valid-from": "Tue, 24 Nov 2026 10:52:46 GMT"
  },
  "log": {
    "entries": [
      {
        "when": "Tue, 24 Nov 2026 10:52:46 GMT",
        "type": "message-renewed"
      }
    ]
  }
}"#;
        let j = JobRecord::parse(text.as_bytes()).unwrap();
        assert!(j.finished && j.notified_renewed);
        assert_eq!(j.last_status(), Some(0));
        assert_eq!(String::from_utf8(j.to_json()).unwrap(), text);
    }
}
