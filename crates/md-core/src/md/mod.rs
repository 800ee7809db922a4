//! The managed domain (MD) model: what one `MDomain` resolves to once the config is read.

pub mod challenges;
pub mod index;
pub mod keyspec;

pub use index::MdIndex;
pub use keyspec::KeySpec;

use crate::config::values::{Eab, RenewMode, RequireHttps, DEFAULT_CA_URL};
use crate::config::{EnvSettings, MdDefinition, ModConfig, Origin, Settings};
use crate::time::Timeslice;

/// httpd's placeholder ServerAdmin, which never counts as a contact.
const NO_ADMIN: &str = "[no address given]";

/// One managed domain with every setting resolved (section, else main server, else default).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct ManagedDomain {
    /// The MD's name: its first domain.
    pub name: String,
    /// All DNS names, lower-cased, in order.
    pub domains: Vec<String>,
    /// `mailto:` contact URIs.
    pub contacts: Vec<String>,
    /// MDMembers auto.
    pub transitive: bool,
    pub ca_urls: Vec<String>,
    pub ca_proto: String,
    pub ca_agreement: Option<String>,
    pub ca_challenges: Vec<String>,
    pub private_keys: Vec<KeySpec>,
    /// MDPrivateKeys was given: md.json then records `privkey` also for a lone `Default`, as
    /// the C module does (left out only when the default applies unset).
    pub keys_explicit: bool,
    pub renew_mode: RenewMode,
    pub renew_window: Timeslice,
    pub warn_window: Timeslice,
    pub require_https: RequireHttps,
    pub must_staple: bool,
    pub stapling: bool,
    pub cert_files: Vec<String>,
    pub pkey_files: Vec<String>,
    /// Outgoing settings in effect: the section's, else the global ones.
    pub env: EnvSettings,
    /// The section's own outgoing settings: what md.json records (as the C module does).
    pub env_own: EnvSettings,
    pub eab: Option<Eab>,
    pub profile: Option<String>,
    /// MDPreferredChain (mod_md-rs): among the CA's alternate chains, the one with an issuer
    /// of this name (common name or full name, case-insensitive); the default chain when
    /// none matches. Not in md.json (the C module has no such setting).
    pub preferred_chain: Option<String>,
    pub profile_mandatory: bool,
    pub ari_renewals: bool,
    /// Domains served by an SSL vhost with `acme-tls/1` in `Protocols` (filled at post_config).
    pub acme_tls_1: Vec<String>,
    /// Where the MD was defined.
    pub origin: Origin,
}

/// A ServerAdmin usable as contact: httpd's placeholder for "none set" is not.
pub fn usable_admin(admin: &str) -> Option<&str> {
    (admin != NO_ADMIN && !admin.is_empty()).then_some(admin)
}

/// `mailto:` is prefixed when missing.
pub fn contact_uri(email: &str) -> String {
    if email.to_ascii_lowercase().starts_with("mailto:") {
        email.to_string()
    } else {
        format!("mailto:{email}")
    }
}

impl ManagedDomain {
    /// Resolve a definition: its section's values, else the main server's, else the defaults.
    pub fn resolve(def: &MdDefinition, main: &Settings, mc: &ModConfig) -> ManagedDomain {
        let s = Settings::merge(main, &def.settings);
        Self::resolve_merged(def, &s, mc, None)
    }

    /// As [`ManagedDomain::resolve`], with the main server's ServerAdmin as contact fallback.
    pub fn resolve_with_admin(
        def: &MdDefinition,
        main: &Settings,
        mc: &ModConfig,
        server_admin: Option<&str>,
    ) -> ManagedDomain {
        let s = Settings::merge(main, &def.settings);
        Self::resolve_merged(def, &s, mc, server_admin)
    }

    fn resolve_merged(
        def: &MdDefinition,
        s: &Settings,
        mc: &ModConfig,
        server_admin: Option<&str>,
    ) -> ManagedDomain {
        let contact = s
            .contact
            .clone()
            .or_else(|| server_admin.and_then(usable_admin).map(String::from));
        let env = |f: fn(&EnvSettings) -> &Option<String>| {
            f(&def.env).clone().or_else(|| f(&mc.global.env).clone())
        };
        let has_static = !def.cert_files.is_empty();
        let mut renew_mode = s.renew_mode.unwrap_or(RenewMode::Auto);
        // MDs with static files in auto mode are never renewed (C module 2.5.0).
        if has_static && renew_mode == RenewMode::Auto {
            renew_mode = RenewMode::Manual;
        }
        ManagedDomain {
            name: def.name().to_string(),
            domains: def.domains.clone(),
            contacts: contact.iter().map(|c| contact_uri(c)).collect(),
            transitive: s.transitive.unwrap_or(true),
            ca_urls: s
                .ca_urls
                .clone()
                .unwrap_or_else(|| vec![DEFAULT_CA_URL.to_string()]),
            ca_proto: s.ca_proto.clone().unwrap_or_else(|| "ACME".to_string()),
            ca_agreement: s.ca_agreement.clone(),
            ca_challenges: s.ca_challenges.clone().unwrap_or_default(),
            private_keys: s
                .private_keys
                .clone()
                .unwrap_or_else(|| vec![KeySpec::Default]),
            keys_explicit: s.private_keys.is_some(),
            renew_mode,
            renew_window: s.renew_window.unwrap_or(Timeslice::Percent(33)),
            warn_window: s.warn_window.unwrap_or(Timeslice::Percent(10)),
            require_https: s.require_https.unwrap_or(RequireHttps::Off),
            must_staple: s.must_staple.unwrap_or(false),
            stapling: s.stapling.unwrap_or(false),
            cert_files: def.cert_files.clone(),
            pkey_files: def.key_files.clone(),
            env_own: def.env.clone(),
            env: EnvSettings {
                proxy_url: env(|e| &e.proxy_url),
                ca_certs: env(|e| &e.ca_certs),
                proxy_ca_certs: env(|e| &e.proxy_ca_certs),
                dns01_cmd: env(|e| &e.dns01_cmd),
            },
            eab: s.eab.clone().filter(|e| *e != Eab::None),
            profile: s.profile.clone(),
            preferred_chain: s.preferred_chain.clone(),
            profile_mandatory: s.profile_mandatory.unwrap_or(false),
            ari_renewals: s.ari_renewals.unwrap_or(true),
            acme_tls_1: Vec::new(),
            origin: def.origin.clone(),
        }
    }
}

/// The C module's `state-descr` for a certificate of key spec `spec` that does not cover
/// all names of its MD.
pub fn descr_not_covered(spec: &str) -> String {
    format!("certificate({spec}) does not cover all domains.")
}

/// The C module's `state-descr` for a certificate whose must-staple extension differs from
/// MDMustStaple (`requested`).
pub fn descr_must_staple(requested: bool, spec: &str) -> String {
    let (is, has) = if requested {
        ("", " not")
    } else {
        (" not", "")
    };
    format!("'must-staple' is{is} requested, but certificate({spec}) has it{has} enabled.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ArgValue, Context};

    fn apply(mc: &mut ModConfig, srv: &mut Settings, name: &str, args: &str) {
        let a = ArgValue::Words(args.split_whitespace().map(String::from).collect());
        mc.apply(srv, &Context::default(), name, a).unwrap();
    }

    #[test]
    fn defaults() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        apply(&mut mc, &mut srv, "MDomain", "a.org");
        let md = ManagedDomain::resolve(&mc.mds[0], &srv, &mc);
        assert_eq!(md.ca_urls, vec![DEFAULT_CA_URL]);
        assert_eq!(md.renew_window, Timeslice::Percent(33));
        assert_eq!(md.warn_window, Timeslice::Percent(10));
        assert_eq!(md.private_keys, vec![KeySpec::Default]);
        assert_eq!(md.renew_mode, RenewMode::Auto);
        assert!(md.transitive && md.ari_renewals && !md.must_staple);
        assert!(md.contacts.is_empty());
    }

    #[test]
    fn section_over_main_over_default_and_contacts() {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        apply(&mut mc, &mut srv, "MDContactEmail", "admin@a.org");
        apply(&mut mc, &mut srv, "MDRenewWindow", "10d");
        apply(&mut mc, &mut srv, "MDCACertificateFile", "/etc/ca.pem");
        mc.apply(
            &mut srv,
            &Context::default(),
            "<MDomain",
            ArgValue::Raw("b.org>".into()),
        )
        .unwrap();
        apply(&mut mc, &mut srv, "MDRenewWindow", "20d");
        apply(&mut mc, &mut srv, "MDCertificateFile", "/c.pem");
        apply(&mut mc, &mut srv, "MDCertificateKeyFile", "/k.pem");
        mc.close_section();
        let md = ManagedDomain::resolve(&mc.mds[0], &srv, &mc);
        assert_eq!(md.renew_window.to_string(), "20d");
        assert_eq!(md.contacts, vec!["mailto:admin@a.org"]);
        assert_eq!(md.env.ca_certs.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            md.renew_mode,
            RenewMode::Manual,
            "static files force manual in auto mode"
        );
        let no_contact = Settings {
            contact: None,
            ..srv.clone()
        };
        let md = ManagedDomain::resolve_with_admin(&mc.mds[0], &no_contact, &mc, Some(NO_ADMIN));
        assert!(md.contacts.is_empty());
        let md = ManagedDomain::resolve_with_admin(&mc.mds[0], &no_contact, &mc, Some("w@a.org"));
        assert_eq!(md.contacts, vec!["mailto:w@a.org"]);
    }
}

/// Building MDs in tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::config::{ArgValue, Context};

    /// The MDs a config of `lines` (one directive each, outside sections) resolves to.
    pub fn mds_from_config(lines: &[&str]) -> Vec<ManagedDomain> {
        let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
        for l in lines {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap();
            let args = ArgValue::Words(w.map(String::from).collect());
            mc.apply(&mut srv, &Context::default(), name, args).unwrap();
        }
        mc.mds
            .iter()
            .map(|d| ManagedDomain::resolve(d, &srv, &mc))
            .collect()
    }

    /// A resolved MD for `name` with these key specs.
    pub fn md_with_keys(name: &str, keys: Vec<KeySpec>) -> ManagedDomain {
        let (mut mc, srv) = (ModConfig::default(), Settings::default());
        let mut s = srv.clone();
        let args = ArgValue::Words(vec![name.to_string()]);
        mc.apply(&mut s, &Context::default(), "MDomain", args)
            .unwrap();
        let mut md = ManagedDomain::resolve(&mc.mds[0], &srv, &mc);
        md.private_keys = keys;
        md
    }
}
