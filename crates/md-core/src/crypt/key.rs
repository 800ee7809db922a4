//! Private keys: generation, PEM (plain and encrypted PKCS#8), JWK, JWS signatures.

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;
use openssl::symm::Cipher;

use super::{b64url, sha256, CryptError};
use crate::md::KeySpec;

/// Smallest and largest RSA modulus we generate or accept for new keys.
pub const RSA_BITS_RANGE: std::ops::RangeInclusive<u32> = 2048..=8192;

/// Elliptic curves supported for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// NIST P-256 (secp256r1, prime256v1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
}

impl EcCurve {
    /// Parse the names mod_md accepts (case-insensitive): `secp256r1`, `prime256v1`, `P-256`,
    /// `secp384r1`, `P-384`, `secp521r1`, `P-521` (also without the dash).
    pub fn from_name(name: &str) -> Option<EcCurve> {
        match name.to_ascii_lowercase().as_str() {
            "secp256r1" | "prime256v1" | "p-256" | "p256" => Some(EcCurve::P256),
            "secp384r1" | "p-384" | "p384" => Some(EcCurve::P384),
            "secp521r1" | "p-521" | "p521" => Some(EcCurve::P521),
            _ => None,
        }
    }

    fn nid(self) -> Nid {
        match self {
            EcCurve::P256 => Nid::X9_62_PRIME256V1,
            EcCurve::P384 => Nid::SECP384R1,
            EcCurve::P521 => Nid::SECP521R1,
        }
    }

    fn from_nid(nid: Nid) -> Option<EcCurve> {
        [EcCurve::P256, EcCurve::P384, EcCurve::P521]
            .into_iter()
            .find(|c| c.nid() == nid)
    }

    /// JWK `crv` name (RFC 7518 §6.2.1.1).
    pub fn jwk_name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
            EcCurve::P521 => "P-521",
        }
    }

    /// Bytes per coordinate and per signature half (RFC 7518 §3.4).
    fn field_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
            EcCurve::P521 => 66,
        }
    }
}

/// What kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// RSA with this many bits.
    Rsa(u32),
    /// EC on this curve.
    Ec(EcCurve),
}

impl KeyType {
    /// ACME account keys: RSA 3072, as mod_md creates them (SPEC 5.4).
    pub const ACCOUNT_DEFAULT: KeyType = KeyType::Rsa(3072);

    /// The key type for an MD key spec.
    pub fn from_spec(spec: &KeySpec) -> Result<KeyType, CryptError> {
        match spec {
            KeySpec::Default | KeySpec::Rsa { .. } => Ok(KeyType::Rsa(
                spec.rsa_bits()
                    .unwrap_or(crate::md::keyspec::RSA_DEFAULT_BITS),
            )),
            KeySpec::Ec { curve } => EcCurve::from_name(curve)
                .map(KeyType::Ec)
                .ok_or_else(|| CryptError::UnsupportedKey(format!("curve {curve}"))),
        }
    }
}

/// A private key (RSA or EC).
#[derive(Clone)]
pub struct PrivateKey {
    pkey: PKey<Private>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "PrivateKey({:?})", self.key_type())
    }
}

impl PrivateKey {
    /// Generate a new key on the calling thread (safe on httpd's main thread).
    pub fn generate(kt: KeyType) -> Result<PrivateKey, CryptError> {
        Self::make(kt, false)
    }

    /// Generate a new key, an RSA key with a second thread (half the wait): for the renewal
    /// child and a2md, never httpd's main thread (see `rsa_gen`).
    pub fn generate_with_threads(kt: KeyType) -> Result<PrivateKey, CryptError> {
        Self::make(kt, true)
    }

    fn make(kt: KeyType, parallel: bool) -> Result<PrivateKey, CryptError> {
        let pkey = match kt {
            KeyType::Rsa(bits) => {
                if !RSA_BITS_RANGE.contains(&bits) {
                    return Err(CryptError::UnsupportedKey(format!("RSA {bits} bits")));
                }
                PKey::from_rsa(super::rsa_gen::generate(bits, parallel)?)?
            }
            KeyType::Ec(c) => {
                let g = EcGroup::from_curve_name(c.nid())?;
                PKey::from_ec_key(EcKey::generate(&g)?)?
            }
        };
        Ok(PrivateKey { pkey })
    }

    /// Wrap an openssl key (RSA or one of the supported curves).
    pub fn from_pkey(pkey: PKey<Private>) -> Result<PrivateKey, CryptError> {
        let k = PrivateKey { pkey };
        k.key_type()?;
        Ok(k)
    }

    /// Parse a PEM private key (PKCS#1, SEC1 or PKCS#8). With `pass`, an encrypted PKCS#8 key.
    ///
    /// The pass phrase goes through a callback, never as a C string: the store secret is raw
    /// random bytes and may hold NUL (the crate's `_passphrase` variant panics on it). Without
    /// a pass phrase an encrypted key is an error; OpenSSL's default would prompt on the
    /// terminal, which blocks an httpd started from a shell.
    pub fn from_pem(pem: &[u8], pass: Option<&[u8]>) -> Result<PrivateKey, CryptError> {
        let r = PKey::private_key_from_pem_callback(pem, |buf| match pass {
            Some(p) if p.len() <= buf.len() => {
                buf[..p.len()].copy_from_slice(p);
                Ok(p.len())
            }
            _ => Err(openssl::error::ErrorStack::get()),
        });
        let pkey = r.map_err(|e| CryptError::Parse {
            what: "private key",
            message: e.to_string(),
        })?;
        PrivateKey::from_pkey(pkey)
    }

    /// PEM, unencrypted PKCS#8.
    pub fn to_pem(&self) -> Result<Vec<u8>, CryptError> {
        Ok(self.pkey.private_key_to_pem_pkcs8()?)
    }

    /// PEM, PKCS#8 encrypted with AES-256-CBC under `pass` (the store passes its 48 secret
    /// bytes here).
    pub fn to_pem_encrypted(&self, pass: &[u8]) -> Result<Vec<u8>, CryptError> {
        Ok(self
            .pkey
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pass)?)
    }

    /// Public key as PEM (SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> Result<Vec<u8>, CryptError> {
        Ok(self.pkey.public_key_to_pem()?)
    }

    /// The underlying openssl key.
    pub fn pkey(&self) -> &PKey<Private> {
        &self.pkey
    }

    /// Type and size of this key.
    pub fn key_type(&self) -> Result<KeyType, CryptError> {
        match self.pkey.id() {
            Id::RSA => Ok(KeyType::Rsa(self.pkey.bits())),
            Id::EC => {
                let ec = self.pkey.ec_key()?;
                ec.group()
                    .curve_name()
                    .and_then(EcCurve::from_nid)
                    .map(KeyType::Ec)
                    .ok_or_else(|| CryptError::UnsupportedKey("EC curve".into()))
            }
            other => Err(CryptError::UnsupportedKey(format!("{other:?}"))),
        }
    }

    /// The public JWK with members in the lexicographic order RFC 7638 §3.2 requires, so the
    /// same string serves the JWS header and the thumbprint.
    pub fn jwk_json(&self) -> Result<String, CryptError> {
        match self.key_type()? {
            KeyType::Rsa(_) => {
                let rsa = self.pkey.rsa()?;
                Ok(format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    b64url(&rsa.e().to_vec()),
                    b64url(&rsa.n().to_vec())
                ))
            }
            KeyType::Ec(c) => {
                let ec = self.pkey.ec_key()?;
                let mut ctx = BigNumContext::new()?;
                let mut x = openssl::bn::BigNum::new()?;
                let mut y = openssl::bn::BigNum::new()?;
                ec.public_key()
                    .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
                let n = c.field_len() as i32;
                Ok(format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    c.jwk_name(),
                    b64url(&x.to_vec_padded(n)?),
                    b64url(&y.to_vec_padded(n)?)
                ))
            }
        }
    }

    /// The public JWK as a JSON value.
    pub fn jwk(&self) -> Result<serde_json::Value, CryptError> {
        let s = self.jwk_json()?;
        Ok(serde_json::from_str(&s).expect("jwk_json produces valid JSON"))
    }

    /// base64url(SHA-256(JWK)) thumbprint (RFC 7638), as used in key authorizations.
    pub fn thumbprint(&self) -> Result<String, CryptError> {
        Ok(b64url(&sha256(self.jwk_json()?.as_bytes())))
    }

    /// JWS `alg` for this key: RS256 for RSA, ES256/ES384/ES512 by curve (RFC 7518 §3.1).
    pub fn jws_alg(&self) -> Result<&'static str, CryptError> {
        Ok(match self.key_type()? {
            KeyType::Rsa(_) => "RS256",
            KeyType::Ec(EcCurve::P256) => "ES256",
            KeyType::Ec(EcCurve::P384) => "ES384",
            KeyType::Ec(EcCurve::P521) => "ES512",
        })
    }

    /// Sign `data` for a JWS: PKCS#1 v1.5 SHA-256 for RSA; for EC the fixed-size r||s form
    /// RFC 7518 §3.4 requires instead of OpenSSL's DER.
    pub fn sign_jws(&self, data: &[u8]) -> Result<Vec<u8>, CryptError> {
        match self.key_type()? {
            KeyType::Rsa(_) => {
                let mut s = Signer::new(MessageDigest::sha256(), &self.pkey)?;
                s.update(data)?;
                Ok(s.sign_to_vec()?)
            }
            KeyType::Ec(c) => {
                let md = match c {
                    EcCurve::P256 => MessageDigest::sha256(),
                    EcCurve::P384 => MessageDigest::sha384(),
                    EcCurve::P521 => MessageDigest::sha512(),
                };
                let digest = openssl::hash::hash(md, data)?;
                let ec = self.pkey.ec_key()?;
                let sig = EcdsaSig::sign(&digest, &ec)?;
                let n = c.field_len() as i32;
                let mut out = sig.r().to_vec_padded(n)?;
                out.extend(sig.s().to_vec_padded(n)?);
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::BigNum;
    use openssl::rsa::Rsa;

    #[test]
    fn curve_names() {
        for (n, c) in [
            ("secp256r1", EcCurve::P256),
            ("prime256v1", EcCurve::P256),
            ("P-256", EcCurve::P256),
            ("secp384r1", EcCurve::P384),
            ("P-384", EcCurve::P384),
            ("SECP521R1", EcCurve::P521),
            ("P-521", EcCurve::P521),
        ] {
            assert_eq!(EcCurve::from_name(n), Some(c), "{n}");
        }
        assert_eq!(EcCurve::from_name("secp192k1"), None);
        assert!(KeyType::from_spec(&KeySpec::Ec {
            curve: "X25519".into()
        })
        .is_err());
        assert_eq!(
            KeyType::from_spec(&KeySpec::Default).unwrap(),
            KeyType::Rsa(2048)
        );
    }

    #[test]
    fn rsa_bits_bounds() {
        assert!(PrivateKey::generate(KeyType::Rsa(1024)).is_err());
        assert!(PrivateKey::generate(KeyType::Rsa(16384)).is_err());
    }

    #[test]
    fn pem_roundtrip_plain_and_encrypted() {
        let k = PrivateKey::generate(KeyType::Ec(EcCurve::P384)).unwrap();
        let pem = k.to_pem().unwrap();
        let k2 = PrivateKey::from_pem(&pem, None).unwrap();
        assert_eq!(k.jwk_json().unwrap(), k2.jwk_json().unwrap());
        let pass = [7u8; 48];
        let enc = k.to_pem_encrypted(&pass).unwrap();
        assert!(String::from_utf8_lossy(&enc).contains("ENCRYPTED PRIVATE KEY"));
        let k3 = PrivateKey::from_pem(&enc, Some(&pass)).unwrap();
        assert_eq!(k.thumbprint().unwrap(), k3.thumbprint().unwrap());
        assert!(matches!(
            PrivateKey::from_pem(&enc, Some(b"wrong")),
            Err(CryptError::Parse { .. })
        ));
        assert!(PrivateKey::from_pem(b"not a key", None).is_err());
    }

    /// Found by tests/fuzz_parsers.rs: a pass phrase with a NUL byte (as random store secrets
    /// have) panicked in the crate's CString conversion, and an encrypted key read without a
    /// pass phrase made OpenSSL prompt "Enter PEM pass phrase:" on the terminal.
    #[test]
    fn pem_pass_phrase_with_nul_and_none() {
        let k = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let pass = [0u8, 1, 0, 2];
        let enc = k.to_pem_encrypted(&pass).unwrap();
        let back = PrivateKey::from_pem(&enc, Some(&pass)).unwrap();
        assert_eq!(k.thumbprint().unwrap(), back.thumbprint().unwrap());
        assert!(PrivateKey::from_pem(&enc, Some(&[0u8])).is_err());
        // With a terminal this blocked on a prompt; now it is an error at once.
        assert!(PrivateKey::from_pem(&enc, None).is_err());
        assert!(PrivateKey::from_pem(&enc, Some(&[7u8; 2048])).is_err());
    }

    #[test]
    fn rfc7638_thumbprint_vector() {
        // RFC 7638 §3.1 example key and its thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let nb = BigNum::from_slice(&crate::crypt::b64url_decode(n).unwrap()).unwrap();
        let eb = BigNum::from_u32(65537).unwrap();
        // Only the public part matters for the thumbprint; build a key with a dummy d.
        let d = BigNum::from_u32(3).unwrap();
        let rsa = Rsa::from_public_components(nb, eb).unwrap();
        let rsa = Rsa::from_private_components(
            rsa.n().to_owned().unwrap(),
            rsa.e().to_owned().unwrap(),
            d,
            BigNum::from_u32(1).unwrap(),
            BigNum::from_u32(1).unwrap(),
            BigNum::from_u32(1).unwrap(),
            BigNum::from_u32(1).unwrap(),
            BigNum::from_u32(1).unwrap(),
        )
        .unwrap();
        let k = PrivateKey {
            pkey: PKey::from_rsa(rsa).unwrap(),
        };
        assert_eq!(
            k.thumbprint().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn es256_signature_is_raw_64_bytes_and_verifies() {
        let k = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        assert_eq!(k.jws_alg().unwrap(), "ES256");
        let sig = k.sign_jws(b"hello").unwrap();
        assert_eq!(sig.len(), 64);
        let r = BigNum::from_slice(&sig[..32]).unwrap();
        let s = BigNum::from_slice(&sig[32..]).unwrap();
        let es = EcdsaSig::from_private_components(r, s).unwrap();
        let digest = openssl::sha::sha256(b"hello");
        assert!(es.verify(&digest, &k.pkey.ec_key().unwrap()).unwrap());
    }
}
