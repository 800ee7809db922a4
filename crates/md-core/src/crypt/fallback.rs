//! The self-signed fallback certificate an MD gets while it has no real one, so that mod_ssl
//! can start and answer 503 (SPEC 4.2).

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

use super::{Certificate, CryptError, PrivateKey};

/// Subject CN of fallback certificates (the C module's text, which admins recognise).
pub const FALLBACK_CN: &str = "Apache Managed Domain Fallback";
/// Lifetime of fallback certificates in days.
pub const FALLBACK_DAYS: u32 = 14;

/// A self-signed certificate for `names`: CN [`FALLBACK_CN`], SAN = the names, CA:FALSE
/// (critical), keyUsage digitalSignature (critical), serverAuth, 14 days, random 20-byte
/// serial.
pub fn make_fallback_cert(names: &[String], key: &PrivateKey) -> Result<Certificate, CryptError> {
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    // 159 random bits: 20 bytes in DER, always positive (RFC 5280 4.1.2.2).
    serial.rand(159, MsbOption::ONE, false)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    b.set_serial_number(&serial)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", FALLBACK_CN)?;
    let name = name.build();
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    let (from, until) = (
        Asn1Time::days_from_now(0)?,
        Asn1Time::days_from_now(FALLBACK_DAYS)?,
    );
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.set_pubkey(key.pkey())?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        if n.parse::<std::net::IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let san = san.build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(key.pkey(), MessageDigest::sha256())?;
    Ok(Certificate::from_x509(b.build()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{EcCurve, KeyType};

    #[test]
    fn fallback_cert_shape() {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let names = vec!["a.test".to_string(), "*.a.test".into()];
        let cert = make_fallback_cert(&names, &key).unwrap();
        assert!(cert.matches_key(&key));
        assert_eq!(cert.alt_names(), names);
        let text = String::from_utf8(cert.x509().to_text().unwrap()).unwrap();
        assert!(
            text.contains("Issuer: CN=Apache Managed Domain Fallback"),
            "{text}"
        );
        assert!(text.contains("CA:FALSE") && text.contains("TLS Web Server Authentication"));
        let days = (cert.not_after() - cert.not_before()).num_days();
        assert_eq!(days, 14);
        assert_eq!(cert.x509().serial_number().to_bn().unwrap().num_bytes(), 20);
    }
}
