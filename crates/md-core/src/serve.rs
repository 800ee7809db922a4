//! Request-time decisions: answering http-01 challenges (SPEC 4.6) and MDRequireHttps
//! redirects and HSTS (SPEC 4.7). The FFI layer feeds request facts in and carries the
//! decision out; nothing here touches httpd.

use std::path::{Path, PathBuf};

use crate::config::values::{RenewMode, RequireHttps};
use crate::config::vhosts::domain_covers;
use crate::md::challenges::HTTP_01;
use crate::md::{KeySpec, ManagedDomain, MdIndex};

/// URL path prefix of http-01 challenges (RFC 8555 8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// File in `challenges/<host>/` holding the key authorization.
pub const HTTP01_FILE: &str = "acme-http-01.txt";
/// The HSTS header value (fixed in the C module).
pub const HSTS_VALUE: &str = "max-age=15768000";

/// The certificate and key files mod_ssl should use for `md`, as (cert, key) pairs: its static
/// files, else per key spec `domains/<md>/pubcert[.spec].pem` and `privkey[.spec].pem` where
/// both exist and load as a matching pair.
///
/// A damaged pair in the store (truncated, garbled, key and certificate not matching) is left
/// out and reported in the second list: handed to mod_ssl it would stop httpd from starting
/// (as with the C module), while without it the MD gets its fallback (or its other key
/// specs) and, since the parent's snapshot finds no certificate either, a new one is ordered.
/// The damaged files stay until the next activation archives them. Static files are the
/// admin's own and are handed over as configured.
pub fn cert_files(md: &ManagedDomain, store_dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    cert_files_cached(md, store_dir, &crate::crypt::PairCache::new())
}

/// [`cert_files`], checking the pairs through `pairs` (each unchanged pair parsed once).
pub fn cert_files_cached(
    md: &ManagedDomain,
    store_dir: &Path,
    pairs: &crate::crypt::PairCache,
) -> (Vec<(String, String)>, Vec<String>) {
    if !md.cert_files.is_empty() {
        let files = md
            .cert_files
            .iter()
            .cloned()
            .zip(md.pkey_files.iter().cloned())
            .collect();
        return (files, Vec::new());
    }
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (_, cert, key) in store_pair_paths(md, store_dir) {
        if !(cert.is_file() && key.is_file()) {
            continue;
        }
        match pairs.check(&cert, &key) {
            Ok(_) => files.push((cert.display().to_string(), key.display().to_string())),
            Err(e) => problems.push(e),
        }
    }
    (files, problems)
}

/// Per key spec of `md`, the store's active certificate and key files
/// (`domains/<md>/pubcert[.spec].pem`, `privkey[.spec].pem`), present or not.
pub fn store_pair_paths<'a>(
    md: &'a ManagedDomain,
    store_dir: &Path,
) -> impl Iterator<Item = (&'a KeySpec, PathBuf, PathBuf)> + 'a {
    let dir = store_dir.join("domains").join(&md.name);
    md.private_keys.iter().map(move |spec| {
        (
            spec,
            dir.join(crate::store::files::pubcert(spec)),
            dir.join(crate::store::files::privkey(spec)),
        )
    })
}

/// Check the store's active pairs of all `mds` before mod_ssl asks for them vhost by vhost,
/// a few at a time: each check parses a certificate (about a quarter millisecond with OpenSSL
/// 3), and with thousands of MDs the parent's start waited for them one after another. The
/// results land in `pairs`, where [`cert_files_cached`] and the status snapshot find them.
/// Small configurations are left to those (threads would cost more than they save).
pub fn prewarm_pairs(mds: &[ManagedDomain], store_dir: &Path, pairs: &crate::crypt::PairCache) {
    const MIN_PAIRS: usize = 64;
    let jobs: Vec<_> = mds
        .iter()
        .filter(|md| md.cert_files.is_empty())
        .flat_map(|md| store_pair_paths(md, store_dir).map(|(_, cert, key)| (cert, key)))
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if jobs.len() < MIN_PAIRS || workers < 2 {
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some((cert, key)) =
                    jobs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    // a missing or damaged pair is reported when mod_ssl asks
                    let _ = pairs.check(cert, key);
                }
            });
        }
    });
}

/// The ALPN protocol of tls-alpn-01 (RFC 8737).
pub const ACME_TLS_1: &str = "acme-tls/1";

/// Challenge certificate and key (PEM) for a tls-alpn-01 handshake with SNI `host`, read from
/// `challenges/<host>/acme-tls-alpn-01-{pubcert,privkey}[.spec].pem`. RSA specs are tried
/// before EC ones (the C module's 2.5.2 fix: CAs validate with an RSA-capable handshake).
/// `Ok(None)`: no MD for the host, or no challenge files.
pub fn tls_alpn01_pems(
    mds: &[ManagedDomain],
    index: &MdIndex,
    challenges_dir: &Path,
    host: &str,
) -> std::io::Result<Option<(String, String)>> {
    let Some((host, candidates)) = tls_alpn01_files(mds, index, host) else {
        return Ok(None);
    };
    let dir = challenges_dir.join(&host);
    for (cert, key) in candidates {
        match (
            std::fs::read_to_string(dir.join(cert)),
            std::fs::read_to_string(dir.join(key)),
        ) {
            (Ok(c), Ok(k)) => return Ok(Some((c, k))),
            (Err(e), _) | (_, Err(e)) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(None)
}

/// Where the tls-alpn-01 material for SNI `host` is filed: the challenge name (the address
/// of a reverse-DNS name) and the (certificate, key) file names to try, RSA first. `None`
/// when no MD has the name (or it could escape `challenges/`).
pub fn tls_alpn01_files(
    mds: &[ManagedDomain],
    index: &MdIndex,
    host: &str,
) -> Option<(String, Vec<(String, String)>)> {
    let host = host.to_ascii_lowercase();
    // An IP identifier's challenge comes with the address's reverse-DNS name as SNI (RFC 8738
    // section 6); its material is filed under the address.
    let host = ip_of_reverse_name(&host).unwrap_or(host);
    let md = md_for_host(mds, index, &host)?;
    if host.starts_with('.') || host.contains(['/', '\\']) || host.contains("..") {
        return None;
    }
    let mut specs: Vec<_> = md.private_keys.iter().collect();
    specs.sort_by_key(|s| !s.is_rsa());
    let files = specs
        .into_iter()
        .map(|spec| {
            let sfx = spec.file_suffix();
            (
                format!("acme-tls-alpn-01-pubcert{sfx}.pem"),
                format!("acme-tls-alpn-01-privkey{sfx}.pem"),
            )
        })
        .collect();
    Some((host, files))
}

/// The address a reverse-DNS name stands for (`4.3.2.1.in-addr.arpa` -> `1.2.3.4`, 32 nibbles
/// of `ip6.arpa` -> the IPv6 address in its canonical text form), as the CA names it.
pub fn ip_of_reverse_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Some(v4) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = v4
            .split('.')
            .map(|o| o.parse().ok().filter(|_| !o.is_empty() && o.len() <= 3))
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        let a: [u8; 4] = octets.try_into().ok()?;
        return Some(std::net::Ipv4Addr::from(a).to_string());
    }
    let v6 = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| {
            (n.len() == 1)
                .then(|| u8::from_str_radix(n, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // reversed: the last nibble in the name is the first (high) one of the address
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(std::net::Ipv6Addr::from(bytes).to_string())
}

/// Keys for fallback certificates, one per key type, shared by all MDs of a config pass.
///
/// Fallbacks only make mod_ssl answer 503, so one throw-away key per type is enough; what
/// matters is that each fallback has the key type of its key spec, so that a tls-alpn-01
/// challenge certificate of that type replaces it in the handshake (mod_ssl adds the
/// challenge certificate to the connection by key type). Sharing the key is what keeps the
/// start fast: the C module makes a new RSA key per MD (16 s for 50 MDs here).
#[derive(Default)]
pub struct FallbackKeys(std::collections::HashMap<crate::crypt::KeyType, crate::crypt::PrivateKey>);

impl FallbackKeys {
    fn key_for(&mut self, spec: &crate::md::KeySpec) -> Result<crate::crypt::PrivateKey, String> {
        use crate::crypt::{EcCurve, KeyType, PrivateKey};
        // An unsupported curve fails later, at renewal; its fallback is P-256.
        let kt = KeyType::from_spec(spec).unwrap_or(KeyType::Ec(EcCurve::P256));
        if let Some(k) = self.0.get(&kt) {
            return Ok(k.clone());
        }
        let key = PrivateKey::generate(kt).map_err(|e| format!("fallback key {kt:?}: {e}"))?;
        self.0.insert(kt, key.clone());
        Ok(key)
    }
}

/// Fallback certificate and key files for `md` (SPEC 4.2), one pair per key spec in
/// `domains/<md>/fallback-{pubcert,privkey}[.spec].pem`, created when missing (or not
/// matching each other) and reused otherwise, also when old, as the C module does.
pub fn fallback_files(
    md: &ManagedDomain,
    store_dir: &Path,
    keys: &mut FallbackKeys,
) -> Result<Vec<(String, String)>, String> {
    use crate::crypt::{make_fallback_cert, Certificate, PrivateKey};
    use std::os::unix::fs::DirBuilderExt;

    let dir = store_dir.join("domains").join(&md.name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for spec in &md.private_keys {
        let sfx = spec.file_suffix();
        let cert_path = dir.join(format!("fallback-pubcert{sfx}.pem"));
        let key_path = dir.join(format!("fallback-privkey{sfx}.pem"));
        let usable = match (std::fs::read(&cert_path), std::fs::read(&key_path)) {
            (Ok(c), Ok(k)) => match (Certificate::from_pem(&c), PrivateKey::from_pem(&k, None)) {
                (Ok(c), Ok(k)) => c.matches_key(&k),
                _ => false,
            },
            _ => false,
        };
        if !usable {
            let err = |e: crate::crypt::CryptError| format!("fallback for {}: {e}", md.name);
            let key = keys.key_for(spec)?;
            let cert = make_fallback_cert(&md.domains, &key).map_err(err)?;
            // Key first: a crash in between leaves a mismatch, which the check above repairs.
            write_private(&key_path, &key.to_pem().map_err(err)?)?;
            write_private(&cert_path, &cert.to_pem().map_err(err)?)?;
        }
        out.push((
            cert_path.display().to_string(),
            key_path.display().to_string(),
        ));
    }
    Ok(out)
}

/// Write a file readable by its owner only, atomically (temp file, rename). Not synced to
/// disk: a fallback file that a crash leaves empty or torn is found unusable at the next
/// start and made again, so two fsyncs per MD and key spec (about 0.3 s of a first start
/// with 200 new MDs here) buy nothing.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pem.tmp");
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// What to do with a request for `/.well-known/acme-challenge/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http01 {
    /// Not ours: let other handlers (or another ACME client) answer.
    Decline,
    /// 200 with this body (the key authorization).
    Answer(String),
    /// 404: the MD is ours but has no challenge pending.
    NotFound,
    /// 501: only GET is answered.
    NotImplemented,
    /// 500: the challenge file exists but cannot be read.
    Error(String),
}

/// The first MD that contains `host`, if any; `index` is [`MdIndex::of`] `mds`.
pub fn md_for_host<'a>(
    mds: &'a [ManagedDomain],
    index: &MdIndex,
    host: &str,
) -> Option<&'a ManagedDomain> {
    index.covering(host, false).and_then(|i| mds.get(i))
}

/// Decide an http-01 request. `challenges_dir` is the store's `challenges/` group.
pub fn http01(
    mds: &[ManagedDomain],
    index: &MdIndex,
    challenges_dir: &Path,
    host: &str,
    path: &str,
    is_get: bool,
) -> Http01 {
    let Some(token) = path.strip_prefix(ACME_CHALLENGE_PREFIX) else {
        return Http01::Decline;
    };
    // RFC 8555 8.3: a token is base64url. Anything else ('.', '%', NUL, '/', ...) cannot be a
    // challenge of ours and is left to the rest of httpd.
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Http01::Decline;
    }
    // Only hosts of our MDs, so the file name below is always a configured, validated name.
    let host = host.to_ascii_lowercase();
    // An MD may be named "" (names are not DNS-checked): that would be challenges/ itself.
    if host.is_empty() || host.contains('\0') {
        return Http01::Decline;
    }
    let Some(md) = md_for_host(mds, index, &host) else {
        return Http01::Decline;
    };
    if !md.ca_challenges.is_empty() && !md.ca_challenges.iter().any(|c| c == HTTP_01) {
        return Http01::Decline;
    }
    // Static MDCertificateFiles: we never order for this MD, so a challenge here belongs to
    // another ACME client (e.g. certbot's webroot in DocumentRoot) and must reach it, as in
    // the C module (PR62189).
    if !md.cert_files.is_empty() {
        return Http01::Decline;
    }
    if host.starts_with('.') || host.contains(['/', '\\']) || host.contains("..") {
        return Http01::Decline;
    }
    let file = challenges_dir.join(&host).join(HTTP01_FILE);
    match std::fs::read_to_string(&file) {
        Ok(body) if is_get => Http01::Answer(body),
        Ok(_) => Http01::NotImplemented,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if md.renew_mode == RenewMode::Manual {
                Http01::Decline
            } else {
                Http01::NotFound
            }
        }
        Err(e) => Http01::Error(format!("reading {}: {e}", file.display())),
    }
}

/// What MDRequireHttps does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpsAction {
    /// Nothing.
    None,
    /// Redirect with this status to this URL.
    Redirect {
        /// 301/302 for GET, 308/307 otherwise.
        status: u16,
        /// `https://<host><uri>`.
        location: String,
    },
    /// Add `Strict-Transport-Security` (unless already set).
    Hsts,
}

/// Facts about one request for [`require_https`].
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// Arrived over TLS.
    pub is_tls: bool,
    /// Method is GET (HEAD counts as GET, as in httpd's method numbering).
    pub is_get: bool,
    /// Host name for URLs (IPv6 literals bracketed).
    pub host_for_url: &'a str,
    /// The request URI as sent (path and query).
    pub unparsed_uri: &'a str,
    /// The parsed path.
    pub path: &'a str,
}

/// Decide MDRequireHttps for a request to a vhost whose MD is `md` (`None`: no MD assigned).
pub fn require_https(md: Option<&ManagedDomain>, host: &str, req: &RequestFacts) -> HttpsAction {
    let Some(md) = md else {
        return HttpsAction::None;
    };
    if md.require_https == RequireHttps::Off || req.path.starts_with("/.well-known/") {
        return HttpsAction::None;
    }
    if !md.domains.iter().any(|d| domain_covers(d, host)) {
        return HttpsAction::None;
    }
    if req.is_tls {
        return if md.require_https == RequireHttps::Permanent {
            HttpsAction::Hsts
        } else {
            HttpsAction::None
        };
    }
    let permanent = md.require_https == RequireHttps::Permanent;
    let status = match (permanent, req.is_get) {
        (true, true) => 301,
        (false, true) => 302,
        (true, false) => 308,
        (false, false) => 307,
    };
    HttpsAction::Redirect {
        status,
        location: format!("https://{}{}", req.host_for_url, req.unparsed_uri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mds(lines: &[&str]) -> Vec<ManagedDomain> {
        crate::md::tests_support::mds_from_config(lines)
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("md-serve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reverse_names_of_addresses() {
        assert_eq!(
            ip_of_reverse_name("1.0.0.127.in-addr.arpa").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            ip_of_reverse_name("4.3.2.1.in-addr.arpa.").as_deref(),
            Some("1.2.3.4")
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        assert_eq!(ip_of_reverse_name(v6).as_deref(), Some("2001:db8::1"));
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa";
        assert_eq!(ip_of_reverse_name(v6).as_deref(), Some("::1"));
        for bad in [
            "a.test",
            "1.0.127.in-addr.arpa",
            "256.0.0.127.in-addr.arpa",
            "x.0.0.127.in-addr.arpa",
            "0.0.0.0.1.in-addr.arpa",
            "1.ip6.arpa",
            "11.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        ] {
            assert_eq!(ip_of_reverse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn prewarm_checks_every_pair_once_and_mod_ssl_gets_the_same_answers() {
        use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PairCache, PrivateKey};
        let dir = tmpdir("prewarm");
        let names: Vec<String> = (0..80).map(|i| format!("MDomain m{i}.org")).collect();
        let mut lines = vec!["MDPrivateKeys secp256r1"];
        lines.extend(names.iter().map(String::as_str));
        let list = mds(&lines);
        let other = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        for (i, md) in list.iter().enumerate().skip(1) {
            let d = dir.join("domains").join(&md.name);
            std::fs::create_dir_all(&d).unwrap();
            let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
            let cert = make_fallback_cert(&md.domains, &key).unwrap();
            std::fs::write(d.join("pubcert.secp256r1.pem"), cert.to_pem().unwrap()).unwrap();
            // MD 7 has someone else's key
            let k = if i == 7 { &other } else { &key };
            std::fs::write(d.join("privkey.secp256r1.pem"), k.to_pem().unwrap()).unwrap();
        }
        let pairs = PairCache::new();
        prewarm_pairs(&list, &dir, &pairs);
        // MD 0 has no files: nothing remembered for it; the rest each once
        assert_eq!(pairs.len(), 79);
        let cold = PairCache::new();
        for md in &list {
            assert_eq!(
                cert_files_cached(md, &dir, &pairs),
                cert_files_cached(md, &dir, &cold),
                "{}",
                md.name
            );
        }
        let (files, problems) = cert_files_cached(&list[7], &dir, &pairs);
        assert!(files.is_empty() && problems.len() == 1, "{problems:?}");
        assert_eq!(cert_files_cached(&list[8], &dir, &pairs).0.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cert_files_per_key_spec_skip_missing_and_damaged() {
        use crate::crypt::{make_fallback_cert, EcCurve, KeyType, PrivateKey};
        let dir = tmpdir("cf");
        let list = mds(&["MDPrivateKeys rsa2048 secp384r1", "MDomain a.org"]);
        assert_eq!(cert_files(&list[0], &dir), (vec![], vec![]));
        let d = dir.join("domains").join("a.org");
        std::fs::create_dir_all(&d).unwrap();
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P384)).unwrap();
        let cert = make_fallback_cert(&list[0].domains, &key).unwrap();
        std::fs::write(d.join("pubcert.secp384r1.pem"), cert.to_pem().unwrap()).unwrap();
        std::fs::write(d.join("privkey.secp384r1.pem"), key.to_pem().unwrap()).unwrap();
        std::fs::write(d.join("pubcert.pem"), "x").unwrap();
        let (files, problems) = cert_files(&list[0], &dir);
        assert_eq!(files.len(), 1, "rsa has no key: skipped");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(files[0].0.ends_with("a.org/pubcert.secp384r1.pem"));
        assert!(files[0].1.ends_with("a.org/privkey.secp384r1.pem"));
        // truncated certificate, and a key of another pair: left out, each reported by file
        let pem = cert.to_pem().unwrap();
        std::fs::write(d.join("pubcert.secp384r1.pem"), &pem[..pem.len() / 2]).unwrap();
        let other = PrivateKey::generate(KeyType::Ec(EcCurve::P384)).unwrap();
        std::fs::write(d.join("pubcert.pem"), cert.to_pem().unwrap()).unwrap();
        std::fs::write(d.join("privkey.pem"), other.to_pem().unwrap()).unwrap();
        let (files, problems) = cert_files(&list[0], &dir);
        assert!(files.is_empty(), "{files:?}");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("a.org/pubcert.pem: the certificate does not belong"));
        assert!(
            problems[1]
                .contains("a.org/pubcert.secp384r1.pem: not a readable PEM certificate chain"),
            "{problems:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tls_alpn01_prefers_rsa() {
        let dir = tmpdir("ta");
        let list = mds(&["MDPrivateKeys secp384r1 rsa2048", "MDomain a.org"]);
        assert_eq!(
            tls_alpn01_pems(&list, &MdIndex::of(&list), &dir, "a.org").unwrap(),
            None
        );
        let d = dir.join("a.org");
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in [
            ("acme-tls-alpn-01-pubcert.secp384r1.pem", "ec-cert"),
            ("acme-tls-alpn-01-privkey.secp384r1.pem", "ec-key"),
        ] {
            std::fs::write(d.join(f), v).unwrap();
        }
        let got = tls_alpn01_pems(&list, &MdIndex::of(&list), &dir, "A.org").unwrap();
        assert_eq!(got, Some(("ec-cert".into(), "ec-key".into())));
        std::fs::write(d.join("acme-tls-alpn-01-pubcert.pem"), "rsa-cert").unwrap();
        std::fs::write(d.join("acme-tls-alpn-01-privkey.pem"), "rsa-key").unwrap();
        let got = tls_alpn01_pems(&list, &MdIndex::of(&list), &dir, "a.org").unwrap();
        assert_eq!(got, Some(("rsa-cert".into(), "rsa-key".into())));
        assert_eq!(
            tls_alpn01_pems(&list, &MdIndex::of(&list), &dir, "b.org").unwrap(),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fallback_files_created_once_and_repaired() {
        let dir = tmpdir("fb");
        let list = mds(&["MDPrivateKeys rsa2048 secp384r1", "MDomain a.org www.a.org"]);
        let mut keys = FallbackKeys::default();
        let files = fallback_files(&list[0], &dir, &mut keys).unwrap();
        assert_eq!(files.len(), 2);
        let key_of = |f: &str| {
            let pem = std::fs::read(f).unwrap();
            crate::crypt::PrivateKey::from_pem(&pem, None)
                .unwrap()
                .key_type()
                .unwrap()
        };
        assert_eq!(key_of(&files[0].1), crate::crypt::KeyType::Rsa(2048));
        assert!(matches!(key_of(&files[1].1), crate::crypt::KeyType::Ec(_)));
        assert!(files[0].0.ends_with("domains/a.org/fallback-pubcert.pem"));
        assert!(files[1]
            .1
            .ends_with("domains/a.org/fallback-privkey.secp384r1.pem"));
        let cert1 = std::fs::read(&files[0].0).unwrap();
        let again = fallback_files(&list[0], &dir, &mut keys).unwrap();
        assert_eq!(again, files);
        assert_eq!(
            std::fs::read(&files[0].0).unwrap(),
            cert1,
            "reused, not regenerated"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0].1).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A key that does not match its certificate is replaced.
        std::fs::copy(&files[1].1, &files[0].1).unwrap();
        fallback_files(&list[0], &dir, &mut keys).unwrap();
        assert_ne!(std::fs::read(&files[0].0).unwrap(), cert1);
        // So is a certificate a crash left empty or cut short (these files are not synced).
        for cut in [0, 100] {
            let cert = std::fs::read(&files[1].0).unwrap();
            std::fs::write(&files[1].0, &cert[..cut]).unwrap();
            fallback_files(&list[0], &dir, &mut keys).unwrap();
            let again = std::fs::read(&files[1].0).unwrap();
            assert!(again.len() > cut, "{cut}");
            crate::crypt::Certificate::from_pem(&again).unwrap();
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn http01_answers_only_md_hosts() {
        let dir = tmpdir("h1");
        let list = mds(&["MDomain a.org www.a.org"]);
        std::fs::create_dir_all(dir.join("www.a.org")).unwrap();
        std::fs::write(dir.join("www.a.org").join(HTTP01_FILE), "tok.thumb").unwrap();
        let p = "/.well-known/acme-challenge/tok";
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "WWW.a.org", p, true),
            Http01::Answer("tok.thumb".into())
        );
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "www.a.org", p, false),
            Http01::NotImplemented
        );
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "a.org", p, true),
            Http01::NotFound
        );
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "other.org", p, true),
            Http01::Decline
        );
        assert_eq!(
            http01(
                &list,
                &MdIndex::of(&list),
                &dir,
                "www.a.org",
                "/.well-known/acme-challenge/",
                true
            ),
            Http01::Decline
        );
        assert_eq!(
            http01(
                &list,
                &MdIndex::of(&list),
                &dir,
                "www.a.org",
                "/.well-known/acme-challenge/a/b",
                true
            ),
            Http01::Decline
        );
        assert_eq!(
            http01(
                &list,
                &MdIndex::of(&list),
                &dir,
                "www.a.org",
                "/index.html",
                true
            ),
            Http01::Decline
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn http01_declines_when_not_ours_to_answer() {
        let dir = tmpdir("h2");
        let p = "/.well-known/acme-challenge/tok";
        let list = mds(&["MDCAChallenges dns-01", "MDomain a.org"]);
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "a.org", p, true),
            Http01::Decline
        );
        let list = mds(&["MDRenewMode manual", "MDomain a.org"]);
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "a.org", p, true),
            Http01::Decline
        );
        // Static certificate files: not even a 404, another client's webroot must answer;
        // also when a stale challenge file of ours is still there.
        // (MDCertificateFile is only valid in a section, which mds() does not parse.)
        let mut list = mds(&["MDomain a.org"]);
        list[0].cert_files = vec!["/etc/x/cert.pem".into()];
        list[0].pkey_files = vec!["/etc/x/key.pem".into()];
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "a.org", p, true),
            Http01::Decline
        );
        std::fs::create_dir_all(dir.join("a.org")).unwrap();
        std::fs::write(dir.join("a.org").join(HTTP01_FILE), "stale").unwrap();
        assert_eq!(
            http01(&list, &MdIndex::of(&list), &dir, "a.org", p, true),
            Http01::Decline
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn facts<'a>(tls: bool, get: bool, uri: &'a str) -> RequestFacts<'a> {
        let path = uri.split('?').next().unwrap();
        RequestFacts {
            is_tls: tls,
            is_get: get,
            host_for_url: "a.org",
            unparsed_uri: uri,
            path,
        }
    }

    #[test]
    fn redirects_and_hsts() {
        let perm = mds(&["MDRequireHttps permanent", "MDomain a.org"]);
        let temp = mds(&["MDRequireHttps temporary", "MDomain a.org"]);
        let off = mds(&["MDomain a.org"]);
        let redirect = |status: u16, location: &str| HttpsAction::Redirect {
            status,
            location: location.to_string(),
        };
        let r = require_https(perm.first(), "a.org", &facts(false, true, "/x?q=1"));
        assert_eq!(r, redirect(301, "https://a.org/x?q=1"));
        let r = require_https(perm.first(), "a.org", &facts(false, false, "/x"));
        assert_eq!(r, redirect(308, "https://a.org/x"));
        let r = require_https(temp.first(), "a.org", &facts(false, true, "/"));
        assert_eq!(r, redirect(302, "https://a.org/"));
        let r = require_https(temp.first(), "a.org", &facts(false, false, "/"));
        assert_eq!(r, redirect(307, "https://a.org/"));
        assert_eq!(
            require_https(perm.first(), "a.org", &facts(true, true, "/")),
            HttpsAction::Hsts
        );
        assert_eq!(
            require_https(temp.first(), "a.org", &facts(true, true, "/")),
            HttpsAction::None
        );
        let wk = facts(false, true, "/.well-known/acme-challenge/t");
        assert_eq!(require_https(perm.first(), "a.org", &wk), HttpsAction::None);
        assert_eq!(
            require_https(perm.first(), "b.org", &facts(false, true, "/")),
            HttpsAction::None
        );
        assert_eq!(
            require_https(off.first(), "a.org", &facts(false, true, "/")),
            HttpsAction::None
        );
        assert_eq!(
            require_https(None, "a.org", &facts(false, true, "/")),
            HttpsAction::None
        );
    }

    /// Found by tests/fuzz_parsers.rs: tokens that are not base64url (`%2e%2e`, `..`, NUL)
    /// were answered with the host's key authorization, and the host "" of an MD named ""
    /// read `challenges/acme-http-01.txt`.
    #[test]
    fn http01_only_base64url_tokens_and_real_hosts() {
        let dir = tmpdir("http01-tokens");
        std::fs::create_dir_all(dir.join("a.org")).unwrap();
        std::fs::write(dir.join("a.org").join(HTTP01_FILE), "tok.thumb").unwrap();
        std::fs::write(dir.join(HTTP01_FILE), "not for anyone").unwrap();
        let list = mds(&["MDomain a.org"]);
        let get = |host: &str, token: &str| {
            let path = format!("{ACME_CHALLENGE_PREFIX}{token}");
            http01(&list, &MdIndex::of(&list), &dir, host, &path, true)
        };
        assert_eq!(
            get("a.org", "tok-_09AZ"),
            Http01::Answer("tok.thumb".into())
        );
        for token in [
            "%2e%2e", "..", "%2f", "tok\0", "tok.x", "tok%00", "tok=", "t~",
        ] {
            assert_eq!(get("a.org", token), Http01::Decline, "{token:?}");
        }
        let mut empty = mds(&["MDomain a.org"]);
        empty[0].domains.push(String::new());
        let path = format!("{ACME_CHALLENGE_PREFIX}tok");
        assert_eq!(
            http01(&empty, &MdIndex::default(), &dir, "", &path, true),
            Http01::Decline
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
