//! Dates in job.json and friends: RFC 1123 in GMT, e.g. `Mon, 23 Nov 2026 16:32:18 GMT`.

use chrono::{DateTime, Datelike, Utc};

/// Format a time as mod_md writes it (APR's `apr_rfc822_date`).
pub fn format_http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parse an RFC 1123 / RFC 2822 date; `None` when it is not one, or when its year (in GMT)
/// has more than four digits, which [`format_http_date`] (like APR) cannot write back.
pub fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
        .filter(|d| (0..=9999).contains(&d.year()))
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

    /// Found by tests/fuzz_parsers.rs: a five-digit year was read, then written as `+61165`,
    /// which does not read back: the date vanished on the next rewrite of job.json.
    #[test]
    fn years_beyond_four_digits_are_not_dates() {
        assert_eq!(parse_http_date("Sun, 17 Jan 61165 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Fri, 31 Dec 9999 23:00:00 -0100"), None);
        let last = parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert_eq!(parse_http_date(&format_http_date(last)), Some(last));
    }
}
