//! RSA key generation from two random primes, the two searched at the same time.
//!
//! OpenSSL 3 makes 2-prime keys of 2048 bits and more with e = 65537 the SP 800-56B way
//! (FIPS 186-4 primes built on auxiliary primes) and then re-tests the primes; that takes
//! 2-2.6 times as long as the classic search below (measured on this project's machine:
//! 2048 bits 204 vs 88 ms, 3072 bits 638 vs 243 ms). A renewal of many MDs with RSA keys is
//! bound by this time, and a first renewal waits for the account key's.
//!
//! The classic search is how OpenSSL 1.1.1 (and with it the C module on older systems)
//! made RSA keys: OpenSSL's own random probable primes (`BN_generate_prime_ex`: top two
//! bits set, sieved, Miller-Rabin tested with OpenSSL's round counts), `gcd(p-1, e) = 1`.
//! On top, the bounds of FIPS 186-4 B.3.1 that cost nothing to check: `|p - q| >
//! 2^(nlen/2 - 100)` and `d > 2^(nlen/2)`, with `d = e^-1 mod lcm(p-1, q-1)`. The key must
//! then pass one private-key round trip before it is handed out.
//!
//! In the renewal, the two primes come from two threads: the wait for one key is about
//! halved, which a first renewal (account key, then certificate keys) feels; with all cores
//! busy the total work is the same.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::error::ErrorStack;
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa};

/// The public exponent (F4), as every ACME client and OpenSSL's default use.
const E: u32 = 65537;

/// A new RSA key whose modulus has exactly `bits` bits; `parallel`: q is searched on a
/// thread of its own. Never from httpd's main thread: a thread started from there keeps the
/// module mapped after httpd unloads it (FFI-NOTES), so a reload would not load an upgrade.
pub(super) fn generate(bits: u32, parallel: bool) -> Result<Rsa<Private>, ErrorStack> {
    let bits_p = bits.div_ceil(2);
    let bits_q = bits - bits_p;
    loop {
        let (p, q) = if parallel {
            std::thread::scope(|s| {
                let q = s.spawn(|| prime(bits_q));
                let p = prime(bits_p);
                // A panic in the other thread is not OpenSSL's error to report: pass it on.
                let q = q.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                Ok::<_, ErrorStack>((p?, q?))
            })?
        } else {
            (prime(bits_p)?, prime(bits_q)?)
        };
        if let Some(key) = assemble(bits, p, q)? {
            return Ok(key);
        }
    }
}

/// A random probable prime of `bits` bits (top two set) with `gcd(p-1, e) = 1`.
fn prime(bits: u32) -> Result<BigNum, ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    let e = BigNum::from_u32(E)?;
    let bits = i32::try_from(bits).expect("RSA sizes are far below 2^31 bits");
    loop {
        let mut p = BigNum::new()?;
        p.generate_prime(bits, false, None, None)?;
        p.set_const_time();
        let p1 = minus_one(&p)?;
        let g = gcd(&p1, &e, &mut ctx)?;
        if is_one(&g) {
            return Ok(p);
        }
    }
}

/// The key of the primes `p` and `q`, or `None` when this pair must not make one (too
/// close, the modulus one bit short, a small `d`): the caller draws new primes.
fn assemble(bits: u32, p: BigNum, q: BigNum) -> Result<Option<Rsa<Private>>, ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    // p > q, so that qInv = q^-1 mod p is the CRT coefficient of PKCS #1.
    let (p, q) = if p > q { (p, q) } else { (q, p) };
    let mut diff = BigNum::new()?;
    diff.checked_sub(&p, &q)?;
    if diff.num_bits() <= (bits / 2) as i32 - 100 {
        return Ok(None);
    }
    let mut n = BigNum::new()?;
    n.checked_mul(&p, &q, &mut ctx)?;
    if n.num_bits() != bits as i32 {
        return Ok(None);
    }
    let (p1, q1) = (minus_one(&p)?, minus_one(&q)?);
    // lcm(p-1, q-1) = (p-1)(q-1) / gcd(p-1, q-1)
    let mut phi = BigNum::new()?;
    phi.checked_mul(&p1, &q1, &mut ctx)?;
    phi.set_const_time();
    let g = gcd(&p1, &q1, &mut ctx)?;
    let mut lambda = BigNum::new()?;
    lambda.checked_div(&phi, &g, &mut ctx)?;
    lambda.set_const_time();
    let e = BigNum::from_u32(E)?;
    let mut d = BigNum::new()?;
    d.mod_inverse(&e, &lambda, &mut ctx)?;
    d.set_const_time();
    if d.num_bits() <= (bits / 2) as i32 {
        return Ok(None);
    }
    let mut dp = BigNum::new()?;
    dp.nnmod(&d, &p1, &mut ctx)?;
    let mut dq = BigNum::new()?;
    dq.nnmod(&d, &q1, &mut ctx)?;
    let mut qinv = BigNum::new()?;
    qinv.mod_inverse(&q, &p, &mut ctx)?;
    let key = Rsa::from_private_components(n, e, d, p, q, dp, dq, qinv)?;
    round_trip(&key)?;
    Ok(Some(key))
}

/// One private-key operation and its public inverse agree, or the key is not handed out
/// (what OpenSSL's own generation checks after making a key).
fn round_trip(key: &Rsa<Private>) -> Result<(), ErrorStack> {
    let msg = b"mod_md-rs key check";
    let mut sig = vec![0; key.size() as usize];
    let len = key.private_encrypt(msg, &mut sig, Padding::PKCS1)?;
    let mut back = vec![0; key.size() as usize];
    let n = key.public_decrypt(&sig[..len], &mut back, Padding::PKCS1)?;
    if &back[..n] == msg {
        Ok(())
    } else {
        // not reachable with consistent components; an error, never a broken key
        Err(ErrorStack::get())
    }
}

fn minus_one(x: &BigNumRef) -> Result<BigNum, ErrorStack> {
    let mut r = BigNum::new()?;
    let one = BigNum::from_u32(1)?;
    r.checked_sub(x, &one)?;
    r.set_const_time();
    Ok(r)
}

fn gcd(a: &BigNumRef, b: &BigNumRef, ctx: &mut BigNumContext) -> Result<BigNum, ErrorStack> {
    let mut r = BigNum::new()?;
    r.gcd(a, b, ctx)?;
    Ok(r)
}

fn is_one(x: &BigNumRef) -> bool {
    x.num_bits() == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::{Signer, Verifier};

    #[test]
    fn keys_have_the_size_asked_and_pass_openssls_check() {
        for (bits, parallel) in [(2048, true), (2049, false), (3072, true)] {
            let k = generate(bits, parallel).unwrap();
            assert_eq!(k.n().num_bits(), bits as i32, "{bits}");
            assert_eq!(k.e().to_dec_str().unwrap().to_string(), "65537");
            // RSA_check_key: p, q prime, n = pq, d e = 1 mod lcm, the CRT values
            assert!(k.check_key().unwrap(), "{bits}");
            let (p, q) = (k.p().unwrap(), k.q().unwrap());
            assert!(p > q);
            let mut diff = BigNum::new().unwrap();
            diff.checked_sub(p, q).unwrap();
            assert!(diff.num_bits() > (bits / 2) as i32 - 100);
            assert!(k.d().num_bits() > (bits / 2) as i32);
        }
    }

    #[test]
    fn keys_sign_and_survive_pem() {
        let k = PKey::from_rsa(generate(2048, false).unwrap()).unwrap();
        let pem = k.private_key_to_pem_pkcs8().unwrap();
        let back = PKey::private_key_from_pem(&pem).unwrap();
        let mut s = Signer::new(MessageDigest::sha256(), &back).unwrap();
        s.update(b"data").unwrap();
        let sig = s.sign_to_vec().unwrap();
        let mut v = Verifier::new(MessageDigest::sha256(), &k).unwrap();
        v.update(b"data").unwrap();
        assert!(v.verify(&sig).unwrap());
    }

    #[test]
    fn no_two_keys_share_a_prime() {
        let a = generate(2048, true).unwrap();
        let b = generate(2048, true).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        assert!(is_one(&gcd(a.n(), b.n(), &mut ctx).unwrap()));
    }

    #[test]
    fn pairs_that_must_not_make_a_key_are_refused() {
        // the same prime twice: too close
        let p = prime(1024).unwrap();
        assert!(assemble(2048, p.to_owned().unwrap(), p).unwrap().is_none());
        // primes one bit short of the size: the modulus is short
        let (p, q) = (prime(1023).unwrap(), prime(1023).unwrap());
        assert!(assemble(2048, p, q).unwrap().is_none());
    }

    #[test]
    fn primes_fit_the_exponent() {
        let mut ctx = BigNumContext::new().unwrap();
        let e = BigNum::from_u32(E).unwrap();
        for _ in 0..4 {
            let p = prime(512).unwrap();
            assert_eq!(p.num_bits(), 512);
            assert!(is_one(&gcd(&minus_one(&p).unwrap(), &e, &mut ctx).unwrap()));
        }
    }
}
