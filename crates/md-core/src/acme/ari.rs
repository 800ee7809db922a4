//! ACME Renewal Information (RFC 9773): certificate ids and renewal windows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::client::retry_after_of;
use super::{AcmeClient, AriError, RequestError};
use crate::crypt::Certificate;

/// A suggested renewal window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalInfo {
    /// Window start.
    pub start: DateTime<Utc>,
    /// Window end.
    pub end: DateTime<Utc>,
    /// Why the CA suggests it (logged by mod_md at NOTICE).
    pub explanation_url: Option<String>,
    /// When to ask again (RFC 9773 §4.3: the response's `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl RenewalInfo {
    /// The renewal time for a random `r` in [-0.5, 0.5): `start + (end - start) * r`, as mod_md
    /// picks it (SPEC 5.8; it can fall before `start`). `r` is clamped to that range.
    pub fn pick(&self, r: f64) -> DateTime<Utc> {
        let r = r.clamp(-0.5, 0.5);
        let span_ms = (self.end - self.start).num_milliseconds() as f64;
        self.start + chrono::Duration::milliseconds((span_ms * r) as i64)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWindow {
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInfo {
    suggested_window: RawWindow,
    #[serde(rename = "explanationURL", default)]
    explanation_url: Option<String>,
}

/// Parse a renewalInfo response body (RFC 9773 §4.2).
pub fn parse_renewal_info(url: &str, body: &[u8]) -> Result<RenewalInfo, RequestError> {
    let bad = |m: String| RequestError::BadResponse {
        url: url.to_string(),
        message: m,
    };
    let raw: RawInfo = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let t = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| bad(format!("{s}: {e}")))
    };
    let (start, end) = (
        t(&raw.suggested_window.start)?,
        t(&raw.suggested_window.end)?,
    );
    if end < start {
        return Err(bad("suggestedWindow ends before it starts".into()));
    }
    Ok(RenewalInfo {
        start,
        end,
        explanation_url: raw.explanation_url,
        retry_after: None,
    })
}

impl AcmeClient {
    /// GET `<renewalInfo>/<ari-cert-id>` for `cert` (plain GET, RFC 9773 §4.1).
    pub fn renewal_info(&self, cert: &Certificate) -> Result<RenewalInfo, AriError> {
        let base = self
            .directory()
            .renewal_info
            .as_ref()
            .ok_or(AriError::NotSupported)?;
        let id = cert.ari_cert_id().ok_or(AriError::NoAuthorityKeyId)?;
        let url = format!("{}/{id}", base.trim_end_matches('/'));
        let resp = self.get(&url)?;
        let mut info = parse_renewal_info(&url, &resp.body)?;
        info.retry_after = retry_after_of(&resp);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parsing() {
        let i = parse_renewal_info(
            "u",
            br#"{"suggestedWindow":{"start":"2026-01-02T00:00:00Z","end":"2026-01-03T00:00:00+00:00"},
                "explanationURL":"https://ca/why"}"#,
        )
        .unwrap();
        assert_eq!((i.end - i.start).num_hours(), 24);
        assert_eq!(i.explanation_url.as_deref(), Some("https://ca/why"));
        assert_eq!(i.pick(0.0), i.start);
        assert_eq!((i.pick(-0.5) - i.start).num_hours(), -12);
        assert_eq!((i.pick(0.25) - i.start).num_hours(), 6);
        assert!(
            parse_renewal_info("u", br#"{"suggestedWindow":{"start":"x","end":"y"}}"#).is_err()
        );
        assert!(parse_renewal_info("u", b"{").is_err());
    }
}
