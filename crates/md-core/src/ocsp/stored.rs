//! The stored OCSP response, `ocsp/<md or other>/ocsp-<id>.json` (SPEC 3.5):
//!
//! ```json
//! {"response": "<base64url DER OCSPResponse>", "status": "good",
//!  "valid": {"from": "Sun, 29 Nov 2026 19:00:00 GMT", "until": "Mon, 30 Nov 2026 07:00:00 GMT"}}
//! ```
//!
//! Format assumption (no file of the C module is in /work/shared/reference): `response` is
//! base64url without padding (the C module's base64url encoder), `valid.from`/`until` are RFC
//! 1123 GMT dates like every other date in the store. Reading is lenient: padded base64url and
//! standard base64 are accepted too, and unknown keys are ignored.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::id::{group_dir, response_file_name};
use crate::drive::schedule::Validity;
use crate::store::{format_http_date, parse_http_date};
use crate::store::{FileKind, Group, Store, StoreError};
use crate::time::Timeslice;

/// Default MDStaplingRenewWindow: 33 % of the response's lifetime.
pub const DEFAULT_RENEW_WINDOW: Timeslice = Timeslice::Percent(33);

/// The certificate's status as a stored response says it (`unknown` is never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked: MDs with stapling on renew at once (SPEC 6).
    Revoked,
}

impl CertStatus {
    /// The JSON and status-page word.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertStatus::Good => "good",
            CertStatus::Revoked => "revoked",
        }
    }

    /// Parse the JSON word.
    pub fn parse(s: &str) -> Option<CertStatus> {
        match s {
            "good" => Some(CertStatus::Good),
            "revoked" => Some(CertStatus::Revoked),
            _ => None,
        }
    }
}

/// An accepted OCSP response for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// good or revoked.
    pub status: CertStatus,
    /// thisUpdate .. nextUpdate (or thisUpdate + 12 h).
    pub valid: Validity,
    /// The full DER OCSPResponse, as stapled.
    pub der: Vec<u8>,
}

/// Why a stored response file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// Not JSON.
    #[error("OCSP response file is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A key is missing or has a bad value.
    #[error("OCSP response file: bad or missing '{0}'")]
    Field(&'static str),
}

impl StoredResponse {
    /// The JSON object as written to the store.
    pub fn to_json(&self) -> Value {
        json!({
            "response": URL_SAFE_NO_PAD.encode(&self.der),
            "status": self.status.as_str(),
            "valid": {
                "from": format_http_date(self.valid.from),
                "until": format_http_date(self.valid.until),
            },
        })
    }

    /// The file's text (pretty, as the store writes JSON).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_default()
    }

    /// Read a stored response file's text.
    pub fn parse(text: &str) -> Result<StoredResponse, StoredError> {
        let v: Value = serde_json::from_str(text)?;
        let b64 = v["response"]
            .as_str()
            .ok_or(StoredError::Field("response"))?;
        let der = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD]
            .iter()
            .find_map(|e| e.decode(b64.trim()).ok())
            .filter(|d| !d.is_empty())
            .ok_or(StoredError::Field("response"))?;
        let status = v["status"]
            .as_str()
            .and_then(CertStatus::parse)
            .ok_or(StoredError::Field("status"))?;
        let date = |key: &'static str| {
            v["valid"][key]
                .as_str()
                .and_then(parse_http_date)
                .ok_or(StoredError::Field(if key == "from" {
                    "valid.from"
                } else {
                    "valid.until"
                }))
        };
        Ok(StoredResponse {
            status,
            valid: Validity {
                from: date("from")?,
                until: date("until")?,
            },
            der,
        })
    }

    /// When to fetch a new response: the start of `window` (MDStaplingRenewWindow) before
    /// nextUpdate, percentages taken of the response's lifetime.
    pub fn renew_at(&self, window: &Timeslice) -> DateTime<Utc> {
        self.valid.window_start(window)
    }

    /// True when `now` is in the renew window.
    pub fn needs_renewal(&self, window: &Timeslice, now: DateTime<Utc>) -> bool {
        now >= self.renew_at(window)
    }
}

/// Read the stored response of certificate `id` in `ocsp/<md or other>/`; `Ok(None)` when
/// there is none. An unreadable file is an error (the caller logs it and fetches anew).
pub fn load(
    store: &(impl Store + ?Sized),
    md_name: Option<&str>,
    id: &str,
) -> Result<Option<StoredResponse>, StoreError> {
    let (dir, file) = (group_dir(md_name), response_file_name(id));
    let Some(data) = store.load(Group::Ocsp, dir, &file)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&data);
    StoredResponse::parse(&text)
        .map(Some)
        .map_err(|e| StoreError::Json {
            path: format!("ocsp/{dir}/{file}"),
            detail: e.to_string(),
        })
}

/// Write the response of certificate `id` atomically to `ocsp/<md or other>/ocsp-<id>.json`.
pub fn save(
    store: &(impl Store + ?Sized),
    md_name: Option<&str>,
    id: &str,
    resp: &StoredResponse,
) -> Result<(), StoreError> {
    store.save(
        Group::Ocsp,
        group_dir(md_name),
        &response_file_name(id),
        resp.to_json_string().as_bytes(),
        FileKind::Json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn sample() -> StoredResponse {
        StoredResponse {
            status: CertStatus::Revoked,
            valid: Validity {
                from: Utc.with_ymd_and_hms(2026, 11, 29, 19, 0, 0).unwrap(),
                until: Utc.with_ymd_and_hms(2026, 11, 30, 7, 0, 0).unwrap(),
            },
            der: vec![0x30, 0x03, 0x0a, 0x01, 0x00, 0xff, 0xfe],
        }
    }

    #[test]
    fn json_shape_and_round_trip() {
        let s = sample();
        let v = s.to_json();
        assert_eq!(v["status"], "revoked");
        assert_eq!(v["valid"]["from"], "Sun, 29 Nov 2026 19:00:00 GMT");
        assert_eq!(v["valid"]["until"], "Mon, 30 Nov 2026 07:00:00 GMT");
        // base64url, no padding: 0xff 0xfe become '_' and '-' characters, no '='.
        assert_eq!(v["response"], "MAMKAQD__g");
        assert_eq!(StoredResponse::parse(&s.to_json_string()).unwrap(), s);
    }

    #[test]
    fn lenient_reading() {
        let text = r#"{"response":"MAMKAQD//g==","status":"good","x":1,
            "valid":{"from":"Sun, 29 Nov 2026 19:00:00 GMT","until":"Mon, 30 Nov 2026 07:00:00 GMT"}}"#;
        let s = StoredResponse::parse(text).unwrap();
        assert_eq!(s.der, sample().der);
        assert_eq!(s.status, CertStatus::Good);
    }

    #[test]
    fn bad_files() {
        assert!(matches!(
            StoredResponse::parse("{"),
            Err(StoredError::Json(_))
        ));
        let no_status = r#"{"response":"MAM","valid":{"from":"Sun, 29 Nov 2026 19:00:00 GMT","until":"Mon, 30 Nov 2026 07:00:00 GMT"}}"#;
        assert!(matches!(
            StoredResponse::parse(no_status),
            Err(StoredError::Field("status"))
        ));
        let unknown = no_status.replace("\"response\"", "\"status\":\"unknown\",\"response\"");
        assert!(matches!(
            StoredResponse::parse(&unknown),
            Err(StoredError::Field("status"))
        ));
        let bad_date = r#"{"response":"MAM","status":"good","valid":{"from":"yesterday","until":"Mon, 30 Nov 2026 07:00:00 GMT"}}"#;
        assert!(matches!(
            StoredResponse::parse(bad_date),
            Err(StoredError::Field("valid.from"))
        ));
    }

    #[test]
    fn store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::FsStore::open(dir.path(), crate::store::StoreOptions::default()).unwrap();
        let id = "a9993e364706816aba3e25717850c26c9cd0d89d";
        assert_eq!(load(&store, None, id).unwrap(), None);
        save(&store, None, id, &sample()).unwrap();
        save(&store, Some("example.org"), id, &sample()).unwrap();
        assert!(dir
            .path()
            .join("ocsp/other/ocsp-a9993e364706816aba3e25717850c26c9cd0d89d.json")
            .is_file());
        assert_eq!(
            load(&store, Some("example.org"), id).unwrap(),
            Some(sample())
        );
        std::fs::write(
            dir.path().join("ocsp/other").join(response_file_name(id)),
            "{}",
        )
        .unwrap();
        assert!(matches!(
            load(&store, None, id),
            Err(StoreError::Json { .. })
        ));
    }

    #[test]
    fn renew_window() {
        let s = sample(); // 12 h lifetime
                          // 33 % of 12 h = 3 h 57 min 36 s before until.
        let at = s.renew_at(&DEFAULT_RENEW_WINDOW);
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 11, 30, 3, 2, 24).unwrap());
        assert!(!s.needs_renewal(&DEFAULT_RENEW_WINDOW, at - chrono::Duration::seconds(1)));
        assert!(s.needs_renewal(&DEFAULT_RENEW_WINDOW, at));
        let fixed = Timeslice::Duration(Duration::from_secs(3600));
        assert_eq!(
            s.renew_at(&fixed),
            Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
        );
    }
}
