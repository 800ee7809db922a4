//! The renewal driver: deciding when each MD is renewed, and running renewals.

pub mod ari;
pub mod check;
pub mod cluster;
pub mod connections;
pub mod job;
pub mod renew;
pub mod responder;
pub mod restart;
pub mod schedule;

/// A random jitter factor in [−0.5, 0.5) for [`crate::time::jittered`] (from OpenSSL's RNG, which
/// is safe to use after fork).
pub fn random_jitter() -> f64 {
    let mut b = [0u8; 8];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_in_range() {
        for _ in 0..1000 {
            let r = super::random_jitter();
            assert!((-0.5..0.5).contains(&r), "{r}");
        }
    }
}
