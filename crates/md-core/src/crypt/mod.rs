//! Keys, certificates, CSRs and challenge certificates on the system OpenSSL (openssl crate).

mod cert;
mod csr;
mod fallback;
mod key;

pub use cert::{Certificate, CertificateChain};
pub use csr::{make_csr, make_tls_alpn01_cert, CsrOptions, ACME_IDENTIFIER_OID, TLS_FEATURE_OID};
pub use fallback::{make_fallback_cert, FALLBACK_CN, FALLBACK_DAYS};
pub use key::{EcCurve, KeyType, PrivateKey};

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
