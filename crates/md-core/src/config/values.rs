//! Pure parsers for directive values. Each returns a message that names what is wrong; the
//! directive layer prefixes the directive name and httpd adds file and line.

use crate::md::keyspec::RSA_MIN_BITS;
use crate::md::KeySpec;

/// Default ACME CA: Let's Encrypt production.
pub const DEFAULT_CA_URL: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// CA names that MDCertificateAuthority accepts instead of a URL (case-insensitive).
pub const KNOWN_CAS: &[(&str, &str)] = &[
    ("LetsEncrypt", DEFAULT_CA_URL),
    (
        "LetsEncrypt-Test",
        "https://acme-staging-v02.api.letsencrypt.org/directory",
    ),
    ("Buypass", "https://api.buypass.com/acme/directory"),
    (
        "Buypass-Test",
        "https://api.test4.buypass.no/acme/directory",
    ),
];

/// The known CA name for a directory URL, if it is one of [`KNOWN_CAS`].
pub fn known_ca_name(url: &str) -> Option<&'static str> {
    KNOWN_CAS.iter().find(|(_, u)| *u == url).map(|(n, _)| *n)
}

/// `on` / `off`, case-insensitive.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!(
            "unknown '{s}', supported parameter values are 'on' and 'off'"
        )),
    }
}

/// True when `s` is an absolute URI: a scheme, a colon and something after it.
pub fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
}

/// A CA given as URL or known name, resolved to its directory URL.
pub fn parse_ca(s: &str) -> Result<String, String> {
    if let Some((_, url)) = KNOWN_CAS.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Ok((*url).to_string());
    }
    if is_absolute_uri(s) {
        return Ok(s.to_string());
    }
    let names: Vec<&str> = KNOWN_CAS.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "The CA name '{s}' is not known and it is not a URL either (missing uri scheme). \
         Known CA names are: {}.",
        names.join(" ")
    ))
}

/// MDHttpProxy: an absolute http or https URL, checked as the C module checks it
/// (`md_util_abs_http_uri_check`), with its messages.
pub fn parse_proxy_url(s: &str) -> Result<String, String> {
    let scheme = check_uri(s)?;
    match scheme {
        None => Err("missing uri scheme".into()),
        Some(sc) if sc.eq_ignore_ascii_case("http") || sc.eq_ignore_ascii_case("https") => {
            Ok(s.to_string())
        }
        Some(_) => Err("uri scheme must be http or https".into()),
    }
}

/// The parts of a URI the C module's checks look at, split as `apr_uri_parse` splits them.
struct UriParts<'a> {
    scheme: Option<&'a str>,
    hostname: Option<&'a str>,
    /// The text after the host's colon (possibly empty) and its value as `apr_port_t`.
    port: Option<(&'a str, u16)>,
}

/// `apr_uri_parse`, reduced to scheme, host and port; `None` where APR fails (a `[` host
/// without `]`, or a port with other characters after its number).
fn apr_uri_parts(uri: &str) -> Option<UriParts<'_>> {
    let mut parts = UriParts {
        scheme: None,
        hostname: None,
        port: None,
    };
    let authority = if let Some(rest) = uri.strip_prefix("//").filter(|r| !r.starts_with('/')) {
        rest
    } else if uri.starts_with('/') {
        return Some(parts);
    } else {
        let end = uri
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .unwrap_or(uri.len());
        let first_alpha = uri.starts_with(|c: char| c.is_ascii_alphabetic());
        if !first_alpha || !uri[end..].starts_with(':') {
            return Some(parts);
        }
        parts.scheme = Some(&uri[..end]);
        match uri[end + 1..].strip_prefix("//") {
            Some(rest) => rest,
            None => return Some(parts),
        }
    };
    let hostinfo = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
    // user:password@ up to the last '@'
    let host = hostinfo.rsplit_once('@').map_or(hostinfo, |(_, h)| h);
    let (hostname, port) = if let Some(v6) = host.strip_prefix('[') {
        let close = v6.find(']')?;
        (&v6[..close], v6[close + 1..].strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    parts.hostname = Some(hostname);
    if let Some(p) = port {
        let value = if p.is_empty() { 0 } else { strtol(p)? };
        // apr_port_t is 16 bits: the C module sees the value truncated
        parts.port = Some((p, value as u16));
    }
    Some(parts)
}

/// C's `strtol(s, &end, 10)` where `*end` must be the end of `s` (saturating like strtol).
fn strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    Some(if neg { v.saturating_neg() } else { v })
}

/// The C module's `md_dns_is_name(p, name, 0)`: ASCII letters, digits, '-' and single dots.
fn is_dns_name(name: &str) -> bool {
    !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The C module's `uri_check`: the URI's scheme, or its message (the later checks win, as
/// in C, where each overwrites the previous one).
fn check_uri(uri: &str) -> Result<Option<&str>, String> {
    let mut err = None;
    let parts = apr_uri_parts(uri);
    match &parts {
        None => err = Some("not an uri"),
        Some(UriParts {
            scheme: Some(scheme),
            hostname,
            port,
        }) => {
            if scheme.len() + 1 >= uri.len() {
                err = Some("missing uri identifier");
            } else if scheme.starts_with("http") {
                match hostname {
                    None => err = Some("missing hostname"),
                    Some(h) if !is_dns_name(h) => err = Some("invalid hostname"),
                    Some(_) => {}
                }
                if let Some((text, value)) = port {
                    if !text.starts_with(|c: char| c.is_ascii_digit()) || *value == 0 {
                        err = Some("invalid port");
                    }
                }
            } else if *scheme == "mailto" {
                let local = &uri[scheme.len() + 1..];
                err = match local.split_once('@') {
                    None => Some("missing @"),
                    Some((_, host)) if host.contains('@') => Some("duplicate @"),
                    Some(("", _)) => Some("missing local part"),
                    Some((_, "")) => Some("missing hostname"),
                    _ if uri.contains("..") => Some("double period"),
                    _ => None,
                };
            }
        }
        Some(_) => {}
    }
    if uri.contains([' ', '\t']) {
        err = Some("whitespace in uri");
    }
    match err {
        Some(e) => Err(e.into()),
        None => Ok(parts.and_then(|p| p.scheme)),
    }
}

/// How certificates are renewed (MDRenewMode, legacy MDDriveMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewMode {
    /// Never renew (`manual`, `stick`): only watch for expiry.
    Manual = 0,
    /// Renew MDs that are used and have no static files (`auto`, `automatic`).
    Auto = 1,
    /// Renew all MDs, also unused ones and those with static files (`always`).
    Always = 2,
}

impl RenewMode {
    /// Parse the directive value (case-insensitive).
    pub fn parse(s: &str) -> Result<RenewMode, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "automatic" => Ok(RenewMode::Auto),
            "always" => Ok(RenewMode::Always),
            "manual" | "stick" => Ok(RenewMode::Manual),
            _ => Err(format!("unknown MDDriveMode {s}")),
        }
    }
}

/// MDRequireHttps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireHttps {
    /// No redirects.
    Off,
    /// Redirect with 302/307.
    Temporary,
    /// Redirect with 301/308 and send HSTS.
    Permanent,
}

impl RequireHttps {
    /// Parse the directive value (case-insensitive).
    pub fn parse(s: &str) -> Result<RequireHttps, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(RequireHttps::Off),
            "temporary" => Ok(RequireHttps::Temporary),
            "permanent" => Ok(RequireHttps::Permanent),
            _ => Err(format!(
                "unknown '{s}', supported parameter values are 'temporary' and 'permanent'"
            )),
        }
    }

    /// The md.json form (`None` for off).
    pub fn as_json_str(&self) -> Option<&'static str> {
        match self {
            RequireHttps::Off => None,
            RequireHttps::Temporary => Some("temporary"),
            RequireHttps::Permanent => Some("permanent"),
        }
    }
}

/// MDMatchNames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchNames {
    /// Match MD names against ServerName and ServerAlias.
    All,
    /// Match against ServerName only.
    ServerNames,
}

impl MatchNames {
    /// Parse the directive value (case-insensitive).
    pub fn parse(s: &str) -> Result<MatchNames, String> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(MatchNames::All),
            "servernames" => Ok(MatchNames::ServerNames),
            _ => Err("invalid argument, must be a 'all' or 'servernames'".into()),
        }
    }
}

/// Local ports that receive the public http (80) and https (443) traffic; `None` = not reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMap {
    /// Local port for public port 80.
    pub http: Option<u16>,
    /// Local port for public port 443.
    pub https: Option<u16>,
}

impl Default for PortMap {
    fn default() -> Self {
        PortMap {
            http: Some(80),
            https: Some(443),
        }
    }
}

impl PortMap {
    /// Apply one mapping `80:<port>`, `443:<port>`, `http:<port>`, `https:<port>` (`-` = none),
    /// read as the C module reads it: `http:`/`https:` are case-sensitive prefixes, numbers are
    /// leading integers (`80:8080x` is 8080, `http:80:81` is 80), a local port starting with
    /// `-` is "not reachable", and the public port must be 80 or 443.
    pub fn apply(&mut self, mapping: &str) -> Result<(), String> {
        use crate::time::c_leading_int;
        let (public, local) = if let Some(rest) = mapping.strip_prefix("http:") {
            (80, rest)
        } else if let Some(rest) = mapping.strip_prefix("https:") {
            (443, rest)
        } else {
            let (n, rest) =
                c_leading_int(mapping).map_err(|_| "unable to parse first port number")?;
            match rest.strip_prefix(':') {
                Some(local) => (n.unwrap_or(0), local),
                None => return Err("no ':' after first port number".into()),
            }
        };
        let port = if local.starts_with('-') {
            None
        } else {
            match c_leading_int(local).map_err(|_| "unable to parse second port number")? {
                (Some(p), _) if p > 0 && p <= 65535 => Some(p as u16),
                _ => return Err("invalid number for port map, must be in ]0,65535]".into()),
            }
        };
        match public {
            80 => self.http = port,
            443 => self.https = port,
            _ => return Err("mapped port number must be 80 or 443".into()),
        }
        Ok(())
    }
}

/// External Account Binding configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eab {
    /// Explicitly none.
    None,
    /// Key id and base64url HMAC key.
    Key {
        /// EAB key identifier.
        kid: String,
        /// base64url-encoded HMAC key.
        hmac: String,
    },
}

impl Eab {
    /// Parse the JSON file form `{"kid": "...", "hmac": "..."}`.
    pub fn from_json(path: &str, text: &str) -> Result<Eab, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|_| format!("error reading JSON file {path}"))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        match (get("kid"), get("hmac")) {
            (Some(kid), Some(hmac)) => Ok(Eab::Key { kid, hmac }),
            (None, _) => Err(format!(
                "JSON does not contain 'kid' element in file {path}"
            )),
            (_, None) => Err(format!(
                "JSON does not contain 'hmac' element in file {path}"
            )),
        }
    }
}

/// The leading decimal digits of `s` as a number, like C's `atoi` reads them (`1x` is 1).
pub fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// MDStoreLocks: off, or on with a maximum wait.
pub fn parse_store_locks(s: &str) -> Result<Option<std::time::Duration>, String> {
    const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(Some(DEFAULT_WAIT)),
        "off" => Ok(None),
        // A negative wait is accepted by the C module; it means no waiting: off.
        _ if s.starts_with('-')
            && crate::time::parse_duration(&s[1..], crate::time::Unit::Seconds).is_ok() =>
        {
            Ok(None)
        }
        _ => {
            let d = crate::time::parse_duration(s, crate::time::Unit::Seconds)
                .map_err(|_| "neither 'on', 'off' or a duration specified".to_string())?;
            Ok(if d.is_zero() { None } else { Some(d) })
        }
    }
}

/// MDPrivateKeys arguments: `Default` alone, or RSA/curve specs without duplicates. As in the
/// C module, a word that is neither `Default`, an RSA spec nor the bits after `RSA` names a
/// curve (an unsupported curve fails when a key is made).
pub fn parse_private_keys(args: &[String]) -> Result<Vec<KeySpec>, String> {
    if args.is_empty() {
        return Err("needs to specify the private key type".into());
    }
    let mut specs: Vec<KeySpec> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let lower = arg.to_ascii_lowercase();
        let spec = if lower == "default" {
            if args.len() > 1 {
                return Err("'Default' allows no other parameter".into());
            }
            KeySpec::Default
        } else if let Some(rest) = lower.strip_prefix("rsa") {
            let bits = if !rest.is_empty() {
                // `rsa2048x` is read as 2048, as the C module's atoi does.
                leading_number(rest).ok_or_else(|| format!("'{arg}': not an RSA key size"))?
            } else if let Some(n) = args.get(i + 1).and_then(|n| n.parse::<u32>().ok()) {
                i += 1;
                n
            } else {
                crate::md::keyspec::RSA_DEFAULT_BITS
            };
            if bits < RSA_MIN_BITS {
                return Err(format!(
                    "must be {RSA_MIN_BITS} or higher in order to be considered safe."
                ));
            }
            KeySpec::Rsa { bits }
        } else {
            KeySpec::Ec { curve: arg.clone() }
        };
        let dup = specs.iter().any(|s| {
            (s.is_rsa() && spec.is_rsa())
                || (!s.is_rsa() && s.name().eq_ignore_ascii_case(spec.name()))
        });
        if dup {
            let kind = if spec.is_rsa() { "RSA" } else { arg.as_str() };
            return Err(format!("two keys of type '{kind}' are not possible."));
        }
        specs.push(spec);
        i += 1;
    }
    Ok(specs)
}

/// Split a directive line into words like httpd's `ap_getword_conf`: whitespace separates,
/// single or double quotes group, a backslash escapes the quote character inside quotes.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    break;
                } else {
                    word.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn on_off() {
        assert_eq!(parse_on_off("On"), Ok(true));
        assert_eq!(parse_on_off("OFF"), Ok(false));
        assert!(parse_on_off("yes").is_err());
    }

    #[test]
    fn ca_names_and_urls() {
        assert_eq!(parse_ca("letsencrypt").unwrap(), DEFAULT_CA_URL);
        assert!(parse_ca("LetsEncrypt-Test").unwrap().contains("staging"));
        assert_eq!(
            parse_ca("https://ca.test/dir").unwrap(),
            "https://ca.test/dir"
        );
        let e = parse_ca("nonsense").unwrap_err();
        assert!(
            e.contains("LetsEncrypt") && e.contains("Buypass-Test"),
            "{e}"
        );
        assert_eq!(known_ca_name(DEFAULT_CA_URL), Some("LetsEncrypt"));
    }

    #[test]
    fn renew_modes() {
        assert_eq!(RenewMode::parse("Automatic"), Ok(RenewMode::Auto));
        assert_eq!(RenewMode::parse("stick"), Ok(RenewMode::Manual));
        assert_eq!(RenewMode::parse("always"), Ok(RenewMode::Always));
        assert!(RenewMode::parse("sometimes")
            .unwrap_err()
            .contains("MDDriveMode"));
    }

    #[test]
    fn require_https_and_match_names() {
        assert_eq!(
            RequireHttps::parse("permanent"),
            Ok(RequireHttps::Permanent)
        );
        assert_eq!(RequireHttps::Temporary.as_json_str(), Some("temporary"));
        assert!(RequireHttps::parse("always").is_err());
        assert_eq!(
            MatchNames::parse("ServerNames"),
            Ok(MatchNames::ServerNames)
        );
        assert!(MatchNames::parse("some").is_err());
    }

    #[test]
    fn port_maps() {
        let mut m = PortMap::default();
        m.apply("http:8080").unwrap();
        m.apply("443:-").unwrap();
        assert_eq!(
            m,
            PortMap {
                http: Some(8080),
                https: None
            }
        );
        assert!(m.apply("http:0").is_err());
        assert!(m.apply("http:65536").is_err());
        assert_eq!(
            m.apply("ftp:21").unwrap_err(),
            "no ':' after first port number"
        );
        assert!(m.apply("8080").is_err());
        assert_eq!(
            m.apply("8080:80").unwrap_err(),
            "mapped port number must be 80 or 443"
        );
        assert_eq!(
            m.apply("HTTP:80").unwrap_err(),
            "no ':' after first port number"
        );
        m.apply("http:81:82").unwrap();
        m.apply("443:-1").unwrap();
        m.apply("+443:8443x").unwrap();
        assert_eq!(
            m,
            PortMap {
                http: Some(81),
                https: Some(8443)
            }
        );
        assert_eq!(
            m.apply("http:99999999999999999999").unwrap_err(),
            "unable to parse second port number"
        );
    }

    #[test]
    fn private_keys() {
        assert_eq!(
            parse_private_keys(&v(&["Default"])).unwrap(),
            vec![KeySpec::Default]
        );
        assert_eq!(
            parse_private_keys(&v(&["RSA", "3072"])).unwrap(),
            vec![KeySpec::Rsa { bits: 3072 }]
        );
        assert_eq!(
            parse_private_keys(&v(&["secp384r1", "rsa4096"])).unwrap(),
            vec![
                KeySpec::Ec {
                    curve: "secp384r1".into()
                },
                KeySpec::Rsa { bits: 4096 }
            ]
        );
        let e = |a: &[&str]| parse_private_keys(&v(a)).unwrap_err();
        assert_eq!(
            e(&["RSA", "1024"]),
            "must be 2048 or higher in order to be considered safe."
        );
        assert_eq!(
            e(&["Default", "P-256"]),
            "'Default' allows no other parameter"
        );
        assert_eq!(
            e(&["rsa2048", "RSA"]),
            "two keys of type 'RSA' are not possible."
        );
        assert_eq!(
            e(&["P-256", "p-256"]),
            "two keys of type 'p-256' are not possible."
        );
        assert_eq!(e(&[]), "needs to specify the private key type");
        // The C module reads a second number as a (then unsupported) curve name.
        let k = parse_private_keys(&v(&["RSA", "2048", "4096"])).unwrap();
        assert_eq!(
            k[1],
            KeySpec::Ec {
                curve: "4096".into()
            }
        );
    }

    #[test]
    fn store_locks() {
        assert_eq!(
            parse_store_locks("on"),
            Ok(Some(std::time::Duration::from_secs(5)))
        );
        assert_eq!(parse_store_locks("off"), Ok(None));
        assert_eq!(parse_store_locks("0"), Ok(None));
        assert_eq!(
            parse_store_locks("10s"),
            Ok(Some(std::time::Duration::from_secs(10)))
        );
        assert!(parse_store_locks("maybe").is_err());
        assert_eq!(parse_store_locks("-1"), Ok(None));
        assert_eq!(leading_number("1x"), Some(1));
        assert_eq!(leading_number("x1"), None);
    }

    #[test]
    fn eab_json() {
        assert_eq!(
            Eab::from_json("f", r#"{"kid":"k","hmac":"h"}"#),
            Ok(Eab::Key {
                kid: "k".into(),
                hmac: "h".into()
            })
        );
        assert!(Eab::from_json("f", "{").is_err());
        assert!(Eab::from_json("f", r#"{"kid":"k"}"#)
            .unwrap_err()
            .contains("hmac"));
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words("  a.org  \"b c\" 'd\\'e' f>"),
            v(&["a.org", "b c", "d'e", "f>"])
        );
        assert!(split_words("   ").is_empty());
    }

    #[test]
    fn absolute_uris() {
        assert!(is_absolute_uri("https://x/y"));
        assert!(is_absolute_uri("urn:x"));
        assert!(!is_absolute_uri("x"));
        assert!(!is_absolute_uri("1http://x"));
        assert!(!is_absolute_uri("http:"));
    }
    #[test]
    fn proxy_urls_checked_as_c() {
        // (value, the C module's verdict: Ok or its message), observed with mod_md 2.6
        let cases = [
            ("http://proxy.example.org:3128", Ok(())),
            ("https://127.0.0.1:70000", Ok(())),
            ("http://:80", Ok(())),
            ("HTTP://p.example.org", Ok(())),
            ("proxy.example.org", Err("missing uri scheme")),
            ("localhost:8080", Err("uri scheme must be http or https")),
            (
                "ftp://proxy.example.org:21",
                Err("uri scheme must be http or https"),
            ),
            ("https://127.0.0.1:-443", Err("invalid port")),
            ("http://127.0.0.1:0", Err("invalid port")),
            ("http://127.0.0.1:65536", Err("invalid port")),
            ("http://127.0.0.1:", Err("invalid port")),
            ("https://127.0.0.1:abc", Err("not an uri")),
            ("http://[::1]:3128", Err("invalid hostname")),
            ("http://a_b.example.org", Err("invalid hostname")),
            ("http:", Err("missing uri identifier")),
            ("http:foo", Err("missing hostname")),
            ("mailto:x", Err("missing @")),
        ];
        for (url, want) in cases {
            let got = parse_proxy_url(url);
            match want {
                Ok(()) => assert_eq!(got, Ok(url.to_string()), "{url}"),
                Err(e) => assert_eq!(got, Err(e.to_string()), "{url}"),
            }
        }
    }
}
