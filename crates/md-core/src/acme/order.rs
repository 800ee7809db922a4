//! Orders, authorizations and challenges (RFC 8555 §7.1.3-7.1.5, §7.4, §7.5).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::client::{parse_json, retry_after_of};
use super::{AccountKey, AcmeClient, OrderError, Problem, RequestError};
use crate::crypt::b64url;

/// An identifier in an order: `dns` (RFC 8555 §9.7.7) or `ip` (RFC 8738).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// `dns` or `ip`.
    #[serde(rename = "type")]
    pub id_type: String,
    /// The name or address.
    pub value: String,
}

impl Identifier {
    /// `ip` for IPv4/IPv6 literals (RFC 8738 §3), else `dns`.
    pub fn from_name(name: &str) -> Identifier {
        let id_type = if name.parse::<IpAddr>().is_ok() {
            "ip"
        } else {
            "dns"
        };
        Identifier {
            id_type: id_type.to_string(),
            value: name.to_string(),
        }
    }
}

/// An order object (RFC 8555 §7.1.3) with its URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order URL (from `Location`; not part of the object itself).
    #[serde(default)]
    pub url: String,
    /// pending, ready, processing, valid, invalid.
    pub status: String,
    /// Identifiers.
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    /// Authorization URLs.
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// Finalize URL.
    #[serde(default)]
    pub finalize: String,
    /// Certificate URL, once valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Why the order is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// Expiry (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Profile (draft-ietf-acme-profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A challenge object (RFC 8555 §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// `http-01`, `tls-alpn-01`, `dns-01`, ...
    #[serde(rename = "type")]
    pub challenge_type: String,
    /// Challenge URL.
    pub url: String,
    /// pending, processing, valid, invalid.
    #[serde(default)]
    pub status: String,
    /// Token (absent for unknown types).
    #[serde(default)]
    pub token: String,
    /// Validation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// An authorization object (RFC 8555 §7.1.4) with its URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorization {
    /// Authorization URL.
    #[serde(default)]
    pub url: String,
    /// The identifier (without `*.` for wildcards).
    pub identifier: Identifier,
    /// pending, valid, invalid, deactivated, expired, revoked.
    pub status: String,
    /// Offered challenges.
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    /// True for a wildcard name.
    #[serde(default)]
    pub wildcard: bool,
}

impl Authorization {
    /// The first challenge error, for reporting why it is invalid.
    pub fn problem(&self) -> Option<&Problem> {
        self.challenges.iter().find_map(|c| c.error.as_ref())
    }
}

/// What to order.
#[derive(Debug, Clone, Default)]
pub struct NewOrder {
    /// Identifiers (see [`Identifier::from_name`]).
    pub identifiers: Vec<Identifier>,
    /// CA profile to use (MDProfile), if the CA offers profiles.
    pub profile: Option<String>,
    /// ARI id of the certificate this one replaces (RFC 9773 §5).
    pub replaces: Option<String>,
}

impl AcmeClient {
    fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        acct: &AccountKey,
        url: &str,
    ) -> Result<(T, Option<Duration>), RequestError> {
        let resp = self.post(url, &acct.key, acct.key_ref(), None)?;
        Ok((parse_json(url, &resp)?, retry_after_of(&resp)))
    }

    /// Create an order (RFC 8555 §7.4).
    pub fn new_order(&self, acct: &AccountKey, new: &NewOrder) -> Result<Order, OrderError> {
        let url = &self.directory().new_order;
        let mut payload = json!({ "identifiers": new.identifiers });
        if let Some(p) = &new.profile {
            payload["profile"] = p.as_str().into();
        }
        if let Some(r) = &new.replaces {
            payload["replaces"] = r.as_str().into();
        }
        let resp = self.post(url, &acct.key, acct.key_ref(), Some(&payload))?;
        let mut order: Order = parse_json(url, &resp)?;
        order.url = resp.header("Location").map(str::to_string).ok_or_else(|| {
            RequestError::BadResponse {
                url: url.clone(),
                message: "no Location for order".into(),
            }
        })?;
        Ok(order)
    }

    /// Fetch an order (POST-as-GET).
    pub fn get_order(&self, acct: &AccountKey, url: &str) -> Result<Order, OrderError> {
        let (mut o, _): (Order, _) = self.fetch(acct, url)?;
        o.url = url.to_string();
        Ok(o)
    }

    /// Fetch an authorization (POST-as-GET).
    pub fn get_authorization(
        &self,
        acct: &AccountKey,
        url: &str,
    ) -> Result<Authorization, OrderError> {
        let (mut a, _): (Authorization, _) = self.fetch(acct, url)?;
        a.url = url.to_string();
        Ok(a)
    }

    /// Tell the CA the challenge is ready to be validated: POST `{}` (RFC 8555 §7.5.1).
    pub fn respond_challenge(&self, acct: &AccountKey, url: &str) -> Result<(), OrderError> {
        self.post(url, &acct.key, acct.key_ref(), Some(&json!({})))?;
        Ok(())
    }

    /// Poll `url` until `done` says so, with the client's backoff and deadline. A
    /// `Retry-After` on a poll response sets the next wait (RFC 8555 §7.5.1 and §7.4).
    fn poll<T: serde::de::DeserializeOwned>(
        &self,
        acct: &AccountKey,
        url: &str,
        what: &'static str,
        mut done: impl FnMut(&T) -> Result<bool, OrderError>,
    ) -> Result<T, OrderError> {
        let policy = self.options().poll;
        let start = Instant::now();
        let mut wait = policy.initial;
        loop {
            let (item, retry_after) = self.fetch::<T>(acct, url)?;
            if done(&item)? {
                return Ok(item);
            }
            let elapsed = start.elapsed();
            if elapsed >= policy.deadline {
                return Err(OrderError::Timeout {
                    what,
                    url: url.to_string(),
                });
            }
            let next = retry_after.unwrap_or(wait).min(policy.deadline - elapsed);
            std::thread::sleep(next);
            wait = wait.saturating_mul(2).min(policy.max);
        }
    }

    /// Wait until the authorization is `valid`; `invalid` (or other final states) is an error
    /// carrying the challenge's problem.
    pub fn await_authorization(
        &self,
        acct: &AccountKey,
        url: &str,
    ) -> Result<Authorization, OrderError> {
        let mut a: Authorization = self.poll(acct, url, "authorization", |a: &Authorization| {
            match a.status.as_str() {
                "valid" => Ok(true),
                "pending" => Ok(false),
                _ => Err(OrderError::AuthorizationInvalid {
                    domain: a.identifier.value.clone(),
                    problem: a.problem().cloned(),
                }),
            }
        })?;
        a.url = url.to_string();
        Ok(a)
    }

    /// Wait until the order reaches one of `states` (e.g. `ready`, `valid`); `invalid` is an
    /// error with the order's problem.
    pub fn await_order(
        &self,
        acct: &AccountKey,
        url: &str,
        states: &[&str],
    ) -> Result<Order, OrderError> {
        let mut o: Order = self.poll(acct, url, "order", |o: &Order| {
            if states.contains(&o.status.as_str()) {
                Ok(true)
            } else if o.status == "invalid" {
                Err(OrderError::OrderInvalid {
                    url: url.to_string(),
                    problem: o.error.clone(),
                })
            } else {
                Ok(false)
            }
        })?;
        o.url = url.to_string();
        Ok(o)
    }

    /// Finalize with a DER CSR (RFC 8555 §7.4): POST `{"csr": b64url}` to the finalize URL.
    pub fn finalize_order(
        &self,
        acct: &AccountKey,
        order: &Order,
        csr_der: &[u8],
    ) -> Result<Order, OrderError> {
        let payload = json!({ "csr": b64url(csr_der) });
        let resp = self.post(&order.finalize, &acct.key, acct.key_ref(), Some(&payload))?;
        let mut o: Order = parse_json(&order.finalize, &resp)?;
        o.url = order.url.clone();
        Ok(o)
    }

    /// Deactivate an authorization (RFC 8555 §7.5.2), e.g. to release a failed one.
    pub fn deactivate_authorization(&self, acct: &AccountKey, url: &str) -> Result<(), OrderError> {
        let p: Value = json!({"status": "deactivated"});
        self.post(url, &acct.key, acct.key_ref(), Some(&p))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(Identifier::from_name("a.test").id_type, "dns");
        assert_eq!(Identifier::from_name("127.0.0.1").id_type, "ip");
        assert_eq!(Identifier::from_name("::1").id_type, "ip");
        let v = serde_json::to_value(Identifier::from_name("a.test")).unwrap();
        assert_eq!(v, json!({"type":"dns","value":"a.test"}));
    }

    #[test]
    fn order_parses_pebble_shape() {
        let o: Order = serde_json::from_value(json!({
            "status":"pending","expires":"2026-11-25T10:00:00Z",
            "identifiers":[{"type":"dns","value":"a.test"}],
            "finalize":"https://ca/finalize/1","authorizations":["https://ca/authz/1"]}))
        .unwrap();
        assert_eq!(o.authorizations.len(), 1);
        assert!(o.certificate.is_none());
    }
}
