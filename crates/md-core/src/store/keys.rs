//! Minimal key/certificate handling the store needs (to be folded into `crypt` later):
//! PEM encode/decode with the store's pass phrase, chains, key-matches-certificate.

use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::X509;

/// Encode a private key as PKCS#8 PEM; encrypted with AES-256-CBC when `secret` is given
/// (the raw 48 store key bytes are the pass phrase, as the C module does).
pub fn key_to_pem(key: &PKey<Private>, secret: Option<&[u8]>) -> Result<Vec<u8>, String> {
    match secret {
        Some(s) => key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), s),
        None => key.private_key_to_pem_pkcs8(),
    }
    .map_err(|e| format!("cannot encode private key: {e}"))
}

/// Decode a PEM private key. Encrypted PEM needs `secret`; plain PEM is accepted anywhere
/// (mod_md reads both, e.g. after an admin copied a key in by hand).
pub fn key_from_pem(pem: &[u8], secret: Option<&[u8]>) -> Result<PKey<Private>, String> {
    let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
    let r = match (encrypted, secret) {
        // via the callback: the pass phrase is raw random bytes and may contain NUL, which the
        // crate's `_passphrase` variant cannot take
        (true, Some(s)) => PKey::private_key_from_pem_callback(pem, |buf| {
            if s.len() > buf.len() {
                return Err(openssl::error::ErrorStack::get());
            }
            buf[..s.len()].copy_from_slice(s);
            Ok(s.len())
        }),
        (true, None) => return Err("private key is encrypted and no pass phrase is known".into()),
        // never OpenSSL's default pass phrase prompt on the terminal
        (false, _) => {
            PKey::private_key_from_pem_callback(pem, |_| Err(openssl::error::ErrorStack::get()))
        }
    };
    r.map_err(|e| format!("cannot decode private key: {e}"))
}

/// Parse a PEM chain (leaf first). Empty input or no certificate is an error.
pub fn chain_from_pem(pem: &[u8]) -> Result<Vec<X509>, String> {
    let v = X509::stack_from_pem(pem).map_err(|e| format!("cannot parse certificates: {e}"))?;
    if v.is_empty() {
        return Err("no certificate in file".into());
    }
    Ok(v)
}

/// Parse only the first certificate of a PEM chain (the leaf): half or a third of the work of
/// [`chain_from_pem`] for a real chain, which matters when thousands of MDs are assessed.
pub fn leaf_from_pem(pem: &[u8]) -> Result<X509, String> {
    X509::from_pem(pem).map_err(|e| format!("cannot parse certificate: {e}"))
}

/// Encode a chain as concatenated PEM.
pub fn chain_to_pem(chain: &[X509]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for c in chain {
        out.extend(
            c.to_pem()
                .map_err(|e| format!("cannot encode certificate: {e}"))?,
        );
    }
    Ok(out)
}

/// True when `cert`'s public key is the public half of `key`.
pub fn key_matches_cert(key: &PKey<Private>, cert: &X509) -> bool {
    cert.public_key()
        .map(|pk| pk.public_eq(key))
        .unwrap_or(false)
}

/// DNS names in the certificate's subjectAltName, lower-cased.
pub fn dns_names(cert: &X509) -> Vec<String> {
    cert.subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default()
}

/// True when `cert` covers every name in `domains`: literally, or by a wildcard SAN one label
/// up (`*.a.org` covers `x.a.org`, not `a.org` nor `y.x.a.org`).
pub fn covers_all(cert: &X509, domains: &[String]) -> bool {
    dns_names_cover(&dns_names(cert), domains)
}

/// [`covers_all`] on a certificate's [`dns_names`].
pub fn dns_names_cover(sans: &[String], domains: &[String]) -> bool {
    domains.iter().all(|d| {
        let d = d.to_ascii_lowercase();
        sans.iter().any(|s| {
            *s == d
                || s.strip_prefix("*.").is_some_and(|base| {
                    d.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
                })
        })
    })
}

/// SHA-256 fingerprint of a certificate, lower-case hex (for logs and tests).
pub fn fingerprint_sha256(cert: &X509) -> String {
    cert.digest(openssl::hash::MessageDigest::sha256())
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    #[test]
    fn coverage_with_wildcards() {
        let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let k = PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&k).unwrap();
        let san = openssl::x509::extension::SubjectAlternativeName::new()
            .dns("A.org")
            .dns("*.a.org")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&k, openssl::hash::MessageDigest::sha256()).unwrap();
        let c = b.build();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(covers_all(&c, &names(&["a.org", "www.a.org", "*.a.org"])));
        assert!(!covers_all(&c, &names(&["x.y.a.org"])));
        assert!(!covers_all(&c, &names(&["b.org"])));
    }

    #[test]
    fn encrypted_round_trip() {
        let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let k = PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap();
        let mut secret = [7u8; 48];
        secret[5] = 0; // NUL bytes occur in random secrets
        let pem = key_to_pem(&k, Some(&secret)).unwrap();
        assert!(String::from_utf8_lossy(&pem).contains("ENCRYPTED PRIVATE KEY"));
        let back = key_from_pem(&pem, Some(&secret)).unwrap();
        assert!(back.public_eq(&k));
        assert!(key_from_pem(&pem, Some(&[8u8; 48])).is_err());
        assert!(key_from_pem(&pem, None).is_err());
        let plain = key_to_pem(&k, None).unwrap();
        assert!(key_from_pem(&plain, Some(&secret)).unwrap().public_eq(&k));
    }
}
