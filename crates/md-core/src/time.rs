//! Durations and timeslices as written in mod_md directives and JSON files.
//!
//! A duration is an integer plus a unit: `d` (days), `h`, `mi` (minutes), `s`, `ms`; a bare number
//! takes the directive's default unit. Plain `m` is an error, as in the C module (it would be
//! ambiguous). A [`Timeslice`] is a duration or `N%` of a lifetime (renew/warn windows).

use std::fmt;
use std::time::Duration;

/// The unit a bare number is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Days.
    Days,
    /// Hours.
    Hours,
    /// Minutes.
    Minutes,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
}

impl Unit {
    fn millis(self) -> u64 {
        match self {
            Unit::Days => 86_400_000,
            Unit::Hours => 3_600_000,
            Unit::Minutes => 60_000,
            Unit::Seconds => 1_000,
            Unit::Millis => 1,
        }
    }
}

/// A number that does not fit (C: `ERANGE`), or a duration in a format the C module refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadNumber;

/// A leading integer as C's `strtol` reads it: optional whitespace, an optional sign, decimal
/// digits. Returns the value (`None`: no digits, and then the rest is all of `s`) and the rest;
/// `Err` when the number does not fit (C: `ERANGE`).
pub fn c_leading_int(s: &str) -> Result<(Option<i64>, &str), BadNumber> {
    let t = s.trim_start();
    let (neg, after_sign) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = after_sign.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok((None, s));
    }
    let mut n: i64 = 0;
    for b in after_sign[..digits].bytes() {
        let d = i64::from(b - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if neg {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(BadNumber)?;
    }
    Ok((Some(n), &after_sign[digits..]))
}

/// A signed duration in milliseconds, read as the C module reads it: a leading integer (with
/// sign), then a unit recognized by its first letters, case-insensitively: `ms`, `mi`
/// (minutes), `d`, `h`, `s` (so `1d12h` is one day and `5sec` five seconds; a bare `m` is an
/// error), or nothing for `default_unit`. Huge values saturate.
pub fn parse_duration_signed(s: &str, default_unit: Unit) -> Result<i64, BadNumber> {
    let (n, rest) = c_leading_int(s)?;
    let n = n.ok_or(BadNumber)?;
    let lower = rest.to_ascii_lowercase();
    let unit = if rest.is_empty() {
        default_unit
    } else if lower.starts_with("ms") {
        Unit::Millis
    } else if lower.starts_with("mi") {
        Unit::Minutes
    } else if lower.starts_with('d') {
        Unit::Days
    } else if lower.starts_with('h') {
        Unit::Hours
    } else if lower.starts_with('s') {
        Unit::Seconds
    } else {
        return Err(BadNumber);
    };
    Ok(n.saturating_mul(unit.millis() as i64))
}

/// Parse a duration like `21d`, `12h`, `30mi`, `10s`, `100ms` or a bare number in `default_unit`
/// (see [`parse_duration_signed`]); negative durations are an error.
pub fn parse_duration(s: &str, default_unit: Unit) -> Result<Duration, String> {
    // The C module's wording for every malformed duration.
    const BAD: &str = "unrecognized duration format";
    match parse_duration_signed(s, default_unit) {
        Ok(ms) if ms >= 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(BAD.into()),
    }
}

/// Format a duration in the largest unit that divides it exactly (`21d`, `12h`, `30mi`, `10s`,
/// `100ms`), the form mod_md writes into md.json; zero is `0d`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0d".into(); // as the C module writes a zero duration
    }
    for (unit, suffix) in [
        (Unit::Days, "d"),
        (Unit::Hours, "h"),
        (Unit::Minutes, "mi"),
        (Unit::Seconds, "s"),
    ] {
        if ms > 0 && ms % unit.millis() == 0 {
            return format!("{}{suffix}", ms / unit.millis());
        }
    }
    format!("{ms}ms")
}

/// A window before expiry: an absolute duration or a percentage of the actual lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeslice {
    /// A fixed duration before notAfter.
    Duration(Duration),
    /// This percentage (0..100) of the lifetime (notAfter - notBefore).
    Percent(u32),
}

impl Timeslice {
    /// Parse `N%` (0 <= N < 100) or a duration whose bare numbers are in `default_unit`, read as
    /// the C module reads them: a percentage is a leading integer directly followed by `%`
    /// (anything after it is ignored; `%` alone is 0%).
    pub fn parse(s: &str, default_unit: Unit) -> Result<Timeslice, String> {
        if let Ok((n, rest)) = c_leading_int(s) {
            if rest.starts_with('%') {
                let n = n.unwrap_or(0);
                if !(0..100).contains(&n) {
                    return Err(format!("'{s}': a percentage must be less than 100%"));
                }
                return Ok(Timeslice::Percent(n as u32));
            }
        }
        parse_duration(s, default_unit).map(Timeslice::Duration)
    }

    /// The window's length for a lifetime of `lifetime`.
    pub fn length_for(&self, lifetime: Duration) -> Duration {
        match *self {
            Timeslice::Duration(d) => d,
            // Whole seconds, truncated, as the C module computes it: renew-at in md-status
            // then matches it to the second.
            Timeslice::Percent(p) => Duration::from_secs(lifetime.as_secs() * u64::from(p) / 100),
        }
    }
}

impl fmt::Display for Timeslice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeslice::Duration(d) => f.write_str(&format_duration(*d)),
            Timeslice::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(
            parse_duration("21d", Unit::Seconds),
            Ok(Duration::from_secs(21 * 86400))
        );
        assert_eq!(
            parse_duration("12h", Unit::Days),
            Ok(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            parse_duration("30mi", Unit::Days),
            Ok(Duration::from_secs(1800))
        );
        assert_eq!(
            parse_duration("10s", Unit::Days),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            parse_duration("100ms", Unit::Days),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(
            parse_duration("7", Unit::Days),
            Ok(Duration::from_secs(7 * 86400))
        );
        assert_eq!(
            parse_duration("7", Unit::Seconds),
            Ok(Duration::from_secs(7))
        );
    }

    #[test]
    fn bad_durations() {
        assert!(parse_duration("5m", Unit::Seconds).is_err());
        assert!(parse_duration("abc", Unit::Seconds).is_err());
        assert!(parse_duration("", Unit::Seconds).is_err());
        assert!(parse_duration("-5s", Unit::Seconds).is_err());
        assert!(parse_duration("99999999999999999999d", Unit::Seconds).is_err());
        assert!(parse_duration("5 d", Unit::Seconds).is_err());
        assert!(parse_duration("0x10", Unit::Seconds).is_err());
    }

    #[test]
    fn durations_read_as_the_c_module_reads_them() {
        let d = |s| parse_duration(s, Unit::Days);
        assert_eq!(d("1d12h"), Ok(Duration::from_secs(86400)));
        assert_eq!(d("5sec"), Ok(Duration::from_secs(5)));
        assert_eq!(d("10mins"), Ok(Duration::from_secs(600)));
        assert_eq!(d("10MSx"), Ok(Duration::from_millis(10)));
        assert_eq!(d("+5D"), Ok(Duration::from_secs(5 * 86400)));
        assert_eq!(d("  5h"), Ok(Duration::from_secs(5 * 3600)));
        assert_eq!(parse_duration_signed("-1d", Unit::Days), Ok(-86_400_000));
        assert_eq!(parse_duration_signed("-0", Unit::Days), Ok(0));
        assert_eq!(
            parse_duration_signed("9999999999999d", Unit::Days),
            Ok(i64::MAX)
        );
        assert_eq!(c_leading_int("-%"), Ok((None, "-%")));
        assert!(c_leading_int("99999999999999999999").is_err());
    }

    #[test]
    fn format_picks_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(21 * 86400)), "21d");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0d");
    }

    #[test]
    fn timeslices() {
        assert_eq!(
            Timeslice::parse("33%", Unit::Days),
            Ok(Timeslice::Percent(33))
        );
        assert!(Timeslice::parse("100%", Unit::Days).is_err());
        assert!(Timeslice::parse("x%", Unit::Days).is_err());
        assert!(Timeslice::parse("33 %", Unit::Days).is_err());
        assert!(Timeslice::parse("-5%", Unit::Days).is_err());
        assert_eq!(Timeslice::parse("%", Unit::Days), Ok(Timeslice::Percent(0)));
        assert_eq!(
            Timeslice::parse("33%x", Unit::Days),
            Ok(Timeslice::Percent(33))
        );
        let t = Timeslice::parse("14", Unit::Days).unwrap();
        assert_eq!(t.to_string(), "14d");
        let ninety = Duration::from_secs(90 * 86400);
        let w = Timeslice::Percent(33).length_for(ninety);
        assert_eq!(w.as_secs() / 3600, 33 * 90 * 24 / 100);
    }
}

/// Longest retry delay after errors (the C module's cap).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Delay before retry number `errors` (1 = after the first error): `base × 2^(errors−1)`,
/// capped at 24 h; 24 h at once when the CA said the problem is in our input (retrying sooner
/// cannot help). Computed without overflow for any error count (CVE-2025-55753 made the C
/// module's delay 0 after many errors).
pub fn retry_delay(base: Duration, errors: u32, input_related: bool) -> Duration {
    if input_related {
        return MAX_RETRY_DELAY;
    }
    let shift = errors.saturating_sub(1).min(63);
    let factor = 1u64 << shift;
    // `as u64` would wrap a huge MDRetryDelay into an arbitrary small one
    let ms = u64::try_from(base.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(factor);
    Duration::from_millis(ms).min(MAX_RETRY_DELAY)
}

/// Apply a jitter factor `r` in [−0.5, 0.5) to `d`: `d × (1 + r)`. The caller supplies `r`
/// (from a random source) so that the maths stays testable.
pub fn jittered(d: Duration, r: f64) -> Duration {
    let r = r.clamp(-0.5, 0.5);
    // mul_f64 panics beyond Duration::MAX
    Duration::try_from_secs_f64(d.as_secs_f64() * (1.0 + r)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn doubling_and_cap() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 1, false), Duration::from_secs(30));
        assert_eq!(retry_delay(base, 2, false), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 5, false), Duration::from_secs(480));
        assert_eq!(retry_delay(base, 20, false), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, u32::MAX, false), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, 0, false), base);
        assert_eq!(retry_delay(base, 1, true), MAX_RETRY_DELAY);
        // a base whose milliseconds do not fit in u64 is not wrapped into a short delay
        let huge = Duration::from_secs(1 << 62);
        assert_eq!(retry_delay(huge, 1, false), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(Duration::MAX, u32::MAX, false), MAX_RETRY_DELAY);
    }

    #[test]
    fn jitter_bounds() {
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, -0.5), Duration::from_secs(50));
        assert_eq!(jittered(Duration::MAX, 0.5), Duration::MAX);
        assert_eq!(jittered(d, 0.0), d);
        assert_eq!(jittered(d, 0.25), Duration::from_secs(125));
        assert_eq!(jittered(d, 7.0), Duration::from_secs(150));
    }
}
