//! When to renew, warn and announce (SPEC 4.3, 5.5, 5.8): pure functions over certificate
//! validity and the clock, so the renewal driver's decisions are testable without a CA.

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::time::Timeslice;

/// Validity of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub from: DateTime<Utc>,
    /// notAfter.
    pub until: DateTime<Utc>,
}

impl Validity {
    fn lifetime(&self) -> std::time::Duration {
        (self.until - self.from).to_std().unwrap_or_default()
    }

    /// The start of `window` before notAfter (window percentages are of this lifetime).
    pub fn window_start(&self, window: &Timeslice) -> DateTime<Utc> {
        let len = window.length_for(self.lifetime());
        let len = ChronoDuration::from_std(len).unwrap_or(ChronoDuration::MAX);
        self.until
            .checked_sub_signed(len)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// When the MD must be renewed: the earliest window start over its certificates, one per key
/// spec (`None` = that certificate is missing, which means now).
pub fn renew_at(
    certs: &[Option<Validity>],
    window: &Timeslice,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if certs.is_empty() {
        return now;
    }
    certs
        .iter()
        .map(|c| c.map_or(now, |v| v.window_start(window)))
        .min()
        .unwrap_or(now)
}

/// True when some present certificate has entered the warn window.
pub fn in_warn_window(certs: &[Option<Validity>], window: &Timeslice, now: DateTime<Utc>) -> bool {
    certs
        .iter()
        .flatten()
        .any(|v| v.window_start(window) <= now)
}

/// When newly obtained certificates count as ready (SPEC 5.5): the later of now and their
/// newest notBefore; if the MD already has a complete, unexpired set, plus the activation
/// delay, but never later than the old set's end.
pub fn ready_at(
    new: &[Validity],
    old_valid_until: Option<DateTime<Utc>>,
    activation_delay: std::time::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let newest = new.iter().map(|v| v.from).max().unwrap_or(now).max(now);
    match old_valid_until {
        Some(old_until) if old_until > now => {
            let remaining = (old_until - now).to_std().unwrap_or_default();
            let delay = activation_delay.min(remaining);
            newest + ChronoDuration::from_std(delay).unwrap_or_default()
        }
        _ => newest,
    }
}

/// A point in an ARI suggested window (RFC 9773 4.2): `start + (end − start) × r`, with the C
/// module's r in [−0.5, 0.5) (so it may fall before `start`). The caller supplies `r`.
pub fn ari_pick(start: DateTime<Utc>, end: DateTime<Utc>, r: f64) -> DateTime<Utc> {
    let span = (end - start).num_milliseconds().max(0) as f64;
    let offset = (span * r.clamp(-0.5, 0.5)).round() as i64;
    // Before the earliest representable time (a start near it, r < 0): the earliest.
    start
        .checked_add_signed(ChronoDuration::milliseconds(offset))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(days: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + ChronoDuration::days(days)
    }

    fn v(from: i64, until: i64) -> Validity {
        Validity {
            from: at(from),
            until: at(until),
        }
    }

    #[test]
    fn percent_window_of_lifetime() {
        // 90-day cert, 33% window: renew 29.7 days before expiry.
        let r = renew_at(&[Some(v(0, 90))], &Timeslice::Percent(33), at(0));
        let expected = at(90) - ChronoDuration::milliseconds((29.7 * 86_400_000.0) as i64);
        assert_eq!(r, expected);
        // 6-day cert: about 2 days.
        let r = renew_at(&[Some(v(0, 6))], &Timeslice::Percent(33), at(0));
        assert!(r > at(4) && r < at(4) + ChronoDuration::hours(1), "{r}");
    }

    #[test]
    fn earliest_cert_and_missing_ones() {
        let w = Timeslice::Duration(std::time::Duration::from_secs(10 * 86400));
        assert_eq!(
            renew_at(&[Some(v(0, 90)), Some(v(0, 60))], &w, at(0)),
            at(50)
        );
        assert_eq!(renew_at(&[Some(v(0, 90)), None], &w, at(3)), at(3));
        assert_eq!(renew_at(&[], &w, at(3)), at(3));
    }

    #[test]
    fn warn_window() {
        let w = Timeslice::Percent(10);
        assert!(!in_warn_window(&[Some(v(0, 100))], &w, at(80)));
        assert!(in_warn_window(&[Some(v(0, 100))], &w, at(91)));
        assert!(!in_warn_window(&[None], &w, at(91)));
    }

    #[test]
    fn ready_time() {
        let day = std::time::Duration::from_secs(86400);
        // No old cert: the newest notBefore, not before now.
        assert_eq!(ready_at(&[v(-1, 89)], None, day, at(0)), at(0));
        assert_eq!(ready_at(&[v(2, 92)], None, day, at(0)), at(2));
        // Old cert still valid for 10 days: plus the delay.
        assert_eq!(ready_at(&[v(0, 90)], Some(at(10)), day, at(0)), at(1));
        // Delay capped by the old cert's remaining life.
        assert_eq!(ready_at(&[v(0, 90)], Some(at(1)), 5 * day, at(0)), at(1));
        // Old cert expired: no delay.
        assert_eq!(ready_at(&[v(0, 90)], Some(at(-1)), day, at(0)), at(0));
    }

    #[test]
    fn ari_point() {
        assert_eq!(ari_pick(at(10), at(12), 0.0), at(10));
        assert_eq!(ari_pick(at(10), at(12), -0.5), at(9));
        assert_eq!(
            ari_pick(at(10), at(12), 0.25),
            at(10) + ChronoDuration::hours(12)
        );
        assert_eq!(ari_pick(at(12), at(10), 0.3), at(12));
        // Found by tests/fuzz_parsers.rs (a certificate whose notBefore does not parse reads
        // as the earliest time): this overflowed `DateTime + TimeDelta` and panicked.
        let min = DateTime::<Utc>::MIN_UTC;
        assert_eq!(ari_pick(min, at(0), -0.5), min);
    }
}
