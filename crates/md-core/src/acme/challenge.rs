//! Challenge types, key authorizations and the material a responder must serve
//! (RFC 8555 §8, RFC 8737), plus selection from a preference list (SPEC 5.6).

use std::fmt;
use std::str::FromStr;

use super::{Authorization, OrderError};
use crate::crypt::{
    b64url, make_tls_alpn01_cert, sha256, Certificate, CryptError, EcCurve, KeyType, PrivateKey,
};

/// The challenge types mod_md answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeType {
    /// http-01 (RFC 8555 §8.3).
    Http01,
    /// tls-alpn-01 (RFC 8737).
    TlsAlpn01,
    /// dns-01 (RFC 8555 §8.4).
    Dns01,
}

impl ChallengeType {
    /// The ACME name.
    pub fn name(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
            ChallengeType::Dns01 => "dns-01",
        }
    }

    /// mod_md's automatic order: `tls-alpn-01, http-01, dns-01` (SPEC 5.6).
    pub const DEFAULT_PREFERENCE: [ChallengeType; 3] = [
        ChallengeType::TlsAlpn01,
        ChallengeType::Http01,
        ChallengeType::Dns01,
    ];
}

impl fmt::Display for ChallengeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChallengeType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http-01" => Ok(ChallengeType::Http01),
            "tls-alpn-01" => Ok(ChallengeType::TlsAlpn01),
            "dns-01" => Ok(ChallengeType::Dns01),
            other => Err(format!("unknown challenge type {other:?}")),
        }
    }
}

/// `token "." b64url(JWK thumbprint)` (RFC 8555 §8.1).
pub fn key_authorization(token: &str, account_key: &PrivateKey) -> Result<String, CryptError> {
    Ok(format!("{token}.{}", account_key.thumbprint()?))
}

/// The TXT record value for dns-01: b64url(SHA-256(key authorization)) (RFC 8555 §8.4).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64url(&sha256(key_authorization.as_bytes()))
}

/// What must be served so the CA can validate.
#[derive(Debug, Clone)]
pub enum ChallengeMaterial {
    /// Serve `content` (text/plain) at `http://<domain>/.well-known/acme-challenge/<token>`.
    Http01 {
        /// The key authorization.
        content: String,
    },
    /// Present `cert` (with `key`) on TLS connections negotiating ALPN `acme-tls/1` with SNI
    /// = the domain.
    TlsAlpn01 {
        /// The challenge certificate.
        cert: Certificate,
        /// Its key.
        key: PrivateKey,
    },
    /// Publish a TXT record `record_name` with `value`.
    Dns01 {
        /// `_acme-challenge.<domain>`.
        record_name: String,
        /// Record value.
        value: String,
    },
}

/// A prepared challenge: everything a responder needs, and what teardown gets back.
#[derive(Debug, Clone)]
pub struct ChallengeSetup {
    /// Type.
    pub challenge_type: ChallengeType,
    /// The identifier value (for wildcards: without `*.`).
    pub domain: String,
    /// Challenge token.
    pub token: String,
    /// Challenge URL (to respond to).
    pub challenge_url: String,
    /// Key authorization.
    pub key_authorization: String,
    /// What to serve.
    pub material: ChallengeMaterial,
}

impl ChallengeSetup {
    /// Build the material for one challenge.
    pub fn prepare(
        challenge_type: ChallengeType,
        domain: &str,
        token: &str,
        challenge_url: &str,
        account_key: &PrivateKey,
    ) -> Result<ChallengeSetup, CryptError> {
        let key_authorization = key_authorization(token, account_key)?;
        let material = match challenge_type {
            ChallengeType::Http01 => ChallengeMaterial::Http01 {
                content: key_authorization.clone(),
            },
            ChallengeType::TlsAlpn01 => {
                // A throw-away P-256 key: cheap to make, and any key type is fine for RFC 8737.
                let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256))?;
                let cert = make_tls_alpn01_cert(domain, &key_authorization, &key)?;
                ChallengeMaterial::TlsAlpn01 { cert, key }
            }
            ChallengeType::Dns01 => ChallengeMaterial::Dns01 {
                record_name: format!("_acme-challenge.{domain}"),
                value: dns01_txt_value(&key_authorization),
            },
        };
        Ok(ChallengeSetup {
            challenge_type,
            domain: domain.to_string(),
            token: token.to_string(),
            challenge_url: challenge_url.to_string(),
            key_authorization,
            material,
        })
    }

    /// The entry recorded in `order.json` `challenge-setups` for teardown (SPEC 3.5), e.g.
    /// `http-01:example.org` or `dns-01:example.org <value>`.
    pub fn record(&self) -> String {
        match &self.material {
            ChallengeMaterial::Dns01 { value, .. } => format!("dns-01:{} {value}", self.domain),
            _ => format!("{}:{}", self.challenge_type, self.domain),
        }
    }
}

/// Why a challenge was not set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// This server cannot answer the type at all (tls-alpn-01 without `acme-tls/1`, dns-01
    /// without a command): as if it were not available (a mismatch when nothing else works).
    #[error("{0}")]
    NotPossible(String),
    /// Setting it up failed (files, the dns-01 command, the challenge-setup event).
    #[error("{0}")]
    Failed(String),
}

/// Puts challenge material where the CA will look (files for httpd, TLS certs, DNS commands).
pub trait ChallengeResponder {
    /// Make the material available. An error moves on to the next challenge type.
    fn setup(&self, setup: &ChallengeSetup) -> Result<(), SetupError>;
    /// Remove it again (failures are the responder's to log).
    fn teardown(&self, setup: &ChallengeSetup);
}

/// Pick the challenge for `authz`: walk `preferences` in order and take the first type the CA
/// offers whose setup succeeds (SPEC 5.6). The setup is done when this returns `Ok`.
pub fn select_and_setup(
    authz: &Authorization,
    preferences: &[ChallengeType],
    account_key: &PrivateKey,
    responder: &dyn ChallengeResponder,
) -> Result<ChallengeSetup, OrderError> {
    let domain = &authz.identifier.value;
    let mut tried = None;
    let mut failed = false;
    for ct in preferences {
        let Some(ch) = authz
            .challenges
            .iter()
            .find(|c| c.challenge_type == ct.name())
        else {
            continue;
        };
        tried = Some(*ct);
        let setup = ChallengeSetup::prepare(*ct, domain, &ch.token, &ch.url, account_key)?;
        match responder.setup(&setup) {
            Ok(()) => return Ok(setup),
            Err(SetupError::Failed(_)) => failed = true,
            Err(SetupError::NotPossible(_)) => {}
        }
        // The responder logged why; the next offered type is tried.
    }
    let names = |v: Vec<&str>| v.join(" ");
    let offered = names(
        authz
            .challenges
            .iter()
            .map(|c| c.challenge_type.as_str())
            .collect(),
    );
    let available = names(preferences.iter().map(|c| c.name()).collect());
    // As the C module: a real setup failure is reported as such; types this server cannot
    // answer count as not available.
    let tried = tried.map(|t| t.name().to_string());
    Err(match tried {
        Some(tried) if failed => OrderError::ChallengeSetup {
            domain: domain.clone(),
            offered,
            tried,
        },
        tried => OrderError::ChallengeMismatch {
            domain: domain.clone(),
            offered,
            available,
            tried,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::{Challenge, Identifier};
    use std::cell::RefCell;

    struct Rec {
        fail: Vec<ChallengeType>,
        seen: RefCell<Vec<String>>,
    }
    impl ChallengeResponder for Rec {
        fn setup(&self, s: &ChallengeSetup) -> Result<(), SetupError> {
            self.seen.borrow_mut().push(s.record());
            if self.fail.contains(&s.challenge_type) {
                Err(SetupError::Failed("nope".into()))
            } else {
                Ok(())
            }
        }
        fn teardown(&self, _: &ChallengeSetup) {}
    }

    fn authz(types: &[&str]) -> Authorization {
        Authorization {
            url: "u".into(),
            identifier: Identifier::from_name("a.test"),
            status: "pending".into(),
            challenges: types
                .iter()
                .map(|t| Challenge {
                    challenge_type: t.to_string(),
                    url: format!("https://ca/chal/{t}"),
                    status: "pending".into(),
                    token: "TOKEN".into(),
                    error: None,
                })
                .collect(),
            wildcard: false,
        }
    }

    #[test]
    fn preference_order_and_fallback() {
        let k = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let r = Rec {
            fail: vec![ChallengeType::TlsAlpn01],
            seen: RefCell::default(),
        };
        let a = authz(&["http-01", "dns-01", "tls-alpn-01"]);
        let s = select_and_setup(&a, &ChallengeType::DEFAULT_PREFERENCE, &k, &r).unwrap();
        assert_eq!(s.challenge_type, ChallengeType::Http01);
        assert_eq!(s.challenge_url, "https://ca/chal/http-01");
        assert_eq!(
            r.seen.borrow().as_slice(),
            ["tls-alpn-01:a.test", "http-01:a.test"]
        );
        assert!(s.key_authorization.starts_with("TOKEN."));

        let e =
            select_and_setup(&authz(&["dns-01"]), &[ChallengeType::Http01], &k, &r).unwrap_err();
        assert!(matches!(e, OrderError::ChallengeMismatch { .. }));
        assert!(e.is_input_related());
        assert!(e.to_string().contains("offered 'dns-01'"));

        let r = Rec {
            fail: vec![ChallengeType::Http01],
            seen: RefCell::default(),
        };
        let e =
            select_and_setup(&authz(&["http-01"]), &[ChallengeType::Http01], &k, &r).unwrap_err();
        assert!(matches!(e, OrderError::ChallengeSetup { .. }));
        assert!(!e.is_input_related());
        // The C module's text, its word order included.
        assert_eq!(
            e.to_string(),
            "None of the offered challenge types a.test offered for domain http-01 could be \
             setup successfully. Please check the log for errors."
        );
    }

    #[test]
    fn dns_value_is_b64url_sha256() {
        // 43 chars of unpadded base64url for 32 bytes.
        let v = dns01_txt_value("tok.thumb");
        assert_eq!(v.len(), 43);
        assert!(!v.contains(['+', '/', '=']));
    }
}
