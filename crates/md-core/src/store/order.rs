//! `order.json` (SPEC 3.5): the ACME order a staging run is working on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// order.json content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OrderRecord {
    /// Order URL.
    #[serde(default)]
    pub url: String,
    /// pending / ready / processing / valid / invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Authorization URLs.
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// Challenges set up (`http-01:example.org`, `dns-01:example.org <token>`), for teardown.
    #[serde(default)]
    pub challenge_setups: Vec<String>,
    /// Finalize URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize: Option<String>,
    /// Certificate URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Unknown members, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OrderRecord {
    /// Parse order.json.
    pub fn parse(text: &[u8]) -> Result<OrderRecord, String> {
        serde_json::from_slice(text).map_err(|e| e.to_string())
    }

    /// Serialize deterministically.
    pub fn to_json(&self) -> Vec<u8> {
        super::typed::to_json_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_members_survive() {
        let text =
            br#"{"url":"https://ca/o/1","status":"pending","authorizations":["https://ca/a/1"],
            "challenge-setups":["http-01:a.org"],"finalize":"https://ca/f/1","x-new":[1]}"#;
        let o = OrderRecord::parse(text).unwrap();
        assert_eq!(o.challenge_setups, vec!["http-01:a.org"]);
        let out = String::from_utf8(o.to_json()).unwrap();
        assert!(
            out.contains("\"challenge-setups\": [\n    \"http-01:a.org\"\n  ]"),
            "{out}"
        );
        assert!(out.ends_with("\"x-new\": [\n    1\n  ]\n}"), "{out}");
        assert_eq!(OrderRecord::parse(out.as_bytes()).unwrap(), o);
    }

    /// Found by tests/fuzz_parsers.rs: without serde_json's `float_roundtrip` these floats in
    /// unknown members read back 1 ulp off, so a rewrite changed the file.
    #[test]
    fn unknown_floats_survive_exactly() {
        let text =
            br#"{"x": [5.387267322100626e+96, -9.085481921739938e-194, 5.026418286312893e-190]}"#;
        let o = OrderRecord::parse(text).unwrap();
        let out = o.to_json();
        let back = OrderRecord::parse(&out).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.to_json(), out);
    }
}
