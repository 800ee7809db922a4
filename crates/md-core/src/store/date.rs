//! Dates in job.json and friends: RFC 1123 in GMT, e.g. `Mon, 23 Nov 2026 16:32:18 GMT`.

use chrono::{DateTime, Utc};

/// Format a time as mod_md writes it (APR's `apr_rfc822_date`).
pub fn format_http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parse an RFC 1123 / RFC 2822 date; `None` when it is not one.
pub fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = "Mon, 23 Nov 2026 16:32:18 GMT";
        let t = parse_http_date(s).unwrap();
        assert_eq!(format_http_date(t), s);
        assert!(parse_http_date("yesterday").is_none());
        let early = parse_http_date("Tue, 03 Feb 2026 01:02:03 GMT").unwrap();
        assert_eq!(format_http_date(early), "Tue, 03 Feb 2026 01:02:03 GMT");
    }
}
