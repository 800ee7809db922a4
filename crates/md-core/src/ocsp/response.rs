//! Checking an OCSP response for one certificate (SPEC 6 "Response handling", RFC 6960 4.2).
//!
//! Order of the checks: size bound, parse, responseStatus successful, a basic response, the
//! nonce (a different nonce is rejected, a missing one accepted, as many CAs' responders
//! precompute responses), the signature (by the issuer or by a responder the issuer delegated
//! to, RFC 6960 4.2.2.2), the single response for our CertID, and its status (`unknown` is an
//! error and never stored). Validity is thisUpdate..nextUpdate, 12 h when nextUpdate is absent.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};
use openssl::asn1::Asn1GeneralizedTimeRef;
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::X509Ref;

use super::der;
use super::request::nonce_extn_value;
use super::stored::{CertStatus, StoredResponse};
use crate::drive::schedule::Validity;

/// Largest response body accepted. httpd 2.4.67 bounded the OCSP response size
/// (CVE-2026-29168); real responses for one certificate are 1-4 KiB, even with a delegated
/// responder's certificate chain included.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Validity assumed when a response has no nextUpdate (mod_md 2.4.26).
pub const DEFAULT_VALIDITY: ChronoDuration = ChronoDuration::hours(12);

/// Why a request could not be built or a response was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    /// An OpenSSL call failed.
    #[error("OCSP {what}: {source}")]
    OpenSsl {
        /// What we were doing.
        what: &'static str,
        /// OpenSSL's error queue.
        source: openssl::error::ErrorStack,
    },
    /// A DER structure was not what RFC 6960 describes.
    #[error("OCSP encoding: {0}")]
    Encoding(String),
    /// The body exceeds [`MAX_RESPONSE_BYTES`].
    #[error("OCSP response too large: {len} bytes, at most {max} accepted")]
    TooLarge {
        /// Body length (or a lower bound of it).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The body is not a DER OCSPResponse.
    #[error("OCSP response does not parse: {0}")]
    Unparseable(openssl::error::ErrorStack),
    /// responseStatus is not `successful` (RFC 6960 4.2.1).
    #[error("OCSP responder answered status {0} ({1}), not successful")]
    NotSuccessful(i32, &'static str),
    /// No basic response inside.
    #[error("OCSP response has no basic response: {0}")]
    NoBasicResponse(openssl::error::ErrorStack),
    /// The response carries a nonce different from the request's.
    #[error("OCSP response nonce does not match the request's nonce")]
    NonceMismatch,
    /// The signature does not verify against the issuer (or a delegate it signed).
    #[error("OCSP response signature does not verify against the certificate's issuer: {0}")]
    BadSignature(openssl::error::ErrorStack),
    /// No single response for our CertID.
    #[error("OCSP response has no status for the certificate")]
    NoStatusForCert,
    /// The responder does not know the certificate.
    #[error("OCSP responder reports status 'unknown' for the certificate")]
    StatusUnknown,
    /// thisUpdate/nextUpdate unusable (unreadable, in the past, or reversed).
    #[error("OCSP response validity: {0}")]
    Validity(String),
}

impl OcspError {
    pub(crate) fn openssl(what: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> Self {
        move |source| OcspError::OpenSsl { what, source }
    }
}

/// An accepted response (its DER and what it says).
pub type CheckedResponse = StoredResponse;

/// Check `body` as the response to a request for `cert` (issued by `issuer`) that carried
/// `nonce` (`None`: the request had no nonce). `now` judges whether nextUpdate has passed.
pub fn check_response(
    body: &[u8],
    cert: &X509Ref,
    issuer: &X509Ref,
    nonce: Option<&[u8]>,
    now: DateTime<Utc>,
) -> Result<CheckedResponse, OcspError> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(OcspError::TooLarge {
            len: body.len(),
            max: MAX_RESPONSE_BYTES,
        });
    }
    let resp = OcspResponse::from_der(body).map_err(OcspError::Unparseable)?;
    // OpenSSL's parser ignores bytes after the response; we staple the body as received, so
    // it must be exactly one DER element.
    if der::read(body).is_some_and(|(_, rest)| !rest.is_empty()) {
        return Err(OcspError::Encoding("data after the OCSP response".into()));
    }
    let status = resp.status();
    if status != OcspResponseStatus::SUCCESSFUL {
        return Err(OcspError::NotSuccessful(
            status.as_raw(),
            response_status_name(status),
        ));
    }
    let basic = resp.basic().map_err(OcspError::NoBasicResponse)?;

    if let (Some(sent), Some(got)) = (nonce, response_nonce(body)?) {
        // OpenSSL-based responders echo the whole extnValue (an OCTET STRING around the
        // nonce); accept a bare echo of the nonce too.
        if got != nonce_extn_value(sent) && got != sent {
            return Err(OcspError::NonceMismatch);
        }
    }

    let mut trusted = X509StoreBuilder::new().map_err(OcspError::openssl("trust store"))?;
    trusted
        .add_cert(issuer.to_owned())
        .map_err(OcspError::openssl("trust store"))?;
    // The issuer is usually an intermediate: trust it as an anchor without its own chain.
    trusted
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(OcspError::openssl("trust store"))?;
    let trusted = trusted.build();
    let mut certs = Stack::new().map_err(OcspError::openssl("certificate stack"))?;
    certs
        .push(issuer.to_owned())
        .map_err(OcspError::openssl("certificate stack"))?;
    basic
        .verify(&certs, &trusted, OcspFlag::empty())
        .map_err(OcspError::BadSignature)?;

    let id = OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer)
        .map_err(OcspError::openssl("certificate id"))?;
    let single = basic.find_status(&id).ok_or(OcspError::NoStatusForCert)?;
    let cert_status = if single.status == OcspCertStatus::GOOD {
        CertStatus::Good
    } else if single.status == OcspCertStatus::REVOKED {
        CertStatus::Revoked
    } else {
        return Err(OcspError::StatusUnknown);
    };
    let from = generalized_to_utc(single.this_update)?;
    let until = match single.next_update() {
        Some(t) => generalized_to_utc(t)?,
        None => from + DEFAULT_VALIDITY,
    };
    if until < from {
        return Err(OcspError::Validity(format!(
            "nextUpdate {until} before thisUpdate {from}"
        )));
    }
    if until <= now {
        return Err(OcspError::Validity(format!("expired at {until}")));
    }
    Ok(StoredResponse {
        status: cert_status,
        valid: Validity { from, until },
        der: body.to_vec(),
    })
}

fn response_status_name(s: OcspResponseStatus) -> &'static str {
    match s {
        OcspResponseStatus::MALFORMED_REQUEST => "malformedRequest",
        OcspResponseStatus::INTERNAL_ERROR => "internalError",
        OcspResponseStatus::TRY_LATER => "tryLater",
        OcspResponseStatus::SIG_REQUIRED => "sigRequired",
        OcspResponseStatus::UNAUTHORIZED => "unauthorized",
        _ => "unrecognized",
    }
}

fn generalized_to_utc(t: &Asn1GeneralizedTimeRef) -> Result<DateTime<Utc>, OcspError> {
    let text = t.to_string();
    parse_openssl_time(&text)
        .ok_or_else(|| OcspError::Validity(format!("unreadable time '{text}'")))
}

/// `Nov 29 19:02:08 2026 GMT`, OpenSSL's print form of an ASN.1 time (the crate offers no
/// other safe way out of an `Asn1GeneralizedTime`), maybe with fractional seconds, to UTC.
fn parse_openssl_time(text: &str) -> Option<DateTime<Utc>> {
    let trimmed = text.trim().strip_suffix("GMT")?.trim_end();
    // Drop fractional seconds, which responders may send and a stapling schedule ignores.
    let cleaned: String = match trimmed.find('.') {
        Some(dot) => {
            let end = trimmed[dot..].find(' ').map_or(trimmed.len(), |i| dot + i);
            format!("{}{}", &trimmed[..dot], &trimmed[end..])
        }
        None => trimmed.to_string(),
    };
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&cleaned, "%b %d %H:%M:%S %Y")
        .ok()
        .map(|n| n.and_utc())
}

/// The nonce extension's extnValue content in a DER OCSPResponse, if it has one.
///
/// OCSPResponse ::= SEQUENCE { responseStatus, responseBytes [0] EXPLICIT SEQUENCE {
///   responseType OID, response OCTET STRING (BasicOCSPResponse) } }
/// BasicOCSPResponse ::= SEQUENCE { tbsResponseData ResponseData, ... }
/// ResponseData ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1, responderID ([1] | [2]),
///   producedAt, responses, responseExtensions [1] EXPLICIT Extensions OPTIONAL }
pub(crate) fn response_nonce(body: &[u8]) -> Result<Option<Vec<u8>>, OcspError> {
    let bad = || OcspError::Encoding("unexpected OCSP response structure".into());
    let seq = |input: &[u8]| -> Result<Vec<u8>, OcspError> {
        let (t, _) = der::read(input).ok_or_else(bad)?;
        if t.tag != der::SEQUENCE {
            return Err(bad());
        }
        Ok(t.content.to_vec())
    };
    let outer = seq(body)?;
    let fields = der::children(&outer).ok_or_else(bad)?;
    let bytes = fields.iter().find(|t| t.tag == 0xa0).ok_or_else(bad)?;
    let rb = seq(bytes.content)?;
    let rb = der::children(&rb).ok_or_else(bad)?;
    let basic = rb
        .iter()
        .find(|t| t.tag == der::OCTET_STRING)
        .ok_or_else(bad)?;
    let basic = seq(basic.content)?;
    let basic = der::children(&basic).ok_or_else(bad)?;
    let tbs = basic
        .first()
        .filter(|t| t.tag == der::SEQUENCE)
        .ok_or_else(bad)?;
    let mut tbs_fields = der::children(tbs.content).ok_or_else(bad)?;
    if tbs_fields.first().is_some_and(|t| t.tag == 0xa0) {
        tbs_fields.remove(0);
    }
    // responderID, producedAt, responses, then maybe [1] extensions.
    let Some(ext) = tbs_fields.get(3).filter(|t| t.tag == 0xa1) else {
        return Ok(None);
    };
    let (list, _) = der::read(ext.content).ok_or_else(bad)?;
    for e in der::children(list.content).ok_or_else(bad)? {
        let parts = der::children(e.content).ok_or_else(bad)?;
        let is_nonce = parts
            .first()
            .is_some_and(|p| p.tag == der::OID && p.content == der::OID_OCSP_NONCE);
        if is_nonce {
            let value = parts
                .last()
                .filter(|p| p.tag == der::OCTET_STRING)
                .ok_or_else(bad)?;
            return Ok(Some(value.content.to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn openssl_time_forms() {
        let t = |y, mo, d, h, mi, s| Some(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap());
        assert_eq!(
            parse_openssl_time("Nov 29 19:02:08 2026 GMT"),
            t(2026, 11, 29, 19, 2, 8)
        );
        assert_eq!(
            parse_openssl_time("Nov  5 01:02:03 2026 GMT"),
            t(2026, 11, 5, 1, 2, 3)
        );
        assert_eq!(
            parse_openssl_time("Nov 29 19:02:08.25 2026 GMT"),
            t(2026, 11, 29, 19, 2, 8)
        );
        assert_eq!(parse_openssl_time("Nov 29 19:02:08 2026"), None);
        assert_eq!(parse_openssl_time("Bad"), None);
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let cert = {
            let pem = include_bytes!("../../tests/fixtures/ocsp-self-signed.pem");
            openssl::x509::X509::from_pem(pem).unwrap()
        };
        let now = Utc::now();
        for body in [&b""[..], b"\x30", b"\x30\x03\x0a\x01\x00", b"\x30\x80"] {
            assert!(check_response(body, &cert, &cert, None, now).is_err());
            let _ = response_nonce(body);
        }
        // responseStatus tryLater (3), no responseBytes
        let err = check_response(b"\x30\x03\x0a\x01\x03", &cert, &cert, None, now).unwrap_err();
        assert!(
            matches!(err, OcspError::NotSuccessful(3, "tryLater")),
            "{err}"
        );
        let trailing = check_response(b"\x30\x03\x0a\x01\x03\x00", &cert, &cert, None, now);
        assert!(
            matches!(trailing, Err(OcspError::Encoding(_))),
            "{trailing:?}"
        );
        let big = vec![0u8; MAX_RESPONSE_BYTES + 1];
        assert!(matches!(
            check_response(&big, &cert, &cert, None, now),
            Err(OcspError::TooLarge { len, .. }) if len == MAX_RESPONSE_BYTES + 1
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Arbitrary bodies, and DER-looking ones: refused or accepted, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            tag in proptest::sample::select(vec![0x30u8, 0xa0, 0xa1, 0x04]),
        ) {
            let pem = include_bytes!("../../tests/fixtures/ocsp-self-signed.pem");
            let cert = openssl::x509::X509::from_pem(pem).unwrap();
            let framed = der::write(tag, &body);
            for b in [&body[..], &framed[..]] {
                let _ = response_nonce(b);
                let _ = check_response(b, &cert, &cert, Some(b"n"), Utc::now());
            }
        }

        /// Arbitrary stored-file text: no panic.
        #[test]
        fn stored_files_never_panic(text in ".{0,200}") {
            let _ = StoredResponse::parse(&text);
        }
    }
}
