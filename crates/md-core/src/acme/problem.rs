//! ACME problem documents (RFC 7807, RFC 8555 §6.7) kept typed, with classification.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Identifier;

/// Namespace of ACME error types (RFC 8555 §6.7).
pub const ACME_ERROR_NS: &str = "urn:ietf:params:acme:error:";

/// How long to wait before retrying after a problem caused by our input (mod_md backs off for a
/// day: retrying sooner cannot succeed until an admin changes something).
pub const INPUT_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// ACME error types that mean the request (config, CSR, contact, identifiers) is at fault.
const INPUT_RELATED: &[&str] = &[
    "agreementRequired",
    "badCSR",
    "badSignatureAlgorithm",
    "externalAccountRequired",
    "invalidContact",
    "unsupportedContact",
    "malformed",
    "rejectedIdentifier",
    "unsupportedIdentifier",
    "userActionRequired",
    "badRevocationReason",
];

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Problem {
    /// The type URI, e.g. `urn:ietf:params:acme:error:rejectedIdentifier`.
    #[serde(rename = "type", default)]
    pub problem_type: String,
    /// Human readable explanation from the CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// HTTP status the CA put in the document (or the response status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Per-identifier problems (RFC 8555 §6.7.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Subproblem>,
}

/// A subproblem: a problem about one identifier of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Subproblem {
    /// Type URI.
    #[serde(rename = "type", default)]
    pub problem_type: String,
    /// Explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The identifier this is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

fn short(t: &str) -> &str {
    t.strip_prefix(ACME_ERROR_NS).unwrap_or(t)
}

impl Problem {
    /// Parse a problem document body; `None` when it is not JSON with a `type`.
    pub fn from_json(body: &[u8]) -> Option<Problem> {
        let p: Problem = serde_json::from_slice(body).ok()?;
        (!p.problem_type.is_empty()).then_some(p)
    }

    /// The ACME error name without the URN prefix, e.g. `badNonce`; other URIs unchanged.
    pub fn kind(&self) -> &str {
        short(&self.problem_type)
    }

    /// The APR status the C module gives this problem type (its table in md_acme.c; any
    /// other type is APR_EGENERAL).
    pub fn apr_status(&self) -> crate::apr::AprStatus {
        use crate::apr::AprStatus as S;
        const TABLE: &[(&str, S)] = &[
            ("badCSR", S::EINVAL),
            ("badNonce", S::EAGAIN),
            ("badSignatureAlgorithm", S::EINVAL),
            ("externalAccountRequired", S::EINVAL),
            ("invalidContact", S::BADARG),
            ("unsupportedContact", S::EGENERAL),
            ("malformed", S::EINVAL),
            ("rateLimited", S::BADARG),
            ("rejectedIdentifier", S::BADARG),
            ("serverInternal", S::EGENERAL),
            ("unauthorized", S::EACCES),
            ("unsupportedIdentifier", S::BADARG),
            ("userActionRequired", S::EAGAIN),
            ("badRevocationReason", S::EINVAL),
        ];
        TABLE
            .iter()
            .find(|(k, _)| self.kind().eq_ignore_ascii_case(k))
            .map_or(S::EGENERAL, |(_, s)| *s)
    }

    /// True for the given short ACME error name.
    pub fn is(&self, kind: &str) -> bool {
        self.kind() == kind
    }

    /// Our input (configuration, CSR, contacts, identifiers) is at fault: retrying without a
    /// change cannot help, so back off for [`INPUT_BACKOFF`].
    pub fn is_input_related(&self) -> bool {
        INPUT_RELATED.contains(&self.kind())
    }

    /// The CA limits our request rate (`rateLimited`).
    pub fn is_rate_limited(&self) -> bool {
        self.is("rateLimited")
    }

    /// A retry after a short wait may succeed: nonce trouble, server errors, rate limits.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), "badNonce" | "serverInternal" | "rateLimited")
            || self.status.is_some_and(|s| s >= 500)
    }

    /// Back-off suggestion from the problem type alone.
    pub fn suggested_backoff(&self) -> Option<Duration> {
        self.is_input_related().then_some(INPUT_BACKOFF)
    }

    /// Identifiers named in subproblems.
    pub fn identifiers(&self) -> Vec<&Identifier> {
        self.subproblems
            .iter()
            .filter_map(|s| s.identifier.as_ref())
            .collect()
    }
}

impl Subproblem {
    /// The ACME error name without the URN prefix.
    pub fn kind(&self) -> &str {
        short(&self.problem_type)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.problem_type)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        for s in &self.subproblems {
            write!(f, "; {}", s.kind())?;
            if let Some(i) = &s.identifier {
                write!(f, " [{}:{}]", i.id_type, i.value)?;
            }
            if let Some(d) = &s.detail {
                write!(f, ": {d}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_with_subproblems() {
        let body = br#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no",
            "status":400,"subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier",
            "detail":"blocked","identifier":{"type":"dns","value":"evil.test"}}]}"#;
        let p = Problem::from_json(body).unwrap();
        assert_eq!(p.kind(), "rejectedIdentifier");
        assert!(p.is_input_related());
        assert!(!p.is_transient());
        assert_eq!(p.suggested_backoff(), Some(INPUT_BACKOFF));
        assert_eq!(p.identifiers()[0].value, "evil.test");
        assert!(p.to_string().contains("[dns:evil.test]"));
    }

    #[test]
    fn classification() {
        let p = |t: &str| Problem {
            problem_type: format!("{ACME_ERROR_NS}{t}"),
            ..Default::default()
        };
        assert!(p("rateLimited").is_rate_limited());
        assert!(p("rateLimited").is_transient());
        assert!(p("badNonce").is_transient());
        assert!(p("badCSR").is_input_related());
        assert!(!p("serverInternal").is_input_related());
        assert!(Problem::from_json(b"{}").is_none());
        assert!(Problem::from_json(b"<html>").is_none());
    }
}
