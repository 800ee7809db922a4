//! `md_store.json` (store version + key) and `httpd.json` (reachability), SPEC 3.1/3.2.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

/// The store format this code writes.
pub const STORE_VERSION: f64 = 3.0;
/// Length of the store secret in bytes.
pub const SECRET_LEN: usize = 48;

/// Contents of md_store.json.
#[derive(Clone, PartialEq)]
pub struct StoreMeta {
    /// Format version found (1, 2 or 3).
    pub version: f64,
    /// The raw secret bytes: the pass phrase of encrypted keys.
    pub secret: Vec<u8>,
    /// The file as read, so unknown keys survive a rewrite.
    raw: Map<String, Value>,
}

impl std::fmt::Debug for StoreMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the secret
        f.debug_struct("StoreMeta")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl StoreMeta {
    /// A fresh store: current version and 48 random bytes.
    pub fn generate() -> Result<StoreMeta, String> {
        let mut secret = vec![0u8; SECRET_LEN];
        openssl::rand::rand_bytes(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
        Ok(StoreMeta {
            version: STORE_VERSION,
            secret,
            raw: Map::new(),
        })
    }

    /// Parse the file. Version: `store.version`, else the v2 top-level `version`, else 1.
    pub fn parse(text: &[u8]) -> Result<StoreMeta, String> {
        let v: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let Value::Object(raw) = v else {
            return Err("not a JSON object".into());
        };
        let version = raw
            .get("store")
            .and_then(|s| s.get("version"))
            .or_else(|| raw.get("version"))
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let key = raw
            .get("key")
            .and_then(Value::as_str)
            .ok_or("no 'key' member")?;
        let secret = URL_SAFE_NO_PAD
            .decode(key.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(key))
            .map_err(|e| format!("'key' is not base64url: {e}"))?;
        if secret.is_empty() {
            return Err("'key' is empty".into());
        }
        Ok(StoreMeta {
            version,
            secret,
            raw,
        })
    }

    /// Serialize at the current version (drops the v2 top-level `version`).
    pub fn to_json(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("store".into(), json!({ "version": STORE_VERSION }));
        m.insert(
            "key".into(),
            Value::String(URL_SAFE_NO_PAD.encode(&self.secret)),
        );
        for (k, v) in &self.raw {
            if !matches!(k.as_str(), "store" | "key" | "version") {
                m.insert(k.clone(), v.clone());
            }
        }
        super::typed::to_json_bytes(&Value::Object(m))
    }
}

/// `httpd.json`: whether the server is reachable on (mapped) ports 80 and 443.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpdReachability {
    /// Port 80 reachable.
    pub http: bool,
    /// Port 443 reachable.
    pub https: bool,
}

impl Default for HttpdReachability {
    fn default() -> Self {
        HttpdReachability {
            http: true,
            https: true,
        }
    }
}

impl HttpdReachability {
    /// Parse `{"proto":{"http":bool,"https":bool}}`; missing members are true.
    pub fn parse(text: &[u8]) -> Option<HttpdReachability> {
        let v: Value = serde_json::from_slice(text).ok()?;
        let p = v.get("proto")?.as_object()?;
        let get = |k: &str| p.get(k).map(|x| x.as_bool()).unwrap_or(Some(true));
        Some(HttpdReachability {
            http: get("http")?,
            https: get("https")?,
        })
    }

    /// The file content.
    pub fn to_json(self) -> Vec<u8> {
        super::typed::to_json_bytes(&json!({"proto": {"http": self.http, "https": self.https}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_versions() {
        let m = StoreMeta::generate().unwrap();
        let text = m.to_json();
        let s = String::from_utf8(text.clone()).unwrap();
        assert!(s.starts_with("{\n  \"store\": {\n    \"version\": 3.0\n  },\n  \"key\": \""));
        assert_eq!(s.len() - s.rfind("\"key\": \"").unwrap(), 8 + 64 + 3);
        let back = StoreMeta::parse(&text).unwrap();
        assert_eq!(back.secret, m.secret);
        assert_eq!(back.version, 3.0);
        let v2 = StoreMeta::parse(br#"{"version": 2.0, "store": {}, "key": "AAAA"}"#).unwrap();
        assert_eq!(v2.version, 2.0);
        assert!(!String::from_utf8(v2.to_json())
            .unwrap()
            .contains("\n  \"version\""));
        assert!(StoreMeta::parse(b"{\"store\":").is_err());
        assert!(StoreMeta::parse(b"{\"store\":{\"version\":3.0}}").is_err());
    }

    #[test]
    fn httpd_json() {
        let r = HttpdReachability {
            http: false,
            https: true,
        };
        assert_eq!(HttpdReachability::parse(&r.to_json()), Some(r));
        assert_eq!(HttpdReachability::parse(b"garbage"), None);
    }
}
