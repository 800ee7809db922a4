//! What the directives set: per-server and per-MD settings, module-wide settings and the MD
//! definitions, and [`ModConfig::apply`], which runs one directive.

use std::time::Duration;

use super::directives::{self, Directive, Place};
use super::values::{
    self, parse_on_off, parse_private_keys, parse_store_locks, Eab, MatchNames, PortMap, RenewMode,
    RequireHttps,
};
use crate::md::KeySpec;
use crate::time::{c_leading_int, parse_duration_signed, Timeslice, Unit};

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
    /// MDPreferredChain (mod_md-rs): issuer name of the preferred alternate chain.
    pub preferred_chain: Option<String>,
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
            preferred_chain,
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

/// Shortest MDClusterKeyFile content (bytes, surrounding white space not counted).
pub const CLUSTER_KEY_MIN: usize = 32;

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
    /// MDActivationRestart (mod_md-rs): graceful restart by the parent once a renewal is ready.
    pub activation_restart: Option<bool>,
    /// MDClusterDatabase (mod_md-rs): the file holding the cluster's connection string.
    pub cluster_database: Option<String>,
    /// MDClusterKeyFile (mod_md-rs): the file holding the key of private keys in the cluster.
    pub cluster_key_file: Option<String>,
    /// MDClusterNode (mod_md-rs): this node's name.
    pub cluster_node: Option<String>,
    /// MDClusterLease (mod_md-rs).
    pub cluster_lease: Option<Duration>,
    /// MDClusterPoll (mod_md-rs).
    pub cluster_poll: Option<Duration>,
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
    /// File and line of the directive.
    pub origin: Origin,
    /// httpd's ServerRoot, to resolve relative paths.
    pub server_root: String,
    /// Opaque key of the server being configured.
    pub server_key: usize,
    /// httpd's own error when the directive sits in a directory context (`<Directory>`,
    /// `<Location>`, `<Files>`, ...), where no mod_md directive is allowed.
    pub dir_context_error: Option<String>,
    /// The directive's help text (used in argument count errors, as httpd does).
    pub help: String,
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
    /// configured. Errors keep the C module's wording, prefixed with the directive's name
    /// where that wording does not name it; httpd adds file and line.
    pub fn apply(
        &mut self,
        server: &mut Settings,
        ctx: &Context,
        name: &str,
        args: ArgValue,
    ) -> Result<Outcome, String> {
        let dir = directives::find(name).ok_or_else(|| format!("unknown directive {name}"))?;
        self.apply_directive(server, ctx, dir, args).map_err(|msg| {
            if msg.contains(dir.name) {
                msg
            } else {
                format!("{}: {msg}", dir.name)
            }
        })
    }

    fn apply_directive(
        &mut self,
        server: &mut Settings,
        ctx: &Context,
        dir: &Directive,
        args: ArgValue,
    ) -> Result<Outcome, String> {
        let name = dir.name;
        if let Some(msg) = &ctx.dir_context_error {
            return Err(msg.clone());
        }
        let words = words_of(&args);
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
        dir.args.check_count(name, words.len(), &ctx.help)?;
        let section = self.section;
        // Settings that a section makes for its MD, or a server for itself.
        let target: &mut Settings = match section {
            Some(i) => &mut self.mds[i].settings,
            None => server,
        };
        let v = one(&words);
        match dir.canonical {
            "MDomain" => {
                if words.is_empty() {
                    return Err("needs at least one domain name".into());
                }
                if let [only] = words.as_slice() {
                    if only.eq_ignore_ascii_case("auto") || only.eq_ignore_ascii_case("manual") {
                        return Err("needs at least one domain name".into());
                    }
                }
                self.define_md(&words, ctx)?;
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
                        "{SECTION} > section must specify a unique domain name"
                    ));
                }
                let idx = self.define_md(&w, ctx)?;
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
                // Outside a section only one `auto|manual` is allowed; no or several
                // arguments get the C module's context error.
                None if words.len() != 1 => {
                    return Err(format!(
                        "{name} is only valid inside a '{SECTION}' context, not here"
                    ))
                }
                None => {
                    server.transitive = Some(match v.to_ascii_lowercase().as_str() {
                        "auto" if words.len() == 1 => true,
                        "manual" if words.len() == 1 => false,
                        _ => return Err("unknown value, use \"auto|manual\"".into()),
                    })
                }
            },
            "MDMatchNames" => self.global.match_names = Some(MatchNames::parse(v)?),
            "MDBaseServer" => self.global.base_server = Some(parse_on_off(v)?),
            "MDCertificateAuthority" => {
                // Like httpd's ITERATE: no arguments, no change.
                if !words.is_empty() {
                    let urls = words.iter().map(|w| values::parse_ca(w));
                    target.ca_urls = Some(urls.collect::<Result<_, _>>()?);
                }
            }
            "MDCertificateProtocol" => target.ca_proto = Some(v.to_string()),
            "MDCertificateAgreement" => {
                // The C module takes any value: `accepted` or the URL of the terms, and keeps
                // it as written (md.json shows `ACCEPTED`); `accepted` is compared ignoring case.
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
                        let text = std::fs::read_to_string(&path).map_err(|e| {
                            if e.kind() == std::io::ErrorKind::NotFound {
                                format!("{name}: file not found: {path}")
                            } else {
                                format!("{name}: error reading JSON file {path}: {e}")
                            }
                        })?;
                        Eab::from_json(&path, &text).map_err(|e| format!("{name}: {e}"))?
                    }
                    _ => unreachable!("arity checked"),
                })
            }
            "MDCAChallenges" => {
                if !words.is_empty() {
                    // lower-cased, as the C module records them (md.json `ca.challenges`)
                    let types = words.iter().map(|w| w.to_ascii_lowercase());
                    target.ca_challenges = Some(types.collect());
                }
            }
            "MDProfile" => target.profile = Some(v.to_string()),
            "MDProfileMandatory" => target.profile_mandatory = Some(parse_on_off(v)?),
            "MDPreferredChain" => target.preferred_chain = Some(v.to_string()),
            "MDRetryFailover" => match c_leading_int(v) {
                // Read like C's atoi (strtol cast to int), as the C module does: trailing junk
                // is ignored and 4294967297 is 1; an overflow saturates to -1 (rejected).
                Ok((Some(n), _)) if n as i32 > 0 => {
                    self.global.retry_failover = Some(n as i32 as u32)
                }
                _ => return Err("invalid argument, must be a number > 0".into()),
            },
            "MDRenewMode" => target.renew_mode = Some(RenewMode::parse(v)?),
            "MDRenewWindow" => target.renew_window = Some(parse_window(name, v, "a length")?),
            "MDWarnWindow" => target.warn_window = Some(parse_window(name, v, "a length")?),
            "MDRenewViaARI" => target.ari_renewals = Some(parse_on_off(v)?),
            "MDCheckInterval" => {
                let ms = parse_duration_signed(v, Unit::Seconds).map_err(|_| BAD_DURATION)?;
                if ms < 1000 {
                    return Err("check interval cannot be less than one second".into());
                }
                self.global.check_interval = Some(Duration::from_millis(ms as u64));
            }
            "MDInitialDelay" => {
                let ms = parse_duration_signed(v, Unit::Seconds).map_err(|_| BAD_DURATION)?;
                if ms < 0 {
                    return Err("initial delay must not be negative".into());
                }
                self.global.initial_delay = Some(Duration::from_millis(ms as u64))
            }
            "MDRetryDelay" => {
                let ms = parse_duration_signed(v, Unit::Seconds).map_err(|_| BAD_DURATION)?;
                if ms <= 0 {
                    return Err("minimum delay must be greater than 0".into());
                }
                self.global.retry_delay = Some(Duration::from_millis(ms as u64));
            }
            "MDActivationDelay" => {
                // A negative delay is accepted by the C module: no delay.
                let ms = parse_duration_signed(v, Unit::Days).map_err(|_| BAD_DURATION)?;
                self.global.activation_delay = Some(Duration::from_millis(ms.max(0) as u64))
            }
            "MDStoreLocks" => self.global.store_locks = Some(parse_store_locks(v)?),
            "MDPrivateKeys" => target.private_keys = Some(parse_private_keys(&words)?),
            "MDMustStaple" => target.must_staple = Some(parse_on_off(v)?),
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
                    map.apply(w)?;
                }
                self.global.port_map = Some(map);
            }
            "MDChallengeDns01Version" => match v {
                "1" => self.global.dns01_version = Some(1),
                "2" => self.global.dns01_version = Some(2),
                _ => return Err("Only versions `1` and `2` are supported".into()),
            },
            "MDChallengeDns01"
            | "MDHttpProxy"
            | "MDCACertificateFile"
            | "MDHttpProxyCACertificateFile" => {
                let value = match (dir.canonical, &args) {
                    // An empty command line is accepted (as by the C module): no command.
                    ("MDChallengeDns01", ArgValue::Raw(raw)) => {
                        Some(raw.trim().to_string()).filter(|r| !r.is_empty())
                    }
                    ("MDHttpProxy", _) => Some(values::parse_proxy_url(v)?),
                    (_, _) if v.eq_ignore_ascii_case("none") => Some("none".to_string()),
                    _ => Some(ctx.resolve(v)),
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
                *slot = value;
            }
            "MDRequireHttps" => target.require_https = Some(RequireHttps::parse(v)?),
            "MDNotifyCmd" | "MDMessageCmd" => {
                let ArgValue::Raw(raw) = &args else {
                    unreachable!("command lines are raw")
                };
                let cmd = Some(raw.trim().to_string()).filter(|r| !r.is_empty());
                if dir.canonical == "MDNotifyCmd" {
                    self.global.notify_cmd = cmd;
                } else {
                    self.global.message_cmd = cmd;
                }
            }
            "MDServerStatus" => self.global.server_status = Some(parse_on_off(v)?),
            "MDCertificateStatus" => self.global.certificate_status = Some(parse_on_off(v)?),
            "MDCertificateCheck" => {
                self.global.certificate_check = Some((words[0].clone(), words[1].clone()))
            }
            "MDStapling" => target.stapling = Some(parse_on_off(v)?),
            "MDStapleOthers" => target.staple_others = Some(parse_on_off(v)?),
            "MDStaplingKeepResponse" => {
                // A percentage of 7 days here, so 100% and more are fine (as in the C module).
                self.global.stapling_keep_response = Some(parse_timeslice(name, v, None)?)
            }
            "MDStaplingRenewWindow" => {
                self.global.stapling_renew_window =
                    Some(parse_timeslice(name, v, Some("with a length"))?)
            }
            "MDStoreDir" => self.global.store_dir = Some(ctx.resolve(v)),
            "MDActivationRestart" => self.global.activation_restart = Some(parse_on_off(v)?),
            "MDClusterDatabase" | "MDClusterKeyFile" => {
                // Read here (as root, at config time) so that `apachectl -t` names a missing
                // or unreadable file; the parent reads it again when it starts.
                let path = ctx.resolve(v);
                let content =
                    std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                if dir.canonical == "MDClusterKeyFile" {
                    if content.trim_ascii().len() < CLUSTER_KEY_MIN {
                        return Err(format!(
                            "{path} holds {} bytes, at least {CLUSTER_KEY_MIN} are needed \
                             (e.g. `openssl rand -hex 32 > {path}`)",
                            content.trim_ascii().len()
                        ));
                    }
                    self.global.cluster_key_file = Some(path);
                } else {
                    self.global.cluster_database = Some(path);
                }
            }
            "MDClusterNode" => {
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == ':') {
                    return Err("a node name without spaces or ':' is needed".into());
                }
                self.global.cluster_node = Some(v.to_string());
            }
            "MDClusterLease" | "MDClusterPoll" => {
                let ms = parse_duration_signed(v, Unit::Seconds).map_err(|_| BAD_DURATION)?;
                if ms < 1000 {
                    return Err("at least one second is needed".into());
                }
                let d = Some(Duration::from_millis(ms as u64));
                if dir.canonical == "MDClusterLease" {
                    self.global.cluster_lease = d;
                } else {
                    self.global.cluster_poll = d;
                }
            }
            other => unreachable!("directive {other} has no handler"),
        }
        Ok(Outcome::Done)
    }

    /// Define an MD from `names [auto|manual]`; returns its index.
    fn define_md(&mut self, words: &[String], ctx: &Context) -> Result<usize, String> {
        // A single `auto`/`manual` is a name here (`<MDomain manual>` defines the MD "manual",
        // as in the C module); `MDomain manual` is refused by its caller.
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
        // No DNS syntax check here: the C module accepts any name and the CA refuses bad ones
        // at renewal ('malformed'); refusing them would stop a server C starts.
        md.add_domains(&names);
        self.mds.push(md);
        Ok(self.mds.len() - 1)
    }
}

/// The C module's text for a malformed duration.
const BAD_DURATION: &str = "unrecognized duration format";

/// A renew/warn window (`N%` below 100, or a duration in days).
fn parse_window(name: &str, v: &str, length: &str) -> Result<Timeslice, String> {
    parse_timeslice(name, v, Some(length))
}

/// A timeslice directive, read as the C module reads it: a leading integer directly followed
/// by `%` is a percentage (`%` alone is 0%, text after `%` is ignored; negative: "percent must
/// be less than 100"; 100 or more is refused with "<name> <length> of 100% or more is not
/// allowed." when `max_length` is given), anything else a duration in days; a negative duration
/// is accepted as zero, as the C module accepts it.
fn parse_timeslice(name: &str, v: &str, max_length: Option<&str>) -> Result<Timeslice, String> {
    if let Ok((n, rest)) = c_leading_int(v) {
        if rest.starts_with('%') {
            let n = n.unwrap_or(0);
            if n < 0 {
                return Err(format!("{name} percent must be less than 100"));
            }
            if let (Some(length), true) = (max_length, n >= 100) {
                return Err(format!("{name} {length} of 100% or more is not allowed."));
            }
            return Ok(Timeslice::Percent(n.min(i64::from(u32::MAX)) as u32));
        }
    }
    match parse_duration_signed(v, Unit::Days) {
        Ok(ms) => Ok(Timeslice::Duration(Duration::from_millis(ms.max(0) as u64))),
        Err(_) => Err(format!("{name} has unrecognized format")),
    }
}
