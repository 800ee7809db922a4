//! ACME accounts (RFC 8555 §7.3): register, find, fetch/validate, deactivate.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::client::parse_json;
use super::jws::{self, KeyRef};
use super::{AccountError, AcmeClient, RequestError};
use crate::crypt::{b64url_decode, PrivateKey};
use crate::http::HttpResponse;

/// External Account Binding credentials as configured (MDExternalAccountBinding) and stored in
/// `account.json` (`eab` {kid, hmac}).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EabCredentials {
    /// Key identifier issued by the CA.
    pub kid: String,
    /// MAC key issued by the CA, base64url.
    pub hmac: String,
}

/// An account as mod_md stores it in `account.json` (SPEC 3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// `valid`, `deactivated` or `revoked` (RFC 8555 §7.1.2).
    pub status: String,
    /// Account URL (the `kid` of all later requests).
    pub url: String,
    /// Directory URL of the CA.
    #[serde(rename = "ca-url")]
    pub ca_url: String,
    /// Contact URIs.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The full account object the CA returned.
    #[serde(default)]
    pub registration: Value,
    /// Terms of service accepted (URL or `accepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// The account's orders URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<String>,
    /// EAB used to register, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab: Option<EabCredentials>,
}

impl Account {
    /// True when the CA considers the account usable.
    pub fn is_valid(&self) -> bool {
        self.status == "valid"
    }
}

/// The account key and URL: what signs every request after registration.
#[derive(Debug, Clone)]
pub struct AccountKey {
    /// Private key (mod_md: RSA 3072).
    pub key: PrivateKey,
    /// Account URL.
    pub url: String,
}

impl AccountKey {
    /// Pair a key with its account URL.
    pub fn new(key: PrivateKey, url: impl Into<String>) -> Self {
        AccountKey {
            key,
            url: url.into(),
        }
    }

    pub(crate) fn key_ref(&self) -> KeyRef<'_> {
        KeyRef::Kid(&self.url)
    }
}

/// What to register with.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    /// Contacts; plain addresses get `mailto:` prepended.
    pub contacts: Vec<String>,
    /// Accepted terms of service (MDCertificateAgreement: `accepted` or a URL); `None` means
    /// none accepted.
    pub agreement: Option<String>,
    /// External Account Binding.
    pub eab: Option<EabCredentials>,
}

/// `admin@example.org` → `mailto:admin@example.org`; URIs stay as they are.
pub fn normalize_contact(c: &str) -> String {
    let c = c.trim();
    if c.contains(':') {
        c.to_string()
    } else {
        format!("mailto:{c}")
    }
}

fn account_from(
    url: String,
    ca_url: &str,
    resp: &HttpResponse,
    req_url: &str,
) -> Result<Account, RequestError> {
    let reg: Value = parse_json(req_url, resp)?;
    if !reg.is_object() {
        return Err(RequestError::BadResponse {
            url: req_url.to_string(),
            message: "account is not a JSON object".into(),
        });
    }
    Ok(Account {
        status: reg
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("valid")
            .to_string(),
        contact: reg
            .get("contact")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        orders: reg
            .get("orders")
            .and_then(Value::as_str)
            .map(str::to_string),
        url,
        ca_url: ca_url.to_string(),
        registration: reg,
        agreement: None,
        eab: None,
    })
}

impl AcmeClient {
    /// Register a new account for `key` (RFC 8555 §7.3). Requires a contact, and an agreement
    /// when the CA has terms of service.
    pub fn register_account(
        &self,
        key: &PrivateKey,
        new: &NewAccount,
    ) -> Result<Account, AccountError> {
        let dir = self.directory();
        if new.contacts.iter().all(|c| c.trim().is_empty()) {
            return Err(AccountError::NoContact);
        }
        let contacts: Vec<String> = new
            .contacts
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| normalize_contact(c))
            .collect();
        let mut payload = json!({ "contact": contacts });
        if let Some(tos) = &dir.terms_of_service {
            if new.agreement.is_none() {
                return Err(AccountError::AgreementRequired { tos: tos.clone() });
            }
            payload["termsOfServiceAgreed"] = true.into();
        }
        if let Some(eab) = &new.eab {
            let mac = b64url_decode(&eab.hmac).ok_or(AccountError::EabHmacInvalid)?;
            payload["externalAccountBinding"] =
                jws::sign_eab(key, &eab.kid, &mac, &dir.new_account)?;
        }
        let url = &dir.new_account;
        let resp = self.post(url, key, KeyRef::Jwk, Some(&payload))?;
        let loc = resp
            .header("Location")
            .map(str::to_string)
            .ok_or_else(|| AccountError::NoLocation { url: url.clone() })?;
        let mut acct = account_from(loc, &dir.url, &resp, url)?;
        acct.agreement = new.agreement.clone();
        acct.eab = new.eab.clone();
        Ok(acct)
    }

    /// Look up the account of `key` without creating one (`onlyReturnExisting`, RFC 8555
    /// §7.3.1). `Ok(None)` when the CA knows no account for it.
    pub fn find_account(&self, key: &PrivateKey) -> Result<Option<Account>, AccountError> {
        let dir = self.directory();
        let url = &dir.new_account;
        let payload = json!({"onlyReturnExisting": true});
        match self.post(url, key, KeyRef::Jwk, Some(&payload)) {
            Ok(resp) => {
                let loc = resp
                    .header("Location")
                    .map(str::to_string)
                    .ok_or_else(|| AccountError::NoLocation { url: url.clone() })?;
                Ok(Some(account_from(loc, &dir.url, &resp, url)?))
            }
            Err(e) if e.problem().is_some_and(|p| p.is("accountDoesNotExist")) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetch the account (POST-as-GET on its URL) and require status `valid`. When the CA
    /// refuses because terms were not agreed (mod_md: EINVAL) and `agreement` is set, agree by
    /// POSTing `termsOfServiceAgreed` (SPEC 5.4).
    pub fn validate_account(
        &self,
        acct: &AccountKey,
        agreement: Option<&str>,
    ) -> Result<Account, AccountError> {
        let mut r = self.post(&acct.url, &acct.key, acct.key_ref(), None);
        if let (Err(e), Some(_)) = (&r, agreement) {
            if e.is_input_related() && self.directory().terms_of_service.is_some() {
                let p = json!({"termsOfServiceAgreed": true});
                r = self.post(&acct.url, &acct.key, acct.key_ref(), Some(&p));
            }
        }
        let resp = r?;
        let mut a = account_from(acct.url.clone(), &self.directory().url, &resp, &acct.url)?;
        a.agreement = agreement.map(str::to_string);
        if !a.is_valid() {
            return Err(AccountError::NotValid {
                url: a.url,
                status: a.status,
            });
        }
        Ok(a)
    }

    /// Deactivate the account (RFC 8555 §7.3.6).
    pub fn deactivate_account(&self, acct: &AccountKey) -> Result<Account, AccountError> {
        let p = json!({"status": "deactivated"});
        let resp = self.post(&acct.url, &acct.key, acct.key_ref(), Some(&p))?;
        Ok(account_from(
            acct.url.clone(),
            &self.directory().url,
            &resp,
            &acct.url,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_get_mailto() {
        assert_eq!(normalize_contact("a@b.test"), "mailto:a@b.test");
        assert_eq!(normalize_contact("mailto:a@b.test"), "mailto:a@b.test");
    }

    #[test]
    fn account_json_shape() {
        let a = Account {
            status: "valid".into(),
            url: "https://ca/acct/1".into(),
            ca_url: "https://ca/dir".into(),
            contact: vec!["mailto:a@b.test".into()],
            registration: json!({"status":"valid"}),
            agreement: Some("accepted".into()),
            orders: None,
            eab: Some(EabCredentials {
                kid: "k".into(),
                hmac: "h".into(),
            }),
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["ca-url"], "https://ca/dir");
        assert_eq!(v["eab"]["kid"], "k");
        assert!(v.get("orders").is_none());
        let back: Account = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }
}
