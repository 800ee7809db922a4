//! Keys, certificates, CSRs and challenge certificates on the system OpenSSL (openssl crate).

mod cert;
mod csr;
mod fallback;
mod key;
mod pairs;
mod quick_pair;
mod rsa_gen;

pub use cert::{names_covered, Certificate, CertificateChain};
pub use csr::{make_csr, make_tls_alpn01_cert, CsrOptions, ACME_IDENTIFIER_OID, TLS_FEATURE_OID};
pub use fallback::{make_fallback_cert, FALLBACK_CN, FALLBACK_DAYS};
pub use key::{EcCurve, KeyType, PrivateKey};
pub use pairs::{CheckedPair, PairCache};

use base64::Engine;

/// Errors from key and certificate work.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// The requested key type is not supported (RSA bits out of range, unknown curve).
    #[error("unsupported key type: {0}")]
    UnsupportedKey(String),
    /// PEM or DER input could not be parsed (or the pass phrase was wrong).
    #[error("cannot parse {what}: {message}")]
    Parse {
        /// What was being parsed ("private key", "certificate").
        what: &'static str,
        /// OpenSSL's message.
        message: String,
    },
    /// A name that is neither a DNS name nor an IP address made it into a CSR or certificate.
    #[error("invalid name {0:?} for a certificate")]
    InvalidName(String),
    /// Any other OpenSSL failure.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// Read and check an active certificate/key pair as mod_ssl will load it: every PEM block of
/// the chain parses, the key parses (unencrypted) and belongs to the leaf. The error names the
/// file and what is wrong, for the admin.
pub fn load_matching_pair(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<(CertificateChain, PrivateKey), String> {
    let (cert, key) = read_pair(cert_path, key_path)?;
    matching_pair(cert_path, &cert, key_path, &key)
}

/// The contents of a certificate and a key file; the error names the file.
pub(crate) fn read_pair(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok((read(cert_path)?, read(key_path)?))
}

/// [`load_matching_pair`] of contents already read from those paths.
pub(crate) fn matching_pair(
    cert_path: &std::path::Path,
    cert_pem: &[u8],
    key_path: &std::path::Path,
    key_pem: &[u8],
) -> Result<(CertificateChain, PrivateKey), String> {
    // OpenSSL's full error stack is a screen long: the last reason says enough.
    let brief = |p: &std::path::Path, what: &str, e: &openssl::error::ErrorStack| {
        let reason = e
            .errors()
            .iter()
            .rev()
            .find_map(|e| e.reason())
            .unwrap_or("no data");
        format!("{}: not a readable {what} ({reason})", p.display())
    };
    let certs = openssl::x509::X509::stack_from_pem(cert_pem)
        .map_err(|e| brief(cert_path, "PEM certificate chain", &e))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert_path.display()));
    }
    let chain = CertificateChain {
        certs: certs.into_iter().map(Certificate::from_x509).collect(),
    };
    let pkey = openssl::pkey::PKey::private_key_from_pem(key_pem)
        .map_err(|e| brief(key_path, "PEM private key", &e))?;
    let key = PrivateKey::from_pkey(pkey).map_err(|e| format!("{}: {e}", key_path.display()))?;
    if !chain.leaf().matches_key(&key) {
        return Err(format!(
            "{}: the certificate does not belong to the key in {}",
            cert_path.display(),
            key_path.display()
        ));
    }
    Ok((chain, key))
}

/// base64url without padding (RFC 8555 §6.1, RFC 7515 §2).
pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Decode base64url, with or without padding.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// Lower-case hex.
pub fn hex_lower(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}
