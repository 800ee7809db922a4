//! X.509 certificates and chains: parsing, facts the store and status need, key matching.

use chrono::{DateTime, Utc};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509};

use super::{b64url, hex_lower, CryptError, PrivateKey};

/// One X.509 certificate.
#[derive(Clone)]
pub struct Certificate {
    x509: X509,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Certificate(serial={}, issuer={})",
            self.serial_hex(),
            self.issuer_name()
        )
    }
}

fn asn1_to_utc(t: &Asn1TimeRef) -> DateTime<Utc> {
    // Asn1Time has no direct conversion; measure the distance from the epoch.
    let epoch = Asn1Time::from_unix(0).expect("epoch is representable");
    match epoch.diff(t) {
        Ok(d) => DateTime::from_timestamp(d.days as i64 * 86400 + d.secs as i64, 0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        Err(_) => DateTime::<Utc>::MIN_UTC,
    }
}

fn name_oneline(name: &X509NameRef) -> String {
    let mut s = String::new();
    for e in name.entries() {
        let key = e.object().nid().short_name().unwrap_or("?");
        let val = e.data().to_string().unwrap_or_default();
        s.push('/');
        s.push_str(key);
        s.push('=');
        s.push_str(&val);
    }
    s
}

impl Certificate {
    /// Wrap an openssl certificate.
    pub fn from_x509(x509: X509) -> Self {
        Certificate { x509 }
    }

    /// Parse one PEM certificate (the first in the input).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CryptError> {
        X509::from_pem(pem)
            .map(Certificate::from_x509)
            .map_err(|e| CryptError::Parse {
                what: "certificate",
                message: e.to_string(),
            })
    }

    /// Parse one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptError> {
        X509::from_der(der)
            .map(Certificate::from_x509)
            .map_err(|e| CryptError::Parse {
                what: "certificate",
                message: e.to_string(),
            })
    }

    /// The openssl certificate.
    pub fn x509(&self) -> &X509 {
        &self.x509
    }

    /// PEM encoding.
    pub fn to_pem(&self) -> Result<Vec<u8>, CryptError> {
        Ok(self.x509.to_pem()?)
    }

    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, CryptError> {
        Ok(self.x509.to_der()?)
    }

    /// SHA-256 fingerprint of the DER form, lower-case hex.
    pub fn sha256_fingerprint(&self) -> Result<String, CryptError> {
        Ok(hex_lower(&self.x509.digest(MessageDigest::sha256())?))
    }

    /// Serial number, upper-case hex in whole bytes (OpenSSL BN_bn2hex form, as mod_md shows it).
    pub fn serial_hex(&self) -> String {
        self.x509
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
            .unwrap_or_default()
            .to_ascii_uppercase()
    }

    /// Start of validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        asn1_to_utc(self.x509.not_before())
    }

    /// End of validity.
    pub fn not_after(&self) -> DateTime<Utc> {
        asn1_to_utc(self.x509.not_after())
    }

    /// DNS names and IP addresses (as text) from the subjectAltName extension.
    pub fn alt_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(sans) = self.x509.subject_alt_names() {
            for n in sans.iter() {
                if let Some(d) = n.dnsname() {
                    out.push(d.to_string());
                } else if let Some(ip) = n.ipaddress() {
                    if let Some(a) = ip_from_bytes(ip) {
                        out.push(a.to_string());
                    }
                }
            }
        }
        out
    }

    /// True when every name is covered by a SAN (exact, or a `*.` wildcard one label deep).
    pub fn covers(&self, names: &[String]) -> bool {
        names_covered(&self.alt_names(), names)
    }

    /// The TLS feature extension asks for `status_request` (OCSP must-staple, RFC 7633).
    pub fn must_staple(&self) -> bool {
        let Ok(der) = self.x509.to_der() else {
            return false;
        };
        let Some(value) = der_extension(&der, &TLS_FEATURE_OID_DER) else {
            return false;
        };
        // TLSFeature ::= SEQUENCE OF INTEGER; status_request is 5.
        let Some((0x30, mut features, _)) = der_tlv(value) else {
            return false;
        };
        while let Some((tag, v, rest)) = der_tlv(features) {
            if tag == 0x02 && v == [5] {
                return true;
            }
            features = rest;
        }
        false
    }

    /// Issuer distinguished name in OpenSSL's oneline form, e.g. `/C=US/O=Pebble/CN=...`.
    pub fn issuer_name(&self) -> String {
        name_oneline(self.x509.issuer_name())
    }

    /// Subject distinguished name in oneline form.
    pub fn subject_name(&self) -> String {
        name_oneline(self.x509.subject_name())
    }

    /// Issuer common name, if any.
    pub fn issuer_cn(&self) -> Option<String> {
        self.x509
            .issuer_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
    }

    /// The caIssuers URI from Authority Information Access, if present.
    pub fn issuer_uri(&self) -> Option<String> {
        let aia = self.x509.authority_info()?;
        aia.iter()
            .filter(|ad| ad.method().nid() == Nid::AD_CA_ISSUERS)
            .find_map(|ad| ad.location().uri().map(|s| s.to_string()))
    }

    /// OCSP responder URIs from Authority Information Access.
    pub fn ocsp_uris(&self) -> Vec<String> {
        self.x509
            .ocsp_responders()
            .map(|s| s.iter().map(|u| u.to_string()).collect())
            .unwrap_or_default()
    }

    /// keyIdentifier of the Authority Key Identifier extension.
    pub fn authority_key_id(&self) -> Option<Vec<u8>> {
        self.x509.authority_key_id().map(|o| o.as_slice().to_vec())
    }

    /// True when the certificate's public key is the public part of `key`.
    pub fn matches_key(&self, key: &PrivateKey) -> bool {
        self.x509
            .public_key()
            .map(|p| p.public_eq(key.pkey()))
            .unwrap_or(false)
    }

    /// True when `issuer` signed this certificate.
    pub fn is_issued_by(&self, issuer: &Certificate) -> bool {
        issuer
            .x509
            .public_key()
            .and_then(|k| self.x509.verify(&k))
            .unwrap_or(false)
    }

    /// The ARI certificate identifier (RFC 9773 §4.1, SPEC 5.8):
    /// `b64url(AKI keyIdentifier) "." b64url(serial as unsigned big-endian, no leading zero)`.
    /// `None` when the certificate has no AKI.
    pub fn ari_cert_id(&self) -> Option<String> {
        let aki = self.authority_key_id()?;
        // BigNum::to_vec is the minimal unsigned magnitude: no DER sign byte.
        let serial = self.x509.serial_number().to_bn().ok()?.to_vec();
        Some(format!("{}.{}", b64url(&aki), b64url(&serial)))
    }
}

/// DER: the (tag, content, rest) of the first TLV in `b` (definite lengths only, as DER).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The DER body of OID 1.3.6.1.5.5.7.1.24 (id-pe-tlsfeature, RFC 7633).
const TLS_FEATURE_OID_DER: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x18];

/// The contents of the extension `oid` (its OCTET STRING) in a DER certificate.
fn der_extension<'a>(cert: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    const SEQ: u8 = 0x30;
    let (_, cert, _) = der_tlv(cert).filter(|t| t.0 == SEQ)?;
    let (_, mut tbs, _) = der_tlv(cert).filter(|t| t.0 == SEQ)?;
    // TBSCertificate: the extensions are the explicit [3] element.
    while !tbs.is_empty() {
        let (tag, body, rest) = der_tlv(tbs)?;
        tbs = rest;
        if tag != 0xa3 {
            continue;
        }
        let (_, mut exts, _) = der_tlv(body).filter(|t| t.0 == SEQ)?;
        while !exts.is_empty() {
            let (_, ext, rest) = der_tlv(exts)?;
            exts = rest;
            let (tag, id, mut ext) = der_tlv(ext)?;
            if tag != 0x06 || id != oid {
                continue;
            }
            // optional `critical BOOLEAN`, then the OCTET STRING
            loop {
                let (tag, value, rest) = der_tlv(ext)?;
                if tag == 0x04 {
                    return Some(value);
                }
                ext = rest;
            }
        }
    }
    None
}

/// True when every name is covered by one of `sans` (a certificate's [`Certificate::alt_names`]):
/// exact, or a `*.` wildcard one label deep.
pub fn names_covered(sans: &[String], names: &[String]) -> bool {
    names.iter().all(|n| {
        sans.iter().any(|s| {
            s.eq_ignore_ascii_case(n)
                || s.strip_prefix("*.").is_some_and(|base| {
                    n.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(base))
                })
        })
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// A certificate followed by its issuers (leaf first), as in `pubcert.pem`.
#[derive(Debug, Clone)]
pub struct CertificateChain {
    /// Leaf first, then intermediates.
    pub certs: Vec<Certificate>,
}

impl CertificateChain {
    /// Parse all PEM certificates in `pem`. Empty input is an error.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CryptError> {
        let certs: Vec<Certificate> = X509::stack_from_pem(pem)
            .map_err(|e| CryptError::Parse {
                what: "certificate chain",
                message: e.to_string(),
            })?
            .into_iter()
            .map(Certificate::from_x509)
            .collect();
        if certs.is_empty() {
            return Err(CryptError::Parse {
                what: "certificate chain",
                message: "no certificate found".into(),
            });
        }
        Ok(CertificateChain { certs })
    }

    /// All certificates as concatenated PEM.
    pub fn to_pem(&self) -> Result<Vec<u8>, CryptError> {
        let mut out = Vec::new();
        for c in &self.certs {
            out.extend(c.to_pem()?);
        }
        Ok(out)
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &Certificate {
        &self.certs[0]
    }

    /// Issuer name of the topmost certificate: what "chain selection by issuer" compares.
    pub fn top_issuer_name(&self) -> String {
        self.certs
            .last()
            .map(|c| c.issuer_name())
            .unwrap_or_default()
    }

    /// Verify each certificate is signed by the next, and the last by one of `roots`.
    pub fn verify_against(&self, roots: &[Certificate]) -> bool {
        for w in self.certs.windows(2) {
            if !w[0].is_issued_by(&w[1]) {
                return false;
            }
        }
        let top = self.certs.last().expect("chain is never empty");
        roots.iter().any(|r| top.is_issued_by(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{EcCurve, KeyType};
    use openssl::bn::BigNum;
    use openssl::x509::{X509Extension, X509NameBuilder};

    fn self_signed_with_aia(key: &PrivateKey) -> Certificate {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("C", "DE").unwrap();
        name.append_entry_by_text("CN", "Test Issuer").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_hex_str("0abcdef1")
            .unwrap()
            .to_asn1_integer()
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key.pkey()).unwrap();
        let nb = Asn1Time::from_unix(1_700_000_000).unwrap();
        let na = Asn1Time::from_unix(1_700_086_400).unwrap();
        b.set_not_before(&nb).unwrap();
        b.set_not_after(&na).unwrap();
        // No typed builder exists for AIA; the config-string constructor is the only way.
        #[allow(deprecated)]
        let aia = X509Extension::new(
            None,
            None,
            "authorityInfoAccess",
            "caIssuers;URI:http://ca.test/issuer.der,OCSP;URI:http://ocsp.ca.test",
        )
        .unwrap();
        b.append_extension(aia).unwrap();
        b.sign(key.pkey(), MessageDigest::sha256()).unwrap();
        Certificate::from_x509(b.build())
    }

    #[test]
    fn certificate_facts() {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let c = self_signed_with_aia(&key);
        assert_eq!(c.serial_hex(), "0ABCDEF1", "whole bytes, as BN_bn2hex");
        assert_eq!(c.not_before().timestamp(), 1_700_000_000);
        assert_eq!(c.not_after().timestamp(), 1_700_086_400);
        assert_eq!(c.issuer_name(), "/C=DE/CN=Test Issuer");
        assert_eq!(c.issuer_cn().as_deref(), Some("Test Issuer"));
        assert_eq!(c.issuer_uri().as_deref(), Some("http://ca.test/issuer.der"));
        assert_eq!(c.ocsp_uris(), vec!["http://ocsp.ca.test".to_string()]);
        assert_eq!(c.sha256_fingerprint().unwrap().len(), 64);
        assert!(c.matches_key(&key));
        let other = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        assert!(!c.matches_key(&other));
        assert!(c.is_issued_by(&c));
        assert!(c.ari_cert_id().is_none(), "no AKI");
        assert!(!c.must_staple());
        let pem = CertificateChain {
            certs: vec![c.clone(), c],
        }
        .to_pem()
        .unwrap();
        assert_eq!(CertificateChain::from_pem(&pem).unwrap().certs.len(), 2);
        assert!(CertificateChain::from_pem(b"").is_err());
    }

    #[test]
    fn must_staple_from_the_tls_feature_extension() {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(key.pkey()).unwrap();
        b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(1_700_086_400).unwrap())
            .unwrap();
        let der = openssl::asn1::Asn1OctetString::new_from_bytes(&[0x30, 0x03, 0x02, 0x01, 0x05])
            .unwrap();
        let oid = openssl::asn1::Asn1Object::from_str(crate::crypt::TLS_FEATURE_OID).unwrap();
        b.append_extension(X509Extension::new_from_der(&oid, false, &der).unwrap())
            .unwrap();
        b.sign(key.pkey(), MessageDigest::sha256()).unwrap();
        assert!(Certificate::from_x509(b.build()).must_staple());
        assert!(der_extension(&[0x30, 0x82, 0xff], &TLS_FEATURE_OID_DER).is_none());
    }
}
