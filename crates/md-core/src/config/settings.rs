//! What the directives set: per-server and per-MD settings, module-wide settings and the MD
//! definitions, and [`ModConfig::apply`], which runs one directive.

use std::time::Duration;

use super::directives::{self, Place};
use super::values::{
    self, parse_on_off, parse_private_keys, parse_store_locks, Eab, MatchNames, PortMap, RenewMode,
    RequireHttps,
};
use crate::md::KeySpec;
use crate::time::{parse_duration, Timeslice, Unit};

/// Where a directive was written: httpd's file name and line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Config file name.
    pub file: String,
    /// Line number.
    pub line: u32,
}

/// Settings that an `<MDomain>` section, the main server or a `<VirtualHost>` can make.
/// `None` = not set here. An MD takes its section's value, else the main server's, else the
/// default; vhost values matter only for a few fallbacks (contact, stapling of others).
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(missing_docs)]
pub struct Settings {
    pub ca_urls: Option<Vec<String>>,
    pub ca_proto: Option<String>,
    pub ca_agreement: Option<String>,
    pub contact: Option<String>,
    pub eab: Option<Eab>,
    pub ca_challenges: Option<Vec<String>>,
    pub profile: Option<String>,
    pub profile_mandatory: Option<bool>,
    pub renew_mode: Option<RenewMode>,
    pub renew_window: Option<Timeslice>,
    pub warn_window: Option<Timeslice>,
    pub ari_renewals: Option<bool>,
    pub private_keys: Option<Vec<KeySpec>>,
    pub must_staple: Option<bool>,
    pub require_https: Option<RequireHttps>,
    pub stapling: Option<bool>,
    pub staple_others: Option<bool>,
    /// MDMembers: true = auto (add vhost names), false = manual.
    pub transitive: Option<bool>,
}

macro_rules! merge_fields {
    ($base:expr, $add:expr, $($f:ident),*) => {
        Settings { $($f: $add.$f.clone().or_else(|| $base.$f.clone()),)* }
    };
}

impl Settings {
    /// `add` overrides `base` field by field (vhost config over main server config).
    pub fn merge(base: &Settings, add: &Settings) -> Settings {
        merge_fields!(
            base,
            add,
            ca_urls,
            ca_proto,
            ca_agreement,
            contact,
            eab,
            ca_challenges,
            profile,
            profile_mandatory,
            renew_mode,
            renew_window,
            warn_window,
            ari_renewals,
            private_keys,
            must_staple,
            require_https,
            stapling,
            staple_others,
            transitive
        )
    }
}

/// Outgoing-connection settings: per MD inside a section, otherwise one global table whatever
/// vhost they appear in (as the C module's "env" settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct EnvSettings {
    pub proxy_url: Option<String>,
    pub ca_certs: Option<String>,
    pub proxy_ca_certs: Option<String>,
    pub dns01_cmd: Option<String>,
}

/// Settings that exist once per server (not per MD).
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(missing_docs)]
pub struct GlobalSettings {
    pub env: EnvSettings,
    pub retry_failover: Option<u32>,
    pub check_interval: Option<Duration>,
    pub initial_delay: Option<Duration>,
    pub retry_delay: Option<Duration>,
    pub activation_delay: Option<Duration>,
    /// `Some(None)` = explicitly off; `Some(Some(wait))` = on with this maximum wait.
    pub store_locks: Option<Option<Duration>>,
    pub port_map: Option<PortMap>,
    pub dns01_version: Option<u8>,
    pub notify_cmd: Option<String>,
    pub message_cmd: Option<String>,
    pub server_status: Option<bool>,
    pub certificate_status: Option<bool>,
    pub certificate_check: Option<(String, String)>,
    pub stapling_keep_response: Option<Timeslice>,
    pub stapling_renew_window: Option<Timeslice>,
    pub store_dir: Option<String>,
    pub match_names: Option<MatchNames>,
    pub base_server: Option<bool>,
}

/// One MD as defined by `MDomain` or an `<MDomain>` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MdDefinition {
    /// Lower-cased, de-duplicated names in config order; the first is the MD's name.
    pub domains: Vec<String>,
    /// Settings made inside the section (and `auto`/`manual` of the MDomain line).
    pub settings: Settings,
    /// Per-MD outgoing settings made inside the section.
    pub env: EnvSettings,
    /// MDCertificateFile values (ServerRoot-resolved).
    pub cert_files: Vec<String>,
    /// MDCertificateKeyFile values (ServerRoot-resolved).
    pub key_files: Vec<String>,
    /// Where the MD was defined.
    pub origin: Origin,
    /// Opaque key of the server (main or vhost) whose config held the definition.
    pub server_key: usize,
}

impl MdDefinition {
    /// The MD's name: its first domain.
    pub fn name(&self) -> &str {
        self.domains.first().map(String::as_str).unwrap_or("")
    }

    fn add_domains(&mut self, names: &[String]) {
        for n in names {
            let n = n.to_ascii_lowercase();
            if !self.domains.contains(&n) {
                self.domains.push(n);
            }
        }
    }
}

/// Where a directive is being applied.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Inside a `<VirtualHost>`.
    pub in_vhost: bool,
    /// Inside `<Directory>`, `<Location>`, `<Files>` (or similar).
    pub in_dir: bool,
    /// File and line of the directive.
    pub origin: Origin,
    /// httpd's ServerRoot, to resolve relative paths.
    pub server_root: String,
    /// Opaque key of the server being configured.
    pub server_key: usize,
}

impl Context {
    /// Resolve a path against ServerRoot, as `ap_server_root_relative` does.
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') || self.server_root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.server_root.trim_end_matches('/'), path)
        }
    }
}

/// The module's configuration for one config generation: MD definitions plus the settings that
/// exist once. Per-server [`Settings`] live with each server's config.
#[derive(Debug, Clone, Default)]
pub struct ModConfig {
    /// All MD definitions in config order.
    pub mds: Vec<MdDefinition>,
    /// Module-wide settings.
    pub global: GlobalSettings,
    /// Index of the MD whose `<MDomain>` section is being read.
    section: Option<usize>,
}

/// What the host must do after a section directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// A section was opened: walk its children, then call [`ModConfig::close_section`].
    WalkSection,
}

const SECTION: &str = "<MDomainSet";

fn words_of(args: &ArgValue) -> Vec<String> {
    match args {
        ArgValue::Words(w) => w.clone(),
        ArgValue::Raw(r) => values::split_words(r),
    }
}

/// Arguments as httpd delivered them.
#[derive(Debug, Clone)]
pub enum ArgValue {
    /// Tokenized words.
    Words(Vec<String>),
    /// The raw rest of the line.
    Raw(String),
}

fn one(w: &[String]) -> &str {
    w.first().map(String::as_str).unwrap_or("")
}

impl ModConfig {
    /// The MD whose section is currently open, if any.
    pub fn open_section(&self) -> Option<usize> {
        self.section
    }

    /// End the section opened by the last `<MDomain>` directive.
    pub fn close_section(&mut self) {
        self.section = None;
    }

    /// Run one directive. `server` is the settings of the server (main or vhost) being
    /// configured. Errors name the directive; httpd adds file and line.
    pub fn apply(
        &mut self,
        server: &mut Settings,
        ctx: &Context,
        name: &str,
        args: ArgValue,
    ) -> Result<Outcome, String> {
        let dir = directives::find(name).ok_or_else(|| format!("unknown directive {name}"))?;
        let name = dir.name;
        if ctx.in_dir {
            return Err(format!(
                "{name} is not allowed inside <Directory>, <Location> or <Files>"
            ));
        }
        match (dir.place, self.section) {
            (Place::NotInSection | Place::OpensSection, Some(_)) => {
                return Err(format!(
                    "{name} is not allowed inside an '{SECTION}' context"
                ))
            }
            (Place::SectionOnly, None) => {
                return Err(format!(
                    "{name} is only valid inside a '{SECTION}' context, not here"
                ))
            }
            _ => {}
        }
        let words = words_of(&args);
        dir.args.check_count(name, words.len())?;
        let err = |e: String| format!("{name}: {e}");
        let section = self.section;
        // Settings that a section makes for its MD, or a server for itself.
        let target: &mut Settings = match section {
            Some(i) => &mut self.mds[i].settings,
            None => server,
        };
        let v = one(&words);
        match dir.canonical {
            "MDomain" => {
                self.define_md(&words, ctx).map_err(err)?;
            }
            "<MDomainSet" => {
                let ArgValue::Raw(raw) = &args else {
                    unreachable!("sections are raw")
                };
                let inner = raw
                    .trim_end()
                    .strip_suffix('>')
                    .ok_or_else(|| format!("{SECTION}> directive missing closing '>'"))?;
                let w = values::split_words(inner);
                if w.is_empty() {
                    return Err(format!(
                        "{SECTION}> section must specify a unique domain name"
                    ));
                }
                let idx = self.define_md(&w, ctx).map_err(err)?;
                self.section = Some(idx);
                return Ok(Outcome::WalkSection);
            }
            "MDMember" => match section {
                Some(i) => {
                    let mut names = Vec::new();
                    for w in &words {
                        match w.to_ascii_lowercase().as_str() {
                            "auto" => self.mds[i].settings.transitive = Some(true),
                            "manual" => self.mds[i].settings.transitive = Some(false),
                            _ => names.push(w.clone()),
                        }
                    }
                    self.mds[i].add_domains(&names);
                }
                None => {
                    server.transitive = Some(match (words.len(), v.to_ascii_lowercase().as_str()) {
                        (1, "auto") => true,
                        (1, "manual") => false,
                        _ => {
                            return Err(format!(
                                "{name}: outside an '{SECTION}' context only 'auto' or \
                                 'manual' is allowed"
                            ))
                        }
                    })
                }
            },
            "MDMatchNames" => self.global.match_names = Some(MatchNames::parse(v).map_err(err)?),
            "MDBaseServer" => self.global.base_server = Some(parse_on_off(v).map_err(err)?),
            "MDCertificateAuthority" => {
                let urls = words
                    .iter()
                    .map(|w| values::parse_ca(w))
                    .collect::<Result<_, _>>();
                target.ca_urls = Some(urls.map_err(err)?);
            }
            "MDCertificateProtocol" => target.ca_proto = Some(v.to_string()),
            "MDCertificateAgreement" => {
                if !v.eq_ignore_ascii_case("accepted") && !values::is_absolute_uri(v) {
                    return Err(format!(
                        "{name}: '{v}' must be 'accepted' or the URL of the terms of service"
                    ));
                }
                let v = if v.eq_ignore_ascii_case("accepted") {
                    "accepted"
                } else {
                    v
                };
                target.ca_agreement = Some(v.to_string());
            }
            "MDContactEmail" => target.contact = Some(v.to_string()),
            "MDExternalAccountBinding" => {
                target.eab = Some(match words.as_slice() {
                    [kid, hmac] => Eab::Key {
                        kid: kid.clone(),
                        hmac: hmac.clone(),
                    },
                    [none] if none.eq_ignore_ascii_case("none") => Eab::None,
                    [file] => {
                        let path = ctx.resolve(file);
                        let text = std::fs::read_to_string(&path)
                            .map_err(|e| format!("{name}: cannot read '{path}': {e}"))?;
                        Eab::from_json(&path, &text).map_err(err)?
                    }
                    _ => unreachable!("arity checked"),
                })
            }
            "MDCAChallenges" => target.ca_challenges = Some(words.clone()),
            "MDProfile" => target.profile = Some(v.to_string()),
            "MDProfileMandatory" => target.profile_mandatory = Some(parse_on_off(v).map_err(err)?),
            "MDRetryFailover" => match v.parse::<u32>() {
                Ok(n) if n > 0 => self.global.retry_failover = Some(n),
                _ => return Err(format!("{name}: '{v}' must be a number greater than 0")),
            },
            "MDRenewMode" => target.renew_mode = Some(RenewMode::parse(v).map_err(err)?),
            "MDRenewWindow" => {
                target.renew_window = Some(Timeslice::parse(v, Unit::Days).map_err(err)?)
            }
            "MDWarnWindow" => {
                target.warn_window = Some(Timeslice::parse(v, Unit::Days).map_err(err)?)
            }
            "MDRenewViaARI" => target.ari_renewals = Some(parse_on_off(v).map_err(err)?),
            "MDCheckInterval" => {
                let d = parse_duration(v, Unit::Seconds).map_err(err)?;
                if d < Duration::from_secs(1) {
                    return Err(format!("{name}: must be at least one second"));
                }
                self.global.check_interval = Some(d);
            }
            "MDInitialDelay" => {
                self.global.initial_delay = Some(parse_duration(v, Unit::Seconds).map_err(err)?)
            }
            "MDRetryDelay" => {
                let d = parse_duration(v, Unit::Seconds).map_err(err)?;
                if d.is_zero() {
                    return Err(format!("{name}: must be greater than 0"));
                }
                self.global.retry_delay = Some(d);
            }
            "MDActivationDelay" => {
                self.global.activation_delay = Some(parse_duration(v, Unit::Days).map_err(err)?)
            }
            "MDStoreLocks" => self.global.store_locks = Some(parse_store_locks(v).map_err(err)?),
            "MDPrivateKeys" => target.private_keys = Some(parse_private_keys(&words).map_err(err)?),
            "MDMustStaple" => target.must_staple = Some(parse_on_off(v).map_err(err)?),
            "MDCertificateFile" | "MDCertificateKeyFile" => {
                let md = &mut self.mds[section.expect("section checked")];
                let path = ctx.resolve(v);
                if dir.canonical == "MDCertificateFile" {
                    md.cert_files.push(path);
                } else {
                    md.key_files.push(path);
                }
            }
            "MDPortMap" => {
                let mut map = self.global.port_map.unwrap_or_default();
                for w in &words {
                    map.apply(w).map_err(err)?;
                }
                self.global.port_map = Some(map);
            }
            "MDChallengeDns01Version" => match v {
                "1" => self.global.dns01_version = Some(1),
                "2" => self.global.dns01_version = Some(2),
                _ => return Err(format!("{name}: '{v}' is not a supported version (1 or 2)")),
            },
            "MDChallengeDns01"
            | "MDHttpProxy"
            | "MDCACertificateFile"
            | "MDHttpProxyCACertificateFile" => {
                let value = match (dir.canonical, &args) {
                    ("MDChallengeDns01", ArgValue::Raw(raw)) => {
                        let raw = raw.trim();
                        if raw.is_empty() {
                            return Err(format!("{name} needs a command"));
                        }
                        raw.to_string()
                    }
                    ("MDHttpProxy", _) => {
                        if !values::is_absolute_uri(v) {
                            return Err(format!("{name}: '{v}' is not an absolute URL"));
                        }
                        v.to_string()
                    }
                    (_, _) if v.eq_ignore_ascii_case("none") => "none".to_string(),
                    _ => ctx.resolve(v),
                };
                let env = match section {
                    Some(i) => &mut self.mds[i].env,
                    None => &mut self.global.env,
                };
                let slot = match dir.canonical {
                    "MDChallengeDns01" => &mut env.dns01_cmd,
                    "MDHttpProxy" => &mut env.proxy_url,
                    "MDCACertificateFile" => &mut env.ca_certs,
                    _ => &mut env.proxy_ca_certs,
                };
                *slot = Some(value);
            }
            "MDRequireHttps" => target.require_https = Some(RequireHttps::parse(v).map_err(err)?),
            "MDNotifyCmd" | "MDMessageCmd" => {
                let ArgValue::Raw(raw) = &args else {
                    unreachable!("command lines are raw")
                };
                let raw = raw.trim();
                if raw.is_empty() {
                    return Err(format!("{name} needs a command"));
                }
                let slot = if dir.canonical == "MDNotifyCmd" {
                    &mut self.global.notify_cmd
                } else {
                    &mut self.global.message_cmd
                };
                *slot = Some(raw.to_string());
            }
            "MDServerStatus" => self.global.server_status = Some(parse_on_off(v).map_err(err)?),
            "MDCertificateStatus" => {
                self.global.certificate_status = Some(parse_on_off(v).map_err(err)?)
            }
            "MDCertificateCheck" => {
                self.global.certificate_check = Some((words[0].clone(), words[1].clone()))
            }
            "MDStapling" => target.stapling = Some(parse_on_off(v).map_err(err)?),
            "MDStapleOthers" => target.staple_others = Some(parse_on_off(v).map_err(err)?),
            "MDStaplingKeepResponse" => {
                self.global.stapling_keep_response =
                    Some(Timeslice::parse(v, Unit::Days).map_err(err)?)
            }
            "MDStaplingRenewWindow" => {
                self.global.stapling_renew_window =
                    Some(Timeslice::parse(v, Unit::Days).map_err(err)?)
            }
            "MDStoreDir" => self.global.store_dir = Some(ctx.resolve(v)),
            other => unreachable!("directive {other} has no handler"),
        }
        Ok(Outcome::Done)
    }

    /// Define an MD from `names [auto|manual]`; returns its index.
    fn define_md(&mut self, words: &[String], ctx: &Context) -> Result<usize, String> {
        let mut names = words.to_vec();
        let mut md = MdDefinition {
            origin: ctx.origin.clone(),
            server_key: ctx.server_key,
            ..Default::default()
        };
        if names.len() > 1 {
            match names.last().map(|s| s.to_ascii_lowercase()).as_deref() {
                Some("auto") => md.settings.transitive = Some(true),
                Some("manual") => md.settings.transitive = Some(false),
                _ => {}
            }
            if md.settings.transitive.is_some() {
                names.pop();
            }
        }
        for n in &names {
            check_domain_name(n)?;
        }
        md.add_domains(&names);
        self.mds.push(md);
        Ok(self.mds.len() - 1)
    }
}

/// A DNS name (optionally a `*.` wildcard) as the C module accepts in MDomain.
fn check_domain_name(name: &str) -> Result<(), String> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("'{name}' is not a valid domain name"))
    }
}
