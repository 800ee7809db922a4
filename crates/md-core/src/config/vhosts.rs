//! Post-config: link MDs to virtual hosts and check the result as the C module does
//! (overlaps AH10038, SSL vhost with two MDs AH10042, uncovered names AH10040, unused MDs AH10045,
//! static file counts AH10170/AH10171, MDRequireHttps without SSL vhost AH10105).

use super::values::MatchNames;
use super::{ModConfig, Origin};
use crate::log::Level;
use crate::md::index::NameIndex;
use crate::md::ManagedDomain;

/// What httpd knows about one server (the base server or a `<VirtualHost>`).
#[derive(Debug, Clone, Default)]
pub struct VHost {
    /// Opaque key (the same as in [`super::Context::server_key`]).
    pub key: usize,
    /// ServerName.
    pub server_name: String,
    /// ServerAlias names, wildcards included.
    pub aliases: Vec<String>,
    /// The base server (outside any `<VirtualHost>`).
    pub is_base: bool,
    /// mod_ssl asked us for certificates for it: an SSL vhost.
    pub is_ssl: bool,
    /// `acme-tls/1` is in its `Protocols`.
    pub acme_tls_1: bool,
    /// Where the vhost was defined (for messages).
    pub origin: Origin,
    /// The port of its ServerName (0 when none was given), as httpd keeps it.
    pub port: u16,
    /// Its ServerAdmin (a vhost without one has the main server's, as httpd merges it).
    pub server_admin: String,
}

/// The C module's AH10238 text: an SSL vhost that two or more MDs match (logged when mod_ssl
/// asks for the vhost's certificate, which it then does not get).
pub fn ssl_conflict_message(count: usize, vhost_name: &str) -> String {
    format!(
        "AH10238: conflict: {count} MDs match Virtualhost {vhost_name} which uses SSL, however \
         there can be at most 1."
    )
}

/// One finding of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Log level.
    pub level: Level,
    /// The C module's message number (`AH10038`).
    pub ah: &'static str,
    /// Message text without the AH prefix.
    pub message: String,
    /// Startup must fail.
    pub fatal: bool,
}

impl Diagnostic {
    fn new(level: Level, ah: &'static str, fatal: bool, message: String) -> Self {
        Diagnostic {
            level,
            ah,
            message,
            fatal,
        }
    }
}

/// Glob match with `*` and `?`, case-insensitive (ServerAlias wildcards).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// True when MD domain `domain` (possibly `*.x`) covers host name `host`: equal, or a wildcard
/// matching exactly one more label.
pub fn domain_covers(domain: &str, host: &str) -> bool {
    if domain.eq_ignore_ascii_case(host) {
        return true;
    }
    match domain.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}

/// Does the MD name `domain` match the vhost under the given MDMatchNames mode?
fn matches_vhost(domain: &str, v: &VHost, mode: MatchNames) -> bool {
    let name_hit = |host: &str| {
        domain_covers(domain, host) || (host.contains(['*', '?']) && glob_match(host, domain))
    };
    if name_hit(&v.server_name) {
        return true;
    }
    mode == MatchNames::All && v.aliases.iter().any(|a| name_hit(a))
}

/// Names two MDs have in common (also through wildcards).
fn overlap(a: &[String], b: &[String]) -> Option<String> {
    a.iter()
        .find(|x| b.iter().any(|y| domain_covers(x, y) || domain_covers(y, x)))
        .cloned()
}

/// Result of linking: for each MD (config order) the vhosts (indices into the input) it is
/// assigned to, the MDs with names added from vhosts, and the findings.
#[derive(Debug, Clone, Default)]
pub struct Linked {
    /// Per MD, indices of the vhosts assigned to it.
    pub md_vhosts: Vec<Vec<usize>>,
    /// Per vhost, indices of the MDs assigned to it.
    pub vhost_mds: Vec<Vec<usize>>,
    /// Findings; any `fatal` one fails startup.
    pub diagnostics: Vec<Diagnostic>,
}

impl Linked {
    /// The first fatal finding, if any.
    pub fn fatal(&self) -> Option<&Diagnostic> {
        self.diagnostics.iter().find(|d| d.fatal)
    }
}

/// Check MD definitions against each other before the vhosts are known to be SSL or not
/// (post_config before mod_ssl): overlaps and static file counts.
pub fn check_definitions(mc: &ModConfig) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if mc.global.match_names != Some(MatchNames::ServerNames) {
        let index = NameIndex::new(mc.mds.iter().map(|m| m.domains.as_slice()).enumerate());
        let mut candidates = Vec::new();
        for (i, a) in mc.mds.iter().enumerate() {
            // the pairs (a, b) in config order, b after a, as a check of all pairs finds them
            candidates.clear();
            for x in &a.domains {
                index.overlapping(x, &mut candidates);
            }
            candidates.retain(|&j| j > i);
            candidates.sort_unstable();
            candidates.dedup();
            for b in candidates.iter().map(|&j| &mc.mds[j]) {
                if let Some(name) = overlap(&a.domains, &b.domains) {
                    // The C module's text; it prints "unknown(line 0)" where we know better.
                    out.push(Diagnostic::new(
                        Level::Err,
                        "AH10038",
                        true,
                        format!(
                            "two Managed Domains have an overlap in domain '{name}', first \
                             definition in {}(line {}), second in {}(line {})",
                            a.origin.file, a.origin.line, b.origin.file, b.origin.line
                        ),
                    ));
                }
            }
        }
    }
    for md in &mc.mds {
        let (certs, keys) = (md.cert_files.len(), md.key_files.len());
        let finding = if certs == 0 && keys > 0 {
            Some((
                "AH10171",
                format!(
                    "The Managed Domain '{}' has MDCertificateKeyFile(s) but no \
                     MDCertificateFile.",
                    md.name()
                ),
            ))
        } else if certs != keys {
            Some((
                "AH10170",
                format!(
                    "The Managed Domain '{}' needs one MDCertificateKeyFile for each \
                     MDCertificateFile.",
                    md.name()
                ),
            ))
        } else {
            None
        };
        if let Some((ah, msg)) = finding {
            out.push(Diagnostic::new(Level::Err, ah, true, msg));
        }
    }
    out
}

/// Checks of the resolved MDs at startup: only the ACME protocol exists (the C module fails
/// the store sync, AH10172, for anything else; the name is case-sensitive there: `acme` fails).
pub fn check_resolved(mds: &[ManagedDomain]) -> Vec<Diagnostic> {
    mds.iter()
        .filter(|md| md.ca_proto != "ACME")
        .map(|md| {
            Diagnostic::new(
                Level::Err,
                "AH10172",
                true,
                format!(
                    "md[{}]: error syncing to store: [{}] uses unknown CA protocol '{}'",
                    md.name, md.name, md.ca_proto
                ),
            )
        })
        .collect()
}

/// An MD without a contact (no MDContactEmail) takes the ServerAdmin of the first vhost it
/// is assigned to, as the C module does when it links MDs to servers; an MD without vhosts
/// keeps none. `vhost_mds` is [`assign`]'s result.
pub fn adopt_admin_contacts(mds: &mut [ManagedDomain], vhosts: &[VHost], vhost_mds: &[Vec<usize>]) {
    for (v, hits) in vhosts.iter().zip(vhost_mds) {
        let Some(admin) = crate::md::usable_admin(&v.server_admin) else {
            continue;
        };
        for &mi in hits {
            if mds[mi].contacts.is_empty() {
                mds[mi].contacts = vec![crate::md::contact_uri(admin)];
            }
        }
    }
}

/// Assign MDs to vhosts by name (post_config before mod_ssl, so that the certificate hooks
/// know each vhost's MD). Returns, per vhost, the indices of its MDs.
pub fn assign(mds: &[ManagedDomain], vhosts: &[VHost], mc: &ModConfig) -> Vec<Vec<usize>> {
    let mode = mc.global.match_names.unwrap_or(MatchNames::All);
    let base_server = mc.global.base_server.unwrap_or(false);
    let index = NameIndex::new(mds.iter().map(|m| m.domains.as_slice()).enumerate());
    vhosts
        .iter()
        .map(|v| {
            if v.is_base && !base_server {
                return Vec::new();
            }
            let hosts = std::iter::once(&v.server_name);
            let aliases = v.aliases.iter().filter(|_| mode == MatchNames::All);
            let hosts: Vec<&String> = hosts.chain(aliases).collect();
            // A glob host (`*.a.org` as alias) is matched against every MD name; any other
            // host only by the MDs the index names.
            let candidates: Vec<usize> = if hosts.iter().any(|h| h.contains(['*', '?'])) {
                (0..mds.len()).collect()
            } else {
                let mut c = Vec::new();
                for h in &hosts {
                    index.covering(h, &mut c);
                }
                c.sort_unstable();
                c.dedup();
                c
            };
            let hits: Vec<usize> = candidates
                .into_iter()
                .filter(|&mi| mds[mi].domains.iter().any(|d| matches_vhost(d, v, mode)))
                .collect();
            // With servernames, a non-wildcard MD pre-empts wildcard MDs for the same vhost.
            if mode == MatchNames::ServerNames && hits.len() > 1 {
                let exact: Vec<usize> = hits
                    .iter()
                    .copied()
                    .filter(|&mi| {
                        mds[mi]
                            .domains
                            .iter()
                            .any(|d| d.eq_ignore_ascii_case(&v.server_name))
                    })
                    .collect();
                if !exact.is_empty() {
                    return exact;
                }
            }
            hits
        })
        .collect()
}

/// Check an assignment once mod_ssl has marked the SSL vhosts (post_config after mod_ssl):
/// add vhost names to MDs with MDMembers auto and report the C module's findings.
pub fn check(mds: &mut [ManagedDomain], vhosts: &[VHost], vhost_mds: Vec<Vec<usize>>) -> Linked {
    let mut linked = Linked {
        md_vhosts: vec![Vec::new(); mds.len()],
        vhost_mds,
        diagnostics: Vec::new(),
    };
    for (vi, v) in vhosts.iter().enumerate() {
        let hits = linked.vhost_mds[vi].clone();
        if v.is_ssl && hits.len() > 1 {
            linked.diagnostics.push(Diagnostic::new(
                Level::Err,
                "AH10042",
                true,
                format!(
                    "conflict: {} MDs match to SSL VirtualHost {}, there can at most be one.",
                    hits.len(),
                    v.server_name
                ),
            ));
            // Still counted as used: the conflict is the finding, not "no vhost".
            for &mi in &hits {
                linked.md_vhosts[mi].push(vi);
            }
            continue;
        }
        for &mi in &hits {
            linked.md_vhosts[mi].push(vi);
            if v.is_ssl {
                add_vhost_names(&mut mds[mi], v, &mut linked.diagnostics);
            }
        }
    }
    for (mi, md) in mds.iter().enumerate() {
        let vs = &linked.md_vhosts[mi];
        if vs.is_empty() {
            linked.diagnostics.push(Diagnostic::new(
                Level::Warning,
                "AH10045",
                false,
                format!("No VirtualHost matches Managed Domain {}", md.name),
            ));
        } else if md.require_https != crate::config::values::RequireHttps::Off
            && !vs.iter().any(|&vi| vhosts[vi].is_ssl)
        {
            linked.diagnostics.push(Diagnostic::new(
                Level::Warning,
                "AH10105",
                false,
                format!(
                    "MD {} does not match any VirtualHost with 'SSLEngine on', but is \
                     configured to require https. This cannot work.",
                    md.name
                ),
            ));
        }
    }
    linked
}

/// MDMembers auto: the SSL vhost's ServerName/ServerAlias join the MD; manual: warn (AH10040).
fn add_vhost_names(md: &mut ManagedDomain, v: &VHost, diagnostics: &mut Vec<Diagnostic>) {
    let names = std::iter::once(&v.server_name).chain(v.aliases.iter());
    for n in names.filter(|n| !n.is_empty()) {
        if md.domains.iter().any(|d| domain_covers(d, n)) {
            continue;
        }
        if md.transitive {
            md.domains.push(n.to_ascii_lowercase());
        } else {
            diagnostics.push(Diagnostic::new(
                Level::Warning,
                "AH10040",
                false,
                format!(
                    "Virtual Host {}:{} matches Managed Domain '{}', but the name/alias {n} \
                     itself is not managed. A requested MD certificate will not match \
                     ServerName.",
                    v.server_name, v.port, md.name
                ),
            ));
        }
    }
}

/// The MD's domains that an assigned SSL vhost with `acme-tls/1` in `Protocols` serves: those
/// can be validated with tls-alpn-01 (md.json `proto.acme-tls/1`).
pub fn acme_tls_1_domains(
    md: &ManagedDomain,
    vhost_idx: &[usize],
    vhosts: &[VHost],
) -> Vec<String> {
    md.domains
        .iter()
        .filter(|d| {
            vhost_idx.iter().map(|&i| &vhosts[i]).any(|v| {
                v.is_ssl
                    && v.acme_tls_1
                    && std::iter::once(&v.server_name)
                        .chain(v.aliases.iter())
                        .any(|n| domain_covers(d, n) || glob_match(n, d))
            })
        })
        .cloned()
        .collect()
}

/// [`assign`] and [`check`] in one step.
pub fn link(mds: &mut [ManagedDomain], vhosts: &[VHost], mc: &ModConfig) -> Linked {
    let assignment = assign(mds, vhosts, mc);
    check(mds, vhosts, assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ArgValue, Context, Settings};

    fn mc_with(lines: &[&str]) -> (ModConfig, Settings) {
        let mut mc = ModConfig::default();
        let mut srv = Settings::default();
        for (i, l) in lines.iter().enumerate() {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap();
            let ctx = Context {
                origin: Origin {
                    file: "httpd.conf".into(),
                    line: i as u32 + 1,
                },
                ..Default::default()
            };
            mc.apply(
                &mut srv,
                &ctx,
                name,
                ArgValue::Words(w.map(String::from).collect()),
            )
            .unwrap();
        }
        (mc, srv)
    }

    fn vh(name: &str, aliases: &[&str], ssl: bool) -> VHost {
        VHost {
            server_name: name.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            is_ssl: ssl,
            ..Default::default()
        }
    }

    fn resolve((mc, srv): &(ModConfig, Settings)) -> Vec<ManagedDomain> {
        mc.mds
            .iter()
            .map(|d| ManagedDomain::resolve(d, srv, mc))
            .collect()
    }

    #[test]
    fn contacts_from_the_first_vhosts_server_admin() {
        let c = mc_with(&[
            "MDomain a.org",
            "MDomain b.org",
            "MDomain c.org",
            "MDomain d.org",
        ]);
        let mut mds = resolve(&c);
        mds[3].contacts = vec!["mailto:own@d.org".into()]; // as from MDContactEmail
        let mut v = vec![
            vh("a.org", &[], false),
            vh("a.org", &[], true),
            vh("b.org", &[], true),
            vh("d.org", &[], true),
        ];
        v[0].server_admin = "[no address given]".into();
        v[1].server_admin = "web@a.org".into();
        v[2].server_admin = "mailto:b@b.org".into();
        v[3].server_admin = "web@d.org".into();
        let assignment = assign(&mds, &v, &c.0);
        adopt_admin_contacts(&mut mds, &v, &assignment);
        assert_eq!(mds[0].contacts, ["mailto:web@a.org"], "first usable admin");
        assert_eq!(mds[1].contacts, ["mailto:b@b.org"]);
        assert!(mds[2].contacts.is_empty(), "no vhost: no contact");
        assert_eq!(mds[3].contacts, ["mailto:own@d.org"], "MDContactEmail wins");
    }

    #[test]
    fn globs_and_wildcards() {
        assert!(glob_match("*.a.org", "www.a.org"));
        assert!(glob_match("w?w.*", "WWW.b.org"));
        assert!(!glob_match("*.a.org", "a.org"));
        assert!(domain_covers("*.a.org", "x.a.org"));
        assert!(!domain_covers("*.a.org", "y.x.a.org"));
        assert!(!domain_covers("*.a.org", "a.org"));
    }

    #[test]
    fn overlap_is_fatal_unless_servernames() {
        let c = mc_with(&["MDomain a.org www.a.org", "MDomain b.org www.a.org"]);
        let d = check_definitions(&c.0);
        assert_eq!(d.len(), 1);
        assert!(d[0].fatal && d[0].ah == "AH10038", "{d:?}");
        assert!(d[0].message.contains("www.a.org"));
        let c = mc_with(&[
            "MDMatchNames servernames",
            "MDomain a.org",
            "MDomain *.a.org",
        ]);
        assert!(check_definitions(&c.0).is_empty());
        let c = mc_with(&["MDomain x.a.org", "MDomain *.a.org"]);
        assert_eq!(check_definitions(&c.0).len(), 1);
    }

    #[test]
    fn ssl_vhost_with_two_mds_is_fatal() {
        let c = mc_with(&["MDomain a.org", "MDomain b.org"]);
        let mut mds = resolve(&c);
        let l = link(&mut mds, &[vh("a.org", &["b.org"], true)], &c.0);
        assert_eq!(l.fatal().unwrap().ah, "AH10042");
        let l = link(&mut mds, &[vh("a.org", &["b.org"], false)], &c.0);
        assert!(l.fatal().is_none());
        assert_eq!(l.vhost_mds[0], vec![0, 1]);
    }

    #[test]
    fn members_auto_adds_and_manual_warns() {
        let c = mc_with(&["MDomain a.org", "MDomain b.org manual"]);
        let mut mds = resolve(&c);
        let vs = [
            vh("a.org", &["www.a.org"], true),
            vh("b.org", &["www.b.org"], true),
        ];
        let l = link(&mut mds, &vs, &c.0);
        assert_eq!(mds[0].domains, vec!["a.org", "www.a.org"]);
        assert_eq!(mds[1].domains, vec!["b.org"]);
        assert!(l
            .diagnostics
            .iter()
            .any(|d| d.ah == "AH10040" && d.message.contains("www.b.org")));
    }

    #[test]
    fn unused_md_and_require_https_warn() {
        let c = mc_with(&["MDRequireHttps permanent", "MDomain a.org", "MDomain b.org"]);
        let mut mds = resolve(&c);
        let l = link(&mut mds, &[vh("a.org", &[], false)], &c.0);
        let ahs: Vec<_> = l.diagnostics.iter().map(|d| d.ah).collect();
        assert_eq!(ahs, vec!["AH10105", "AH10045"]);
        assert!(l.fatal().is_none());
    }

    #[test]
    fn base_server_only_with_mdbaseserver() {
        let c = mc_with(&["MDomain a.org"]);
        let mut mds = resolve(&c);
        let base = VHost {
            is_base: true,
            ..vh("a.org", &[], false)
        };
        let l = link(&mut mds, std::slice::from_ref(&base), &c.0);
        assert!(l.md_vhosts[0].is_empty());
        let c = mc_with(&["MDBaseServer on", "MDomain a.org"]);
        let l = link(&mut mds, &[base], &c.0);
        assert_eq!(l.md_vhosts[0], vec![0]);
    }

    #[test]
    fn acme_tls_1_domains_need_ssl_and_protocol() {
        let c = mc_with(&["MDomain a.org www.a.org b.org"]);
        let mds = resolve(&c);
        let mut v1 = vh("a.org", &["www.a.org"], true);
        v1.acme_tls_1 = true;
        let v2 = vh("b.org", &[], true);
        let mut v3 = vh("b.org", &[], false);
        v3.acme_tls_1 = true;
        let vs = [v1, v2, v3];
        assert_eq!(
            acme_tls_1_domains(&mds[0], &[0, 1, 2], &vs),
            vec!["a.org", "www.a.org"]
        );
        assert!(acme_tls_1_domains(&mds[0], &[1, 2], &vs).is_empty());
    }

    /// The indexed linking finds what comparing every MD with every vhost (and every MD with
    /// every other) found, in the same order.
    #[test]
    fn indexed_linking_equals_all_pairs() {
        let pool = [
            "a.org",
            "A.org",
            "www.a.org",
            "*.a.org",
            "x.y.a.org",
            "*.y.a.org",
            "b.org",
            "*.b.org",
            "c.b.org",
            "*.org",
            "q.org",
            ".a.org",
            "w?w.a.org",
        ];
        let mut seed = 7u64;
        let mut pick = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for round in 0..200 {
            let mut lines = vec![if round % 2 == 0 {
                "MDMatchNames all"
            } else {
                "MDMatchNames servernames"
            }
            .to_string()];
            for _ in 0..(1 + pick(4)) {
                let names: Vec<&str> = (0..(1 + pick(3)))
                    .map(|_| pool[pick(pool.len())])
                    .filter(|n| !n.contains('?'))
                    .collect();
                if !names.is_empty() {
                    lines.push(format!("MDomain {}", names.join(" ")));
                }
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let c = mc_with(&refs);
            // all-pairs overlap check, as before the index
            let mut expect = Vec::new();
            for (i, a) in c.0.mds.iter().enumerate() {
                for b in &c.0.mds[i + 1..] {
                    if let Some(name) = overlap(&a.domains, &b.domains) {
                        expect.push(name);
                    }
                }
            }
            let got: Vec<String> = check_definitions(&c.0)
                .into_iter()
                .filter(|d| d.ah == "AH10038")
                .map(|d| d.message.split('\'').nth(1).unwrap().to_string())
                .collect();
            if round % 2 == 0 {
                assert_eq!(got, expect, "{lines:?}");
            }
            let mds = resolve(&c);
            let vs: Vec<VHost> = (0..(1 + pick(5)))
                .map(|_| {
                    let aliases: Vec<&str> = (0..pick(3)).map(|_| pool[pick(pool.len())]).collect();
                    vh(pool[pick(pool.len())], &aliases, pick(2) == 0)
                })
                .collect();
            let mode = c.0.global.match_names.unwrap_or(MatchNames::All);
            for (v, hits) in vs.iter().zip(assign(&mds, &vs, &c.0)) {
                let all: Vec<usize> = (0..mds.len())
                    .filter(|&mi| mds[mi].domains.iter().any(|d| matches_vhost(d, v, mode)))
                    .collect();
                if mode == MatchNames::All || all.len() < 2 {
                    assert_eq!(hits, all, "{lines:?} {v:?}");
                } else {
                    assert!(hits.iter().all(|h| all.contains(h)), "{lines:?} {v:?}");
                }
            }
        }
    }

    #[test]
    fn static_file_counts() {
        let (mut mc, _) = mc_with(&["MDomain a.org"]);
        mc.mds[0].cert_files = vec!["c1".into(), "c2".into()];
        mc.mds[0].key_files = vec!["k1".into()];
        let d = check_definitions(&mc);
        assert_eq!(d[0].ah, "AH10170");
        assert!(d[0]
            .message
            .contains("needs one MDCertificateKeyFile for each"));
        mc.mds[0].key_files = vec!["k1".into(), "k2".into(), "k3".into()];
        assert_eq!(check_definitions(&mc)[0].ah, "AH10170");
        mc.mds[0].cert_files.clear();
        let d = check_definitions(&mc);
        assert_eq!(d[0].ah, "AH10171");
        assert!(d[0]
            .message
            .ends_with("has MDCertificateKeyFile(s) but no MDCertificateFile."));
    }
}
