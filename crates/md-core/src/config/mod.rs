//! Configuration: the directive table, value parsers, what directives set, and the post-config
//! checks that link MDs to virtual hosts.

pub mod directives;
pub mod settings;
pub mod values;
pub mod vhosts;

pub use settings::{
    ArgValue, Context, EnvSettings, GlobalSettings, MdDefinition, ModConfig, Origin, Outcome,
    Settings,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::md::KeySpec;
    use crate::time::Timeslice;

    fn words(s: &str) -> ArgValue {
        ArgValue::Words(s.split_whitespace().map(String::from).collect())
    }

    fn run(
        mc: &mut ModConfig,
        srv: &mut Settings,
        name: &str,
        args: ArgValue,
    ) -> Result<Outcome, String> {
        let ctx = Context {
            server_root: "/srv".into(),
            ..Default::default()
        };
        mc.apply(srv, &ctx, name, args)
    }

    #[test]
    fn cluster_directives_are_checked_when_read() {
        let dir = std::env::temp_dir().join(format!("md-cluster-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (db, short, key) = (dir.join("db"), dir.join("short"), dir.join("key"));
        std::fs::write(&db, "host=127.0.0.1 dbname=md\n").unwrap();
        std::fs::write(&short, "0123456789\n").unwrap();
        std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        let mut set = |name: &str, v: &str| run(&mut mc, &mut srv, name, words(v));
        let missing = set("MDClusterDatabase", "/nonexistent/md-cluster.db").unwrap_err();
        assert!(
            missing.contains("cannot read /nonexistent/md-cluster.db"),
            "{missing}"
        );
        let e = set("MDClusterKeyFile", short.to_str().unwrap()).unwrap_err();
        assert!(e.contains("holds 10 bytes, at least 32"), "{e}");
        assert!(set("MDClusterNode", "a:b").is_err());
        assert!(set("MDClusterLease", "500ms").is_err());
        set("MDClusterDatabase", db.to_str().unwrap()).unwrap();
        set("MDClusterKeyFile", key.to_str().unwrap()).unwrap();
        set("MDClusterNode", "web1").unwrap();
        set("MDClusterLease", "20s").unwrap();
        set("MDClusterPoll", "2").unwrap();
        let g = &mc.global;
        assert_eq!(g.cluster_database.as_deref(), db.to_str());
        assert_eq!(g.cluster_key_file.as_deref(), key.to_str());
        assert_eq!(g.cluster_node.as_deref(), Some("web1"));
        assert_eq!(g.cluster_lease, Some(std::time::Duration::from_secs(20)));
        assert_eq!(g.cluster_poll, Some(std::time::Duration::from_secs(2)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mdomain_lowercases_dedups_and_takes_mode() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        run(
            &mut mc,
            &mut srv,
            "MDomain",
            words("A.org www.a.org a.org manual"),
        )
        .unwrap();
        assert_eq!(mc.mds[0].domains, vec!["a.org", "www.a.org"]);
        assert_eq!(mc.mds[0].settings.transitive, Some(false));
        assert_eq!(mc.mds[0].name(), "a.org");
        // no DNS syntax check, as in the C module (the CA refuses such names at renewal)
        run(
            &mut mc,
            &mut srv,
            "MDomain",
            words("bad..name invalid!.a.org"),
        )
        .unwrap();
        assert_eq!(mc.mds[1].domains, vec!["bad..name", "invalid!.a.org"]);
        run(&mut mc, &mut srv, "ManagedDomain", words("legacy.org")).unwrap();
        assert_eq!(mc.mds[2].domains, vec!["legacy.org"]);
    }

    #[test]
    fn sections_scope_settings_to_their_md() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        let out = run(
            &mut mc,
            &mut srv,
            "<MDomain",
            ArgValue::Raw("a.org \"b.org\">".into()),
        );
        assert_eq!(out, Ok(Outcome::WalkSection));
        run(&mut mc, &mut srv, "MDMember", words("c.org auto")).unwrap();
        run(
            &mut mc,
            &mut srv,
            "MDPrivateKeys",
            words("secp384r1 rsa3072"),
        )
        .unwrap();
        run(&mut mc, &mut srv, "MDCertificateFile", words("cert.pem")).unwrap();
        run(&mut mc, &mut srv, "MDHttpProxy", words("http://proxy:3128")).unwrap();
        let e = run(&mut mc, &mut srv, "MDomain", words("x.org")).unwrap_err();
        assert_eq!(e, "MDomain is not allowed inside an '<MDomainSet' context");
        assert!(run(
            &mut mc,
            &mut srv,
            "<MDomainSet",
            ArgValue::Raw("y.org>".into())
        )
        .is_err());
        mc.close_section();
        let md = &mc.mds[0];
        assert_eq!(md.domains, vec!["a.org", "b.org", "c.org"]);
        assert_eq!(md.settings.transitive, Some(true));
        assert_eq!(
            md.settings.private_keys.as_ref().unwrap()[1],
            KeySpec::Rsa { bits: 3072 }
        );
        assert_eq!(md.cert_files, vec!["/srv/cert.pem"]);
        assert_eq!(md.env.proxy_url.as_deref(), Some("http://proxy:3128"));
        assert_eq!(srv, Settings::default());
        assert!(mc.global.env.proxy_url.is_none());
    }

    #[test]
    fn section_errors() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        let e = run(
            &mut mc,
            &mut srv,
            "<MDomainSet",
            ArgValue::Raw("a.org".into()),
        )
        .unwrap_err();
        assert!(e.contains("missing closing '>'"), "{e}");
        let e = run(&mut mc, &mut srv, "<MDomainSet", ArgValue::Raw(" >".into())).unwrap_err();
        assert_eq!(e, "<MDomainSet > section must specify a unique domain name");
        let e = run(&mut mc, &mut srv, "MDCertificateFile", words("x")).unwrap_err();
        assert_eq!(
            e,
            "MDCertificateFile is only valid inside a '<MDomainSet' context, not here"
        );
        let e = run(&mut mc, &mut srv, "MDMember", words("x.org")).unwrap_err();
        assert_eq!(e, "MDMember: unknown value, use \"auto|manual\"");
        let e = run(&mut mc, &mut srv, "MDMember", words("")).unwrap_err();
        assert_eq!(
            e,
            "MDMember is only valid inside a '<MDomainSet' context, not here"
        );
        let e = run(&mut mc, &mut srv, "MDomain", words("")).unwrap_err();
        assert_eq!(e, "MDomain: needs at least one domain name");
    }

    #[test]
    fn server_level_values() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        run(&mut mc, &mut srv, "MDRenewWindow", words("21")).unwrap();
        run(&mut mc, &mut srv, "MDWarnWindow", words("10%")).unwrap();
        run(&mut mc, &mut srv, "MDDriveMode", words("always")).unwrap();
        run(
            &mut mc,
            &mut srv,
            "MDCertificateAuthority",
            words("LetsEncrypt https://ca/dir"),
        )
        .unwrap();
        run(&mut mc, &mut srv, "MDPortMap", words("http:8080 https:-")).unwrap();
        run(
            &mut mc,
            &mut srv,
            "MDMessageCmd",
            ArgValue::Raw("/bin/log 'a b'".into()),
        )
        .unwrap();
        run(&mut mc, &mut srv, "MDStoreDir", words("state/md")).unwrap();
        assert_eq!(srv.renew_window.unwrap().to_string(), "21d");
        assert_eq!(srv.warn_window, Some(Timeslice::Percent(10)));
        assert_eq!(srv.ca_urls.as_ref().unwrap().len(), 2);
        assert_eq!(mc.global.port_map.unwrap().https, None);
        assert_eq!(mc.global.message_cmd.as_deref(), Some("/bin/log 'a b'"));
        assert_eq!(mc.global.store_dir.as_deref(), Some("/srv/state/md"));
    }

    #[test]
    fn bad_values_name_the_directive() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        for (name, args) in [
            ("MDRenewWindow", "100%"),
            ("MDRenewMode", "sometimes"),
            ("MDRetryFailover", "0"),
            ("MDCheckInterval", "0"),
            ("MDRetryDelay", "0s"),
            ("MDPrivateKeys", "RSA 1024"),
            ("MDChallengeDns01Version", "3"),
            ("MDStapling", "maybe"),
            ("MDPortMap", "http:x"),
            ("MDRequireHttps", "always"),
            ("MDMatchNames", "some"),
            ("MDCertificateAuthority", "nonsense"),
            ("MDHttpProxy", "proxy"),
        ] {
            let e = run(&mut mc, &mut srv, name, words(args)).unwrap_err();
            assert!(e.contains(name) || e.contains("MDDriveMode"), "{name}: {e}");
        }
        let ctx = Context {
            help: "Controls renewal.".into(),
            ..Default::default()
        };
        let e = mc
            .apply(&mut srv, &ctx, "MDRenewMode", words("a b"))
            .unwrap_err();
        assert_eq!(e, "MDRenewMode takes one argument, Controls renewal.");
        // The C module's texts, prefixed with the directive where they do not name it.
        let e = run(&mut mc, &mut srv, "MDStapling", words("maybe")).unwrap_err();
        assert_eq!(
            e,
            "MDStapling: unknown 'maybe', supported parameter values are 'on' and 'off'"
        );
        let e = run(&mut mc, &mut srv, "MDRenewWindow", words("100%")).unwrap_err();
        assert_eq!(e, "MDRenewWindow a length of 100% or more is not allowed.");
        let e = run(&mut mc, &mut srv, "MDStaplingRenewWindow", words("soon")).unwrap_err();
        assert_eq!(e, "MDStaplingRenewWindow has unrecognized format");
        // Accepted as by the C module: any agreement value, negative windows (as zero),
        // no CA at all, an empty dns-01 command.
        for (name, args) in [
            ("MDCertificateAgreement", "yes"),
            ("MDRenewWindow", "-5d"),
            ("MDCertificateAuthority", ""),
            ("MDCAChallenges", ""),
        ] {
            run(&mut mc, &mut srv, name, words(args)).unwrap();
        }
        run(
            &mut mc,
            &mut srv,
            "MDChallengeDns01",
            ArgValue::Raw(String::new()),
        )
        .unwrap();
        assert_eq!(mc.global.env.dns01_cmd, None);
    }

    #[test]
    fn directory_context_is_rejected() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        let ctx = Context {
            dir_context_error: Some(
                "MDRequireHttps cannot occur within <Directory> section".into(),
            ),
            ..Default::default()
        };
        let e = mc
            .apply(&mut srv, &ctx, "MDRequireHttps", words("permanent"))
            .unwrap_err();
        assert_eq!(e, "MDRequireHttps cannot occur within <Directory> section");
    }

    #[test]
    fn eab_forms() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        run(
            &mut mc,
            &mut srv,
            "MDExternalAccountBinding",
            words("kid hmac"),
        )
        .unwrap();
        run(&mut mc, &mut srv, "MDExternalAccountBinding", words("NONE")).unwrap();
        assert_eq!(srv.eab, Some(values::Eab::None));
        let dir = std::env::temp_dir().join(format!("md-eab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("eab.json");
        std::fs::write(&f, r#"{"kid": "k1", "hmac": "aGk"}"#).unwrap();
        run(
            &mut mc,
            &mut srv,
            "MDExternalAccountBinding",
            words(f.to_str().unwrap()),
        )
        .unwrap();
        assert_eq!(
            srv.eab,
            Some(values::Eab::Key {
                kid: "k1".into(),
                hmac: "aGk".into()
            })
        );
        let e = run(
            &mut mc,
            &mut srv,
            "MDExternalAccountBinding",
            words("/nonexistent/eab.json"),
        );
        assert_eq!(
            e.unwrap_err(),
            "MDExternalAccountBinding: file not found: /nonexistent/eab.json"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn merge_prefers_vhost_values() {
        let base = Settings {
            contact: Some("a@x".into()),
            stapling: Some(true),
            ..Default::default()
        };
        let add = Settings {
            contact: Some("b@x".into()),
            ..Default::default()
        };
        let m = Settings::merge(&base, &add);
        assert_eq!(m.contact.as_deref(), Some("b@x"));
        assert_eq!(m.stapling, Some(true));
    }
}
