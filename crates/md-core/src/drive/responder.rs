//! Puts challenge material where httpd (and the admin's dns-01 command) answer the CA from
//! (SPEC 5.6): `challenges/<domain>/acme-http-01.txt`, tls-alpn-01 certificates per key spec,
//! and `MDChallengeDns01 setup|teardown` calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::acme::{ChallengeMaterial, ChallengeResponder, ChallengeSetup, SetupError};
use crate::crypt::{make_tls_alpn01_cert, KeyType, PrivateKey};
use crate::event::exec::run_command;
use crate::log::{Level, LogSink};
use crate::md::KeySpec;
use crate::serve::HTTP01_FILE;

/// How long a dns-01 command may take.
const DNS01_TIMEOUT: Duration = Duration::from_secs(300);

/// Called with `challenge-setup:<type>:<domain>`; an error aborts the challenge.
pub type SetupHook<'a> = dyn Fn(&str) -> Result<(), String> + Sync + 'a;

/// Challenge responder writing into the store's `challenges/` group.
pub struct StoreResponder<'a> {
    /// The MD's name (for the log lines).
    pub md_name: String,
    /// The MD's domains whose SSL vhost has `acme-tls/1` in `Protocols`: tls-alpn-01 cannot
    /// be answered when there is none, whatever MDCAChallenges says (the C module's rule).
    pub acme_tls_1: Vec<String>,
    /// The `challenges/` directory.
    pub challenges_dir: PathBuf,
    /// Key specs of the MD: one tls-alpn-01 certificate per spec, so that the challenge
    /// replaces the served certificate of the same key type in the handshake.
    pub key_specs: Vec<KeySpec>,
    /// MDChallengeDns01 command line.
    pub dns01_cmd: Option<String>,
    /// MDChallengeDns01Version (2 passes the value to teardown too).
    pub dns01_version: u8,
    /// Where to log command output and teardown failures.
    pub log: &'a dyn LogSink,
    /// Called with `challenge-setup:<type>:<domain>` once the material is in place; an error
    /// aborts this challenge (the attempt fails).
    pub on_setup: Option<&'a SetupHook<'a>>,
}

impl StoreResponder<'_> {
    fn dir_for(&self, domain: &str) -> Result<PathBuf, String> {
        // Identifiers come from the CA's authorization: refuse anything path-like.
        if domain.is_empty() || domain.contains(['/', '\\']) || domain.starts_with('.') {
            return Err(format!("refusing challenge directory for '{domain}'"));
        }
        Ok(self.challenges_dir.join(domain))
    }

    fn write(&self, dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let res = (|| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
            let tmp = dir.join(format!("{name}.tmp"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join(name))
        })();
        res.map_err(|e| format!("writing {}/{name}: {e}", dir.display()))
    }

    /// tls-alpn-01 needs a vhost speaking `acme-tls/1`. For a domain without one, but with
    /// other domains of the MD having it, the C module still tries ("fingers crossed": the
    /// CA may reach the same server under the other name's vhost).
    fn tls_alpn01_possible(&self, domain: &str) -> Result<(), String> {
        if self.acme_tls_1.iter().any(|d| d == domain) {
            return Ok(());
        }
        if self.acme_tls_1.is_empty() {
            let msg = format!(
                "{domain}: protocol 'acme-tls/1' seems not enabled for this or any other \
                 associated domain. Not attempting challenge type tls-alpn-01."
            );
            crate::md_log!(*self.log, Level::Info, "{msg}");
            return Err(msg);
        }
        crate::md_log!(
            *self.log,
            Level::Info,
            "{domain}: protocol 'acme-tls/1' seems not enabled for this domain, but is \
             enabled for other associated domains. Continuing with fingers crossed."
        );
        Ok(())
    }

    /// Why this server cannot answer the challenge type at all, if so.
    fn not_possible(&self, setup: &ChallengeSetup) -> Option<String> {
        match &setup.material {
            ChallengeMaterial::TlsAlpn01 { .. } => self.tls_alpn01_possible(&setup.domain).err(),
            ChallengeMaterial::Dns01 { .. } if self.dns01_cmd.is_none() => {
                Some("dns-01 needs the directive 'MDChallengeDns01'".into())
            }
            _ => None,
        }
    }

    fn run_dns01(&self, args: &[&str]) -> Result<(), String> {
        let cmd = self
            .dns01_cmd
            .as_deref()
            .ok_or("dns-01 needs the directive 'MDChallengeDns01'")?;
        let result = run_command(cmd, args, &[], DNS01_TIMEOUT);
        let (res, out) = match result {
            Ok(out) => (Ok(()), out),
            Err((e, out)) => (Err(e.to_string()), out),
        };
        for line in &out.stderr_lines {
            crate::md_log!(*self.log, Level::Info, "dns-01 command: {line}");
        }
        res
    }
}

impl ChallengeResponder for StoreResponder<'_> {
    fn setup(&self, setup: &ChallengeSetup) -> Result<(), SetupError> {
        let result = match self.not_possible(setup) {
            Some(why) => Err(SetupError::NotPossible(why)),
            None => self
                .put_in_place(setup)
                .and_then(|()| match self.on_setup {
                    Some(f) => f(&format!(
                        "challenge-setup:{}:{}",
                        setup.challenge_type, setup.domain
                    )),
                    None => Ok(()),
                })
                .map_err(SetupError::Failed),
        };
        if let Err(e) = &result {
            // The C module's words: the next offered type is tried.
            crate::md_log!(
                *self.log,
                Level::Info,
                "{e}: md[{md}] while[Setting up challenge '{ct}' for domain {d}] \
                 detail[error setting up challenge '{ct}' for {d}, for domain {d}, looking \
                 for other option]",
                md = self.md_name,
                ct = setup.challenge_type,
                d = setup.domain
            );
        }
        result
    }

    fn teardown(&self, setup: &ChallengeSetup) {
        self.remove(setup)
    }
}

impl StoreResponder<'_> {
    fn put_in_place(&self, setup: &ChallengeSetup) -> Result<(), String> {
        match &setup.material {
            ChallengeMaterial::Http01 { content } => {
                let dir = self.dir_for(&setup.domain)?;
                self.write(&dir, HTTP01_FILE, content.as_bytes(), 0o644)
            }
            ChallengeMaterial::TlsAlpn01 { .. } => {
                let dir = self.dir_for(&setup.domain)?;
                for spec in &self.key_specs {
                    let kt = KeyType::from_spec(spec).map_err(|e| e.to_string())?;
                    let key = PrivateKey::generate(kt).map_err(|e| e.to_string())?;
                    let cert = make_tls_alpn01_cert(&setup.domain, &setup.key_authorization, &key)
                        .map_err(|e| e.to_string())?;
                    let sfx = spec.file_suffix();
                    let key_pem = key.to_pem().map_err(|e| e.to_string())?;
                    let cert_pem = cert.to_pem().map_err(|e| e.to_string())?;
                    self.write(
                        &dir,
                        &format!("acme-tls-alpn-01-privkey{sfx}.pem"),
                        &key_pem,
                        0o600,
                    )?;
                    self.write(
                        &dir,
                        &format!("acme-tls-alpn-01-pubcert{sfx}.pem"),
                        &cert_pem,
                        0o644,
                    )?;
                }
                Ok(())
            }
            ChallengeMaterial::Dns01 { value, .. } => {
                self.run_dns01(&["setup", &setup.domain, value])
            }
        }
    }

    fn remove(&self, setup: &ChallengeSetup) {
        let result = match &setup.material {
            ChallengeMaterial::Dns01 { value, .. } => {
                let mut args = vec!["teardown", setup.domain.as_str()];
                if self.dns01_version >= 2 {
                    args.push(value);
                }
                self.run_dns01(&args)
            }
            _ => match self.dir_for(&setup.domain) {
                Ok(dir) => match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(format!("removing {}: {e}", dir.display()))
                    }
                    _ => Ok(()),
                },
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            crate::md_log!(
                *self.log,
                Level::Warning,
                "challenge teardown for {}: {e}",
                setup.domain
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::ChallengeType;
    use crate::log::NullSink;

    fn responder(dir: &Path, cmd: Option<String>, version: u8) -> StoreResponder<'static> {
        StoreResponder {
            md_name: "a.test".into(),
            acme_tls_1: vec!["a.test".into()],
            challenges_dir: dir.to_path_buf(),
            key_specs: vec![
                KeySpec::Ec {
                    curve: "P-256".into(),
                },
                KeySpec::Default,
            ],
            dns01_cmd: cmd,
            dns01_version: version,
            log: &NullSink,
            on_setup: None,
        }
    }

    fn setup_of(ct: ChallengeType, domain: &str) -> ChallengeSetup {
        let key = PrivateKey::generate(KeyType::Ec(crate::crypt::EcCurve::P256)).unwrap();
        ChallengeSetup::prepare(ct, domain, "tok", "https://ca/chall/1", &key).unwrap()
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("md-resp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn http01_file_written_and_removed() {
        let d = tmp("h");
        let r = responder(&d, None, 1);
        let s = setup_of(ChallengeType::Http01, "a.test");
        r.setup(&s).unwrap();
        let got = std::fs::read_to_string(d.join("a.test").join(HTTP01_FILE)).unwrap();
        assert_eq!(got, s.key_authorization);
        r.teardown(&s);
        assert!(!d.join("a.test").exists());
        assert!(r.setup(&setup_of(ChallengeType::Http01, "../x")).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    /// The C module's rule, also for an explicit MDCAChallenges list: no `acme-tls/1` for any
    /// domain of the MD refuses the setup (the next type is tried); `acme-tls/1` on another
    /// domain of the MD lets it go ahead.
    #[test]
    fn tls_alpn01_needs_acme_tls_1_on_some_domain() {
        let d = tmp("p");
        let mut r = responder(&d, None, 1);
        r.acme_tls_1 = Vec::new();
        let e = r
            .setup(&setup_of(ChallengeType::TlsAlpn01, "a.test"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.test: protocol 'acme-tls/1' seems not enabled for this or any other associated \
             domain. Not attempting challenge type tls-alpn-01."
        );
        assert!(matches!(e, SetupError::NotPossible(_)));
        assert!(!d.join("a.test").exists());
        r.acme_tls_1 = vec!["www.a.test".into()];
        r.setup(&setup_of(ChallengeType::TlsAlpn01, "a.test"))
            .unwrap();
        assert!(d
            .join("a.test")
            .join("acme-tls-alpn-01-pubcert.pem")
            .exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn tls_alpn01_one_certificate_per_key_spec() {
        let d = tmp("t");
        let r = responder(&d, None, 1);
        let s = setup_of(ChallengeType::TlsAlpn01, "a.test");
        r.setup(&s).unwrap();
        let mds = vec![crate::md::tests_support::md_with_keys(
            "a.test",
            r.key_specs.clone(),
        )];
        let (cert, _) =
            crate::serve::tls_alpn01_pems(&mds, &crate::md::MdIndex::of(&mds), &d, "a.test")
                .unwrap()
                .unwrap();
        let c = crate::crypt::Certificate::from_pem(cert.as_bytes()).unwrap();
        let key = std::fs::read(d.join("a.test/acme-tls-alpn-01-privkey.pem")).unwrap();
        let key = PrivateKey::from_pem(&key, None).unwrap();
        assert!(c.matches_key(&key), "RSA files are served first");
        assert!(d
            .join("a.test/acme-tls-alpn-01-pubcert.p-256.pem")
            .is_file());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn dns01_runs_setup_and_teardown_with_version() {
        let d = tmp("d");
        let log = d.join("calls");
        let script = d.join("dns.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = setup_of(ChallengeType::Dns01, "a.test");
        let ChallengeMaterial::Dns01 { value, .. } = &s.material else {
            unreachable!()
        };
        for version in [1, 2] {
            let r = responder(&d, Some(script.display().to_string()), version);
            r.setup(&s).unwrap();
            r.teardown(&s);
        }
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls,
            format!(
                "setup a.test {value}\nteardown a.test\nsetup a.test {value}\nteardown a.test {value}\n"
            )
        );
        let r = responder(&d, None, 1);
        assert_eq!(
            r.setup(&s).unwrap_err(),
            SetupError::NotPossible("dns-01 needs the directive 'MDChallengeDns01'".into())
        );
        let r = responder(&d, Some("/bin/false".into()), 1);
        assert!(matches!(r.setup(&s), Err(SetupError::Failed(_))));
        std::fs::remove_dir_all(d).unwrap();
    }
}
