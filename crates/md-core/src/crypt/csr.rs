//! Certificate signing requests (RFC 8555 §7.4) and tls-alpn-01 challenge certificates
//! (RFC 8737 §3).

use std::net::IpAddr;

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Extension, X509NameBuilder, X509ReqBuilder, X509};

use super::{sha256, Certificate, CryptError, PrivateKey};

/// id-pe-tlsfeature (RFC 7633): the must-staple extension.
pub const TLS_FEATURE_OID: &str = "1.3.6.1.5.5.7.1.24";
/// id-pe-acmeIdentifier (RFC 8737 §6.1).
pub const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// Subject CNs are limited to 64 characters (RFC 5280 ub-common-name); longer first names go
/// into the SAN only (mod_md #227).
const MAX_CN_LEN: usize = 64;

/// Options for [`make_csr`].
#[derive(Debug, Clone, Default)]
pub struct CsrOptions {
    /// Add the TLS feature extension with status_request (MDMustStaple).
    pub must_staple: bool,
}

fn add_san_name(san: &mut SubjectAlternativeName, name: &str) -> Result<(), CryptError> {
    if name.parse::<IpAddr>().is_ok() {
        san.ip(name);
    } else if !name.is_empty() && !name.contains(['/', ' ', '@']) {
        san.dns(name);
    } else {
        return Err(CryptError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// Build and sign a CSR for `names` (DNS names or IP addresses) with `key`; returns DER.
/// The subject CN is the first name only when it is shorter than 64 characters; the SAN holds
/// all names.
pub fn make_csr(
    key: &PrivateKey,
    names: &[String],
    opts: &CsrOptions,
) -> Result<Vec<u8>, CryptError> {
    let first = names
        .first()
        .ok_or_else(|| CryptError::InvalidName(String::new()))?;
    let mut b = X509ReqBuilder::new()?;
    let mut subject = X509NameBuilder::new()?;
    if first.len() < MAX_CN_LEN {
        subject.append_entry_by_text("CN", first)?;
    }
    b.set_subject_name(&subject.build())?;
    let mut exts = Stack::new()?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        add_san_name(&mut san, n)?;
    }
    exts.push(san.build(&b.x509v3_context(None))?)?;
    if opts.must_staple {
        // TLSFeature ::= SEQUENCE OF INTEGER; status_request is 5 (RFC 7633 §6).
        let der = Asn1OctetString::new_from_bytes(&[0x30, 0x03, 0x02, 0x01, 0x05])?;
        let oid = Asn1Object::from_str(TLS_FEATURE_OID)?;
        exts.push(X509Extension::new_from_der(&oid, false, &der)?)?;
    }
    b.add_extensions(&exts)?;
    b.set_pubkey(key.pkey())?;
    b.sign(key.pkey(), MessageDigest::sha256())?;
    Ok(b.build().to_der()?)
}

/// The tls-alpn-01 certificate for `domain` (RFC 8737 §3): self-signed by `key`, CN
/// "tls-alpn-01-challenge", SAN = the domain, and the critical acmeIdentifier extension holding
/// SHA-256 of the key authorization as a DER OCTET STRING. Valid for 7 days, as mod_md's.
pub fn make_tls_alpn01_cert(
    domain: &str,
    key_authorization: &str,
    key: &PrivateKey,
) -> Result<Certificate, CryptError> {
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(63, MsbOption::MAYBE_ZERO, false)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    b.set_serial_number(&serial)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "tls-alpn-01-challenge")?;
    let name = name.build();
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(7)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.set_pubkey(key.pkey())?;
    let mut san = SubjectAlternativeName::new();
    add_san_name(&mut san, domain)?;
    let san = san.build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    let digest = sha256(key_authorization.as_bytes());
    // Extension value: the DER encoding of Authorization ::= OCTET STRING (SIZE (32)).
    let mut value = vec![0x04, 0x20];
    value.extend_from_slice(&digest);
    let oid = Asn1Object::from_str(ACME_IDENTIFIER_OID)?;
    let value = Asn1OctetString::new_from_bytes(&value)?;
    let ext = X509Extension::new_from_der(&oid, true, &value)?;
    b.append_extension(ext)?;
    b.sign(key.pkey(), MessageDigest::sha256())?;
    Ok(Certificate::from_x509(b.build()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{EcCurve, KeyType};
    use openssl::x509::X509Req;

    #[test]
    fn csr_cn_and_sans() {
        let k = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let names = vec!["a.test".to_string(), "b.test".into(), "127.0.0.1".into()];
        let der = make_csr(&k, &names, &CsrOptions { must_staple: true }).unwrap();
        let req = X509Req::from_der(&der).unwrap();
        assert!(req.verify(k.pkey()).unwrap());
        let cn: Vec<_> = req.subject_name().entries().collect();
        assert_eq!(cn.len(), 1);
        assert_eq!(cn[0].data().to_string().unwrap(), "a.test");
        let text = String::from_utf8(req.to_text().unwrap()).unwrap();
        assert!(text.contains("DNS:b.test"), "{text}");
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
        assert!(
            text.contains("TLS Feature") || text.contains("1.3.6.1.5.5.7.1.24"),
            "{text}"
        );

        let long = format!("{}.test", "x".repeat(70));
        let der = make_csr(&k, &[long], &CsrOptions::default()).unwrap();
        let req = X509Req::from_der(&der).unwrap();
        assert_eq!(req.subject_name().entries().count(), 0);
        assert!(make_csr(&k, &[], &CsrOptions::default()).is_err());
        assert!(make_csr(&k, &["bad name".into()], &CsrOptions::default()).is_err());
    }

    #[test]
    fn tls_alpn01_cert_has_critical_acme_identifier() {
        let k = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let c = make_tls_alpn01_cert("a.test", "tok.thumb", &k).unwrap();
        assert_eq!(c.alt_names(), vec!["a.test".to_string()]);
        assert!(c.matches_key(&k));
        let der = c.to_der().unwrap();
        let digest = sha256(b"tok.thumb");
        // OID 1.3.6.1.5.5.7.1.31, critical TRUE, then OCTET STRING { OCTET STRING(32) }.
        let mut needle = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        needle.extend([0x01, 0x01, 0xff, 0x04, 0x22, 0x04, 0x20]);
        needle.extend(digest);
        assert!(der.windows(needle.len()).any(|w| w == needle.as_slice()));
        let days = (c.not_after() - c.not_before()).num_days();
        assert_eq!(days, 7);
    }
}
