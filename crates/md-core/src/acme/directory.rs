//! The ACME directory (RFC 8555 §7.1.1).

use std::collections::BTreeMap;

use serde_json::Value;

use super::DirectoryError;

/// The resources and metadata a CA announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// URL the directory was fetched from.
    pub url: String,
    /// newNonce resource.
    pub new_nonce: String,
    /// newAccount resource.
    pub new_account: String,
    /// newOrder resource.
    pub new_order: String,
    /// revokeCert resource.
    pub revoke_cert: Option<String>,
    /// keyChange resource.
    pub key_change: Option<String>,
    /// renewalInfo resource (ARI, RFC 9773).
    pub renewal_info: Option<String>,
    /// meta.termsOfService.
    pub terms_of_service: Option<String>,
    /// meta.website.
    pub website: Option<String>,
    /// meta.externalAccountRequired.
    pub external_account_required: bool,
    /// meta.profiles: name → description.
    pub profiles: BTreeMap<String, String>,
}

impl Directory {
    /// A directory with no resources yet, before the document has been fetched.
    pub(crate) fn unfetched(url: &str) -> Directory {
        Directory {
            url: url.to_string(),
            new_nonce: String::new(),
            new_account: String::new(),
            new_order: String::new(),
            revoke_cert: None,
            key_change: None,
            renewal_info: None,
            terms_of_service: None,
            website: None,
            external_account_required: false,
            profiles: BTreeMap::new(),
        }
    }

    /// Interpret a directory document fetched from `url`.
    pub fn parse(url: &str, body: &[u8]) -> Result<Directory, DirectoryError> {
        let unknown = || DirectoryError::Unknown {
            url: url.to_string(),
        };
        let v: Value = serde_json::from_slice(body).map_err(|_| DirectoryError::NotJson {
            url: url.to_string(),
        })?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match (s("newAccount"), s("newOrder"), s("newNonce")) {
            (Some(new_account), Some(new_order), Some(new_nonce)) => {
                let meta = v.get("meta");
                let m = |k: &str| meta.and_then(|m| m.get(k));
                let profiles = m("profiles")
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Directory {
                    url: url.to_string(),
                    new_nonce,
                    new_account,
                    new_order,
                    revoke_cert: s("revokeCert"),
                    key_change: s("keyChange"),
                    renewal_info: s("renewalInfo"),
                    terms_of_service: m("termsOfService").and_then(Value::as_str).map(Into::into),
                    website: m("website").and_then(Value::as_str).map(Into::into),
                    external_account_required: m("externalAccountRequired")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    profiles,
                })
            }
            // ACMEv1 (draft) directories name their resources with dashes.
            _ if v.get("new-authz").is_some() || v.get("new-reg").is_some() => {
                Err(DirectoryError::AcmeV1 {
                    url: url.to_string(),
                })
            }
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_with_meta() {
        let d = Directory::parse(
            "https://ca/dir",
            br#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r","keyChange":"k",
               "renewalInfo":"ri","meta":{"termsOfService":"https://ca/tos",
               "externalAccountRequired":true,"profiles":{"default":"d","shortlived":"s"}}}"#,
        )
        .unwrap();
        assert_eq!(d.new_order, "o");
        assert_eq!(d.renewal_info.as_deref(), Some("ri"));
        assert_eq!(d.terms_of_service.as_deref(), Some("https://ca/tos"));
        assert!(d.external_account_required);
        assert_eq!(d.profiles.len(), 2);
    }

    #[test]
    fn v1_and_unknown() {
        let e = Directory::parse("u", br#"{"new-authz":"x","new-reg":"y"}"#).unwrap_err();
        assert!(matches!(e, DirectoryError::AcmeV1 { .. }));
        assert!(e.to_string().contains("version 1"));
        assert!(e.to_string().contains("no longer supported"));
        // Not JSON at all (garbled, cut short, an error page): the C module's text, retried
        // with the normal backoff as the C module does.
        let e = Directory::parse("u", b"<html>").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Unable to understand ACME server response"));
        assert!(!e.is_input_related() && e.is_retryable());
        // JSON, but no ACMEv2 directory: a wrong URL, the day-long input backoff.
        let e = Directory::parse("u", br#"{"newOrder":"o"}"#).unwrap_err();
        assert!(matches!(e, DirectoryError::Unknown { .. }));
        assert!(e.is_input_related() && !e.is_retryable());
    }
}
