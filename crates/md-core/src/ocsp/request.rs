//! OCSP requests (RFC 6960 4.1) for one certificate, with a random nonce (RFC 6960 4.4.1).
//!
//! The `openssl` crate builds the request and its CertID (SHA-1, as OpenSSL's default and what
//! responders expect) but has no safe API for request extensions. Rather than `unsafe` FFI
//! (forbidden in md-core) we take the crate's DER and append the `requestExtensions` field
//! ourselves with a small DER writer: TBSRequest is a SEQUENCE whose last, optional field is
//! `[2] EXPLICIT Extensions`, so appending it to a request without extensions is exact.

use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspRequest};
use openssl::x509::X509Ref;

use super::der;
use super::response::OcspError;

/// Length of our nonces (RFC 8954 asks for 1..32 octets; 16 as OpenSSL's default).
pub const NONCE_LEN: usize = 16;

/// A request ready to POST (`application/ocsp-request`) and the nonce it carries.
#[derive(Debug, Clone)]
pub struct OcspQuery {
    /// DER of the OCSPRequest.
    pub der: Vec<u8>,
    /// The nonce in the request; the response must echo it or carry none.
    pub nonce: Vec<u8>,
}

/// Build a request for `cert` issued by `issuer` with a fresh random nonce.
pub fn build_request(cert: &X509Ref, issuer: &X509Ref) -> Result<OcspQuery, OcspError> {
    let mut nonce = vec![0u8; NONCE_LEN];
    openssl::rand::rand_bytes(&mut nonce).map_err(OcspError::openssl("random nonce"))?;
    let der = build_request_with_nonce(cert, issuer, Some(&nonce))?;
    Ok(OcspQuery { der, nonce })
}

/// Build a request with the given nonce, or without one (`None`).
pub fn build_request_with_nonce(
    cert: &X509Ref,
    issuer: &X509Ref,
    nonce: Option<&[u8]>,
) -> Result<Vec<u8>, OcspError> {
    let id = OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer)
        .map_err(OcspError::openssl("certificate id"))?;
    let mut req = OcspRequest::new().map_err(OcspError::openssl("request"))?;
    req.add_id(id).map_err(OcspError::openssl("request"))?;
    let plain = req
        .to_der()
        .map_err(OcspError::openssl("request encoding"))?;
    match nonce {
        None => Ok(plain),
        Some(nonce) => add_nonce(&plain, nonce),
    }
}

/// The extnValue of a nonce extension: OpenSSL (and so `openssl ocsp`) puts the nonce as an
/// OCTET STRING inside the extension's OCTET STRING, and compares that whole value.
pub(crate) fn nonce_extn_value(nonce: &[u8]) -> Vec<u8> {
    der::write(der::OCTET_STRING, nonce)
}

fn add_nonce(plain: &[u8], nonce: &[u8]) -> Result<Vec<u8>, OcspError> {
    let bad = || OcspError::Encoding("unexpected OCSP request structure".into());
    // OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] OPTIONAL }
    let (outer, rest) = der::read(plain).ok_or_else(bad)?;
    if outer.tag != der::SEQUENCE || !rest.is_empty() {
        return Err(bad());
    }
    let fields = der::children(outer.content).ok_or_else(bad)?;
    // Unsigned request: exactly the TBSRequest, which has no extensions yet.
    let [tbs] = fields.as_slice() else {
        return Err(bad());
    };
    let tbs_fields = der::children(tbs.content).ok_or_else(bad)?;
    if tbs.tag != der::SEQUENCE || tbs_fields.iter().any(|t| t.tag == 0xa2) {
        return Err(bad());
    }
    // Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }
    let mut ext = der::write(der::OID, der::OID_OCSP_NONCE);
    ext.extend(der::write(der::OCTET_STRING, &nonce_extn_value(nonce)));
    let extensions = der::write(der::SEQUENCE, &der::write(der::SEQUENCE, &ext));
    let mut tbs_content = tbs.content.to_vec();
    tbs_content.extend(der::write(0xa2, &extensions));
    Ok(der::write(
        der::SEQUENCE,
        &der::write(der::SEQUENCE, &tbs_content),
    ))
}

/// The OCSP responder URLs in the certificate's Authority Information Access extension, in
/// order; empty when it has none (SPEC 6: no URL means no stapling, a debug line only).
pub fn responder_urls(cert: &X509Ref) -> Vec<String> {
    cert.ocsp_responders()
        .map(|s| s.iter().map(|u| u.to_string()).collect())
        .unwrap_or_default()
}

/// The HTTP POST of a query to a responder (RFC 6960 A.1: `application/ocsp-request`).
pub fn http_request(url: &str, query: &OcspQuery) -> crate::http::HttpRequest {
    crate::http::HttpRequest::post(url, "application/ocsp-request", query.der.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};
    use openssl::x509::X509;

    fn self_signed() -> X509 {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        make_fallback_cert(&["t".to_string()], &key)
            .unwrap()
            .x509()
            .clone()
    }

    /// The nonce extension of a request DER, read back with the DER reader.
    fn request_nonce(req: &[u8]) -> Option<Vec<u8>> {
        let (outer, _) = der::read(req)?;
        let (tbs, _) = der::read(outer.content)?;
        let ext = der::children(tbs.content)?
            .into_iter()
            .find(|t| t.tag == 0xa2)?;
        let (list, _) = der::read(ext.content)?;
        let (one, _) = der::read(list.content)?;
        let parts = der::children(one.content)?;
        assert_eq!(parts[0].content, der::OID_OCSP_NONCE);
        Some(parts[1].content.to_vec())
    }

    #[test]
    fn request_carries_a_fresh_nonce() {
        let cert = self_signed();
        let a = build_request(&cert, &cert).unwrap();
        let b = build_request(&cert, &cert).unwrap();
        assert_eq!(a.nonce.len(), NONCE_LEN);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(request_nonce(&a.der), Some(nonce_extn_value(&a.nonce)));
        // OpenSSL reads it back as a request.
        assert!(OcspRequest::from_der(&a.der).is_ok());
        let plain = build_request_with_nonce(&cert, &cert, None).unwrap();
        assert_eq!(request_nonce(&plain), None);
        // Adding a nonce twice is refused rather than producing two extensions.
        assert!(add_nonce(&a.der, &a.nonce).is_err());
        assert!(responder_urls(&cert).is_empty());
    }
}
