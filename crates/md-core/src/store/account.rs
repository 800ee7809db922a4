//! `account.json` (SPEC 3.5): an ACME account as the store keeps it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// account.json content. The account key is `account.pem` next to it (encrypted).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccountRecord {
    /// `valid`, `deactivated` or `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Account URL at the CA.
    #[serde(default)]
    pub url: String,
    /// The CA's directory URL.
    #[serde(default)]
    pub ca_url: String,
    /// Contact URIs.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The full account object from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Value>,
    /// Agreed terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// Orders list URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<String>,
    /// External account binding `{kid, hmac}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab: Option<Value>,
    /// Unknown members, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AccountRecord {
    /// Parse account.json.
    pub fn parse(text: &[u8]) -> Result<AccountRecord, String> {
        let a: AccountRecord = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if a.url.is_empty() {
            return Err("account has no 'url'".into());
        }
        Ok(a)
    }

    /// Serialize deterministically.
    pub fn to_json(&self) -> Vec<u8> {
        super::typed::to_json_bytes(self)
    }

    /// Usable for new orders: status valid (or unknown, as in old files).
    pub fn is_valid(&self) -> bool {
        self.status.as_deref().map_or(true, |s| s == "valid")
    }

    /// Local id for an account at `ca_url`: `ACME-<host>-<NNNN>` with the host cut to its last
    /// 16 characters (SPEC 3.1).
    pub fn id_for(ca_url: &str, n: u32) -> String {
        let rest = ca_url.split("://").nth(1).unwrap_or(ca_url);
        let hostport = rest.split('/').next().unwrap_or(rest);
        let host = if hostport.starts_with('[') {
            hostport
                .split(']')
                .next()
                .unwrap_or(hostport)
                .trim_start_matches('[')
        } else {
            hostport.split(':').next().unwrap_or(hostport)
        };
        let chars: Vec<char> = host.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(16)..].iter().collect();
        format!("ACME-{tail}-{n:04}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_round_trip() {
        assert_eq!(
            AccountRecord::id_for("https://127.0.0.1:34000/dir", 0),
            "ACME-127.0.0.1-0000"
        );
        assert_eq!(
            AccountRecord::id_for("https://acme-v02.api.letsencrypt.org/directory", 12),
            "ACME-.letsencrypt.org-0012"
        );
        let text = r#"{
  "status": "valid",
  "url": "https://127.0.0.1:34000/my-account/21c86a5530e0f487",
  "ca-url": "https://127.0.0.1:34000/dir",
  "contact": [
    "mailto:admin@anchor.test"
  ],
  "orders": "https://127.0.0.1:34000/list-orderz/21c86a5530e0f487"
}"#;
        let a = AccountRecord::parse(text.as_bytes()).unwrap();
        assert!(a.is_valid());
        assert_eq!(String::from_utf8(a.to_json()).unwrap(), text);
    }
}
