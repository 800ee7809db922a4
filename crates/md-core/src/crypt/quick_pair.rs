//! A quick proof that a private key belongs to a certificate, for the thousands of pairs the
//! parent checks at a start. OpenSSL 3 decodes a private key PEM through its decoder framework
//! in about 0.75 ms and parses each certificate in about 0.25 ms; with 1,000 MDs that was most of
//! what our start added to mod_ssl's own.
//!
//! The proof reads the key's DER itself and compares public parts, as OpenSSL's own pair check
//! (`X509_check_private_key`, mod_ssl's) does:
//! - RSA: the key's modulus and exponent are the certificate's (DER integers are canonical);
//! - P-256: the key's scalar times the generator is the certificate's point (one scalar
//!   multiplication, about 20 us).
//!
//! It only ever says "yes, certainly": any other key type or encoding, anything unexpected, and
//! every mismatch return `None`, and the caller takes the full OpenSSL path, which gives the
//! admin's error message. The chain's other certificates are checked for form only (PEM,
//! base64, one DER certificate structure each); the leaf is parsed by OpenSSL for its facts.

use base64::Engine;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcPoint};
use openssl::nid::Nid;

use super::cert::Certificate;
use crate::ocsp::der::{self, Tlv};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const NULL: u8 = 0x05;
const CTX0: u8 = 0xa0;
const CTX1: u8 = 0xa1;

/// 1.2.840.113549.1.1.1
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (prime256v1)
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The leaf of `chain_pem`, parsed, when `key_pem` certainly holds its private key and every
/// block of the chain is a well-formed certificate; `None` when that is not certain.
pub(crate) fn quick_check(chain_pem: &[u8], key_pem: &[u8]) -> Option<Certificate> {
    let blocks = pem_blocks(chain_pem)?;
    if blocks.is_empty()
        || blocks
            .iter()
            .any(|(label, der)| *label != "CERTIFICATE" || !is_certificate(der))
    {
        return None;
    }
    let spki = subject_public_key_info(&blocks[0].1)?;
    let keys = pem_blocks(key_pem)?;
    let [(label, key_der)] = keys.as_slice() else {
        return None;
    };
    let key = match *label {
        "PRIVATE KEY" => pkcs8(key_der)?,
        "RSA PRIVATE KEY" => Key::Rsa(key_der),
        "EC PRIVATE KEY" => Key::Ec {
            curve: None,
            sec1: key_der,
        },
        _ => return None,
    };
    key_proven(&key, &spki)?;
    Certificate::from_der(&blocks[0].1).ok()
}

/// The PEM blocks of `pem` as (label, DER); `None` for a block that is not well-formed.
/// Text outside the blocks is ignored, as OpenSSL's reader ignores it.
fn pem_blocks(pem: &[u8]) -> Option<Vec<(&str, Vec<u8>)>> {
    let text = std::str::from_utf8(pem).ok()?;
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim_end()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        loop {
            let l = lines.next()?.trim();
            if l == end {
                break;
            }
            // headers (Proc-Type: an encrypted key) are not for the quick path
            if l.contains(':') {
                return None;
            }
            b64.push_str(l);
        }
        let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        out.push((label, der));
    }
    Some(out)
}

/// `der` is exactly one element with `tag`; its content.
fn whole(der: &[u8], tag: u8) -> Option<&[u8]> {
    match der::read(der)? {
        (Tlv { tag: t, content }, []) if t == tag => Some(content),
        _ => None,
    }
}

/// A DER Certificate: SEQUENCE { tbsCertificate, signatureAlgorithm, signature }.
fn is_certificate(der: &[u8]) -> bool {
    whole(der, SEQUENCE)
        .and_then(der::children)
        .is_some_and(|c| {
            c.len() == 3 && c[0].tag == SEQUENCE && c[1].tag == SEQUENCE && c[2].tag == BIT_STRING
        })
}

/// The subjectPublicKeyInfo of a DER certificate: (algorithm OID, its parameters, key bits).
struct Spki<'a> {
    alg: &'a [u8],
    params: Option<Tlv<'a>>,
    bits: &'a [u8],
}

fn subject_public_key_info(cert: &[u8]) -> Option<Spki<'_>> {
    let top = der::children(whole(cert, SEQUENCE)?)?;
    let tbs = der::children(top.first().filter(|t| t.tag == SEQUENCE)?.content)?;
    // [0] version is optional; then serial, signature, issuer, validity, subject, spki
    let skip = usize::from(tbs.first()?.tag == CTX0);
    let spki = tbs.get(skip + 5).filter(|t| t.tag == SEQUENCE)?;
    let [alg, bits] = der::children(spki.content)?.try_into().ok()?;
    let (oid, params) = algorithm(&alg)?;
    // a BIT STRING of whole bytes
    let bits = match bits {
        Tlv {
            tag: BIT_STRING,
            content: [0, rest @ ..],
        } => rest,
        _ => return None,
    };
    Some(Spki {
        alg: oid,
        params,
        bits,
    })
}

/// An AlgorithmIdentifier: (OID, parameters).
fn algorithm<'a>(alg: &Tlv<'a>) -> Option<(&'a [u8], Option<Tlv<'a>>)> {
    if alg.tag != SEQUENCE {
        return None;
    }
    let parts = der::children(alg.content)?;
    match parts.as_slice() {
        [oid] if oid.tag == OID => Some((oid.content, None)),
        [oid, params] if oid.tag == OID => Some((oid.content, Some(*params))),
        _ => None,
    }
}

/// A private key as found in the file.
enum Key<'a> {
    /// RSAPrivateKey (PKCS#1).
    Rsa(&'a [u8]),
    /// ECPrivateKey (SEC1); the curve named outside it (PKCS#8), if so.
    Ec {
        curve: Option<&'a [u8]>,
        sec1: &'a [u8],
    },
}

/// PKCS#8 PrivateKeyInfo (unencrypted): the key inside.
fn pkcs8(der: &[u8]) -> Option<Key<'_>> {
    let parts = der::children(whole(der, SEQUENCE)?)?;
    // v1 (0), no attributes; anything else is left to OpenSSL
    let [version, alg, key] = parts.as_slice() else {
        return None;
    };
    if version.tag != INTEGER || version.content != [0] || key.tag != OCTET_STRING {
        return None;
    }
    let (oid, params) = algorithm(alg)?;
    match (oid, params) {
        (
            OID_RSA,
            None
            | Some(Tlv {
                tag: NULL,
                content: [],
            }),
        ) => Some(Key::Rsa(key.content)),
        (OID_EC, Some(Tlv { tag: OID, content })) => Some(Key::Ec {
            curve: Some(content),
            sec1: key.content,
        }),
        _ => None,
    }
}

/// `Some` when the key's public part certainly is the certificate's; `None` for a mismatch and
/// for a key that cannot be read here (both go to the full path).
fn key_proven(key: &Key<'_>, spki: &Spki<'_>) -> Option<()> {
    match *key {
        Key::Rsa(pkcs1) => {
            if spki.alg != OID_RSA {
                return None;
            }
            // RSAPrivateKey: version 0, n, e, d, p, q, dp, dq, qinv
            let k = der::children(whole(pkcs1, SEQUENCE)?)?;
            if k.len() != 9 || k.iter().any(|t| t.tag != INTEGER) || k[0].content != [0] {
                return None;
            }
            // RSAPublicKey: n, e
            let p = der::children(whole(spki.bits, SEQUENCE)?)?;
            let [n, e] = p.as_slice() else {
                return None;
            };
            (n.tag == INTEGER
                && e.tag == INTEGER
                && n.content == k[1].content
                && e.content == k[2].content)
                .then_some(())
        }
        Key::Ec { curve, sec1 } => {
            // ECPrivateKey: version 1, privateKey, [0] parameters, [1] publicKey
            let k = der::children(whole(sec1, SEQUENCE)?)?;
            let (version, d) = (k.first()?, k.get(1)?);
            if version.tag != INTEGER || version.content != [1] || d.tag != OCTET_STRING {
                return None;
            }
            let mut named = curve;
            let mut public = None;
            for t in &k[2..] {
                match t.tag {
                    CTX0 => {
                        let inner = whole(t.content, OID)?;
                        if named.is_some_and(|c| c != inner) {
                            return None;
                        }
                        named = Some(inner);
                    }
                    CTX1 => match whole(t.content, BIT_STRING)? {
                        [0, point @ ..] => public = Some(point),
                        _ => return None,
                    },
                    _ => return None,
                }
            }
            // only P-256: other curves' scalar multiplication costs more than OpenSSL's decoding
            if named? != OID_P256 {
                return None;
            }
            if spki.alg != OID_EC
                || !matches!(
                    spki.params,
                    Some(Tlv {
                        tag: OID,
                        content: OID_P256
                    })
                )
                || d.content.len() != 32
            {
                return None;
            }
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok()?;
            let mut ctx = BigNumContext::new().ok()?;
            let scalar = BigNum::from_slice(d.content).ok()?;
            let mut order = BigNum::new().ok()?;
            group.order(&mut order, &mut ctx).ok()?;
            if scalar.num_bits() == 0 || scalar >= order {
                return None;
            }
            let mut derived = EcPoint::new(&group).ok()?;
            derived.mul_generator2(&group, &scalar, &mut ctx).ok()?;
            // the public key stored with it must be the same point: OpenSSL reads that one
            if let Some(point) = public {
                let stored = EcPoint::from_bytes(&group, point, &mut ctx).ok()?;
                derived.eq(&group, &stored, &mut ctx).ok()?.then_some(())?;
            }
            let theirs = EcPoint::from_bytes(&group, spki.bits, &mut ctx).ok()?;
            derived.eq(&group, &theirs, &mut ctx).ok()?.then_some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};

    fn key(kt: KeyType) -> PrivateKey {
        PrivateKey::generate(kt).unwrap()
    }

    fn cert_pem(key: &PrivateKey) -> Vec<u8> {
        make_fallback_cert(&["a.test".to_string()], key)
            .unwrap()
            .to_pem()
            .unwrap()
    }

    /// What the full OpenSSL path says of the same files.
    fn full_path(cert: &[u8], key: &[u8]) -> bool {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        crate::crypt::load_matching_pair(&c, &k).is_ok()
    }

    #[test]
    fn proves_matching_p256_and_rsa_pairs_in_every_encoding() {
        let ec = key(KeyType::Ec(EcCurve::P256));
        let rsa = key(KeyType::Rsa(2048));
        let ec_sec1 = ec.pkey().ec_key().unwrap().private_key_to_pem().unwrap();
        let rsa_pkcs1 = rsa.pkey().rsa().unwrap().private_key_to_pem().unwrap();
        for (k, pem) in [
            (&ec, ec.to_pem().unwrap()),
            (&ec, ec_sec1),
            (&rsa, rsa.to_pem().unwrap()),
            (&rsa, rsa_pkcs1),
        ] {
            let cert = cert_pem(k);
            let leaf = quick_check(&cert, &pem).expect("a matching pair is proven");
            assert_eq!(leaf.to_pem().unwrap(), cert);
            assert!(full_path(&cert, &pem));
        }
    }

    #[test]
    fn a_chain_with_issuers_is_proven_and_its_leaf_returned() {
        let k = key(KeyType::Ec(EcCurve::P256));
        let leaf = cert_pem(&k);
        let issuer = cert_pem(&key(KeyType::Ec(EcCurve::P256)));
        let chain = [leaf.clone(), issuer].concat();
        let got = quick_check(&chain, &k.to_pem().unwrap()).unwrap();
        assert_eq!(got.to_pem().unwrap(), leaf);
    }

    #[test]
    fn never_proves_a_mismatch_or_what_it_does_not_read() {
        let a = key(KeyType::Ec(EcCurve::P256));
        let b = key(KeyType::Ec(EcCurve::P256));
        let r1 = key(KeyType::Rsa(2048));
        let r2 = key(KeyType::Rsa(2048));
        let p384 = key(KeyType::Ec(EcCurve::P384));
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            // someone else's key, same type
            (cert_pem(&a), b.to_pem().unwrap()),
            (cert_pem(&r1), r2.to_pem().unwrap()),
            // other type
            (cert_pem(&a), r1.to_pem().unwrap()),
            (cert_pem(&r1), a.to_pem().unwrap()),
            // a curve the quick path leaves to OpenSSL
            (cert_pem(&p384), p384.to_pem().unwrap()),
            // encrypted
            (cert_pem(&a), a.to_pem_encrypted(b"secret").unwrap()),
            // two keys in the file
            (
                cert_pem(&a),
                [a.to_pem().unwrap(), a.to_pem().unwrap()].concat(),
            ),
            // no key, no certificate
            (cert_pem(&a), Vec::new()),
            (Vec::new(), a.to_pem().unwrap()),
        ];
        for (i, (cert, pem)) in cases.iter().enumerate() {
            assert!(quick_check(cert, pem).is_none(), "case {i}");
        }
        // the full path decides those it can: the P-384 pair is fine
        assert!(full_path(&cases[4].0, &cases[4].1));
        assert!(!full_path(&cases[0].0, &cases[0].1));
    }

    #[test]
    fn a_damaged_chain_or_key_is_left_to_the_full_path() {
        let k = key(KeyType::Ec(EcCurve::P256));
        let cert = cert_pem(&k);
        let pem = k.to_pem().unwrap();
        let text = String::from_utf8(cert.clone()).unwrap();
        // a broken second block: OpenSSL (and mod_ssl) would refuse the chain file
        let broken =
            format!("{text}-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n");
        assert!(quick_check(broken.as_bytes(), &pem).is_none());
        // truncated leaf
        let lines: Vec<&str> = text.lines().collect();
        let cut = [&lines[..3], &lines[lines.len() - 1..]].concat().join("\n");
        assert!(quick_check(cut.as_bytes(), &pem).is_none());
        // a flipped byte in the key's scalar
        let der = k.pkey().private_key_to_pkcs8().unwrap();
        for i in [der.len() - 40, der.len() - 1] {
            let mut bad = der.clone();
            bad[i] ^= 0x01;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bad);
            let bad_pem =
                format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
            assert!(quick_check(&cert, bad_pem.as_bytes()).is_none(), "byte {i}");
        }
    }
}
