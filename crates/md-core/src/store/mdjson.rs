//! `md.json` (SPEC 3.3): a [`ManagedDomain`] plus the state the store keeps about it.
//!
//! Reading is tolerant: unknown keys (top level and inside `ca`) are kept and written back, old
//! files with only `ca.url` get it as the CA list, `transitive` may be int or bool. Writing is
//! deterministic: the C module's key order, then unknown keys in their original order.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::values::{Eab, RenewMode, RequireHttps};
use crate::config::{EnvSettings, Origin};
use crate::md::{KeySpec, ManagedDomain};
use crate::time::{Timeslice, Unit};

/// `state` of an MD (SPEC 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdState {
    /// 0: not yet assessed.
    Unknown = 0,
    /// 1: certificate(s) missing or not covering all names.
    Incomplete = 1,
    /// 2: certificates for all key specs present.
    Complete = 2,
    /// 4: an error.
    Error = 4,
    /// 5: information missing (e.g. no contact / agreement).
    MissingInformation = 5,
}

impl MdState {
    /// From the file's integer; 3 (expired, deprecated) reads as complete.
    pub fn from_i64(n: i64) -> MdState {
        match n {
            1 => MdState::Incomplete,
            2 | 3 => MdState::Complete,
            4 => MdState::Error,
            5 => MdState::MissingInformation,
            _ => MdState::Unknown,
        }
    }
}

/// md.json content.
#[derive(Debug, Clone, PartialEq)]
pub struct MdRecord {
    /// The MD's settings.
    pub md: ManagedDomain,
    /// Assessed state.
    pub state: MdState,
    /// Text explaining the state.
    pub state_descr: Option<String>,
    /// `ca.account`: local account id.
    pub ca_account: Option<String>,
    /// `ca.url`: the CA actually used.
    pub ca_url: Option<String>,
    extra: Map<String, Value>,
    ca_extra: Map<String, Value>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct CaJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agreement: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    challenges: Vec<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MdJson {
    name: String,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    contacts: Vec<String>,
    #[serde(default = "one")]
    transitive: Value,
    #[serde(default)]
    ca: CaJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    privkey: Option<Value>,
    #[serde(default)]
    state: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_descr: Option<String>,
    #[serde(default = "one")]
    renew_mode: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renew_window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warn_window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    require_https: Option<String>,
    #[serde(default)]
    must_staple: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proto: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cert_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pkey_files: Vec<String>,
    #[serde(default)]
    stapling: bool,
    #[serde(
        default,
        rename = "cmd-dns-01",
        skip_serializing_if = "Option::is_none"
    )]
    cmd_dns01: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proxy_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proxy_ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eab: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(default)]
    profile_mandatory: bool,
    #[serde(default = "yes")]
    ari_renewals: bool,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn one() -> Value {
    json!(1)
}
fn yes() -> bool {
    true
}

fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or_else(|| v.as_i64().unwrap_or(0) != 0)
}

fn spec_from_json(v: &Value) -> Result<KeySpec, String> {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("Default");
    match ty.to_ascii_lowercase().as_str() {
        "default" => Ok(KeySpec::Default),
        "rsa" => Ok(KeySpec::Rsa {
            bits: v.get("bits").and_then(Value::as_u64).unwrap_or(2048) as u32,
        }),
        "ec" => Ok(KeySpec::Ec {
            curve: v
                .get("curve")
                .and_then(Value::as_str)
                .ok_or("EC key spec without curve")?
                .to_string(),
        }),
        _ => Err(format!("unknown key type '{ty}'")),
    }
}

fn spec_to_json(s: &KeySpec) -> Value {
    match s {
        KeySpec::Default => json!({"type": "Default"}),
        KeySpec::Rsa { bits } => json!({"type": "RSA", "bits": bits}),
        KeySpec::Ec { curve } => json!({"type": "EC", "curve": curve}),
    }
}

fn renew_mode(n: i64) -> RenewMode {
    match n {
        0 => RenewMode::Manual,
        2 => RenewMode::Always,
        _ => RenewMode::Auto,
    }
}

fn window(s: &Option<String>, default: Timeslice) -> Result<Timeslice, String> {
    match s {
        None => Ok(default),
        Some(s) => Timeslice::parse(s, Unit::Days),
    }
}

impl MdRecord {
    /// A record for a freshly configured MD (state unknown).
    pub fn new(md: ManagedDomain) -> MdRecord {
        MdRecord {
            md,
            state: MdState::Unknown,
            state_descr: None,
            ca_account: None,
            ca_url: None,
            extra: Map::new(),
            ca_extra: Map::new(),
        }
    }

    /// Parse md.json.
    pub fn parse(text: &[u8]) -> Result<MdRecord, String> {
        let j: MdJson = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut private_keys = Vec::new();
        match &j.privkey {
            None => private_keys.push(KeySpec::Default),
            Some(Value::Array(a)) => {
                for v in a {
                    private_keys.push(spec_from_json(v)?);
                }
            }
            Some(v) => private_keys.push(spec_from_json(v)?),
        }
        if private_keys.is_empty() {
            private_keys.push(KeySpec::Default);
        }
        let mut ca_urls = j.ca.urls.clone();
        if ca_urls.is_empty() {
            // files before multi-CA support (2.4.16) only had the single url
            ca_urls.extend(j.ca.url.clone());
        }
        let require_https = match j.require_https.as_deref() {
            None => RequireHttps::Off,
            Some(s) => RequireHttps::parse(s)?,
        };
        let eab = match &j.eab {
            Some(v) => match (
                v.get("kid").and_then(Value::as_str),
                v.get("hmac").and_then(Value::as_str),
            ) {
                (Some(k), Some(h)) => Some(Eab::Key {
                    kid: k.into(),
                    hmac: h.into(),
                }),
                _ => None,
            },
            None => None,
        };
        let acme_tls_1 = j
            .proto
            .as_ref()
            .and_then(|p| p.get("acme-tls/1"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let own_env = EnvSettings {
            proxy_url: j.proxy_url,
            ca_certs: j.ca_certs,
            proxy_ca_certs: j.proxy_ca_certs,
            dns01_cmd: j.cmd_dns01,
        };
        let md = ManagedDomain {
            name: j.name,
            domains: j.domains,
            contacts: j.contacts,
            transitive: truthy(&j.transitive),
            ca_urls,
            ca_proto: j.ca.proto.clone().unwrap_or_else(|| "ACME".into()),
            ca_agreement: j.ca.agreement.clone(),
            ca_challenges: j.ca.challenges.clone(),
            private_keys,
            keys_explicit: j.privkey.is_some(),
            renew_mode: renew_mode(j.renew_mode.as_i64().unwrap_or(1)),
            renew_window: window(&j.renew_window, Timeslice::Percent(33))?,
            warn_window: window(&j.warn_window, Timeslice::Percent(10))?,
            require_https,
            must_staple: j.must_staple,
            stapling: j.stapling,
            cert_files: j.cert_files,
            pkey_files: j.pkey_files,
            env: own_env.clone(),
            env_own: own_env,
            eab,
            profile: j.profile,
            profile_mandatory: j.profile_mandatory,
            // ours only, from the config; never stored
            preferred_chain: None,
            ari_renewals: j.ari_renewals,
            acme_tls_1,
            origin: Origin::default(),
        };
        // keep the "proto" object's other members too
        let mut extra = j.extra;
        if let Some(Value::Object(p)) = j.proto {
            let others: Map<String, Value> =
                p.into_iter().filter(|(k, _)| k != "acme-tls/1").collect();
            if !others.is_empty() {
                extra.insert("\u{0}proto".into(), Value::Object(others));
            }
        }
        Ok(MdRecord {
            md,
            state: MdState::from_i64(j.state),
            state_descr: j.state_descr,
            ca_account: j.ca.account,
            ca_url: j.ca.url,
            extra,
            ca_extra: j.ca.extra,
        })
    }

    /// Serialize: 2-space indented, C module key order, no trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let md = &self.md;
        let mut extra = self.extra.clone();
        let mut proto = Map::new();
        proto.insert("acme-tls/1".into(), json!(self.md.acme_tls_1));
        if let Some(Value::Object(o)) = extra.remove("\u{0}proto") {
            proto.extend(o);
        }
        // the C module leaves `privkey` out when MDPrivateKeys is not set
        let privkey = match md.private_keys.as_slice() {
            [] => None,
            [KeySpec::Default] if !md.keys_explicit => None,
            [one] => Some(spec_to_json(one)),
            many => Some(Value::Array(many.iter().map(spec_to_json).collect())),
        };
        let j = MdJson {
            name: md.name.clone(),
            domains: md.domains.clone(),
            contacts: md.contacts.clone(),
            transitive: json!(if md.transitive { 1 } else { 0 }),
            ca: CaJson {
                account: self.ca_account.clone(),
                proto: Some(md.ca_proto.clone()),
                url: self.ca_url.clone(),
                urls: md.ca_urls.clone(),
                agreement: md.ca_agreement.clone(),
                challenges: md.ca_challenges.clone(),
                extra: self.ca_extra.clone(),
            },
            privkey,
            state: self.state as i64,
            state_descr: self.state_descr.clone(),
            renew_mode: json!(md.renew_mode as i64),
            renew_window: Some(md.renew_window.to_string()),
            warn_window: Some(md.warn_window.to_string()),
            require_https: md.require_https.as_json_str().map(String::from),
            must_staple: md.must_staple,
            proto: Some(Value::Object(proto)),
            cert_files: md.cert_files.clone(),
            pkey_files: md.pkey_files.clone(),
            stapling: md.stapling,
            cmd_dns01: md.env_own.dns01_cmd.clone(),
            proxy_url: md.env_own.proxy_url.clone(),
            ca_certs: md.env_own.ca_certs.clone(),
            proxy_ca_certs: md.env_own.proxy_ca_certs.clone(),
            eab: match &md.eab {
                Some(Eab::Key { kid, hmac }) => Some(json!({"kid": kid, "hmac": hmac})),
                _ => None,
            },
            profile: md.profile.clone(),
            profile_mandatory: md.profile_mandatory,
            ari_renewals: md.ari_renewals,
            extra,
        };
        super::typed::to_json_bytes(&j)
    }

    /// Take the configured settings from `md`, keep the store's state (account, CA used, state).
    /// Returns true when anything that is written to md.json changed.
    pub fn update_from_config(&mut self, md: &ManagedDomain) -> bool {
        let before = self.to_json();
        let origin = md.origin.clone();
        self.md = ManagedDomain {
            origin,
            ..md.clone()
        };
        before != self.to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C_MD_JSON: &str = r#"{
  "name": "a1.test",
  "domains": [
    "a1.test"
  ],
  "contacts": [
    "mailto:admin@anchor.test"
  ],
  "transitive": 1,
  "ca": {
    "account": "ACME-127.0.0.1-0000",
    "proto": "ACME",
    "url": "https://127.0.0.1:34000/dir",
    "urls": [
      "https://127.0.0.1:34000/dir"
    ],
    "agreement": "accepted",
    "challenges": [
      "http-01"
    ]
  },
  "privkey": [
    {
      "type": "EC",
      "curve": "secp256r1"
    },
    {
      "type": "RSA",
      "bits": 2048
    }
  ],
  "state": 2,
  "renew-mode": 1,
  "renew-window": "33%",
  "warn-window": "10%",
  "must-staple": false,
  "proto": {
    "acme-tls/1": []
  },
  "stapling": false,
  "profile-mandatory": false,
  "ari-renewals": true
}"#;

    #[test]
    fn c_module_file_round_trips_byte_exact() {
        let r = MdRecord::parse(C_MD_JSON.as_bytes()).unwrap();
        assert_eq!(r.state, MdState::Complete);
        assert_eq!(r.md.private_keys.len(), 2);
        assert_eq!(r.md.private_keys[0].file_suffix(), ".secp256r1");
        assert_eq!(r.ca_account.as_deref(), Some("ACME-127.0.0.1-0000"));
        assert_eq!(String::from_utf8(r.to_json()).unwrap(), C_MD_JSON);
    }

    #[test]
    fn tolerant_reading() {
        let old = br#"{"name":"x.org","domains":["x.org"],"transitive":true,
            "ca":{"url":"https://ca/dir","future":7},"state":3,"new-thing":{"a":1}}"#;
        let r = MdRecord::parse(old).unwrap();
        assert_eq!(r.md.ca_urls, vec!["https://ca/dir"]);
        assert_eq!(r.state, MdState::Complete);
        assert!(r.md.transitive);
        let out = String::from_utf8(r.to_json()).unwrap();
        assert!(out.contains("\"future\": 7"));
        assert!(out.ends_with("\"new-thing\": {\n    \"a\": 1\n  }\n}"));
        assert!(
            MdRecord::parse(b"{\"domains\":[]}").is_err(),
            "name is required"
        );
    }
}
