//! The directive table: every mod_md directive with its arity and where it may appear.
//!
//! The C glue (apxs-glue/mod_md.c) lists the same names for httpd; a unit test keeps both lists
//! equal. Canonical names map legacy aliases (`ManagedDomain`, `MDDriveMode`) to today's.

/// How arguments arrive and how many are allowed. The counts mirror the C module's httpd
/// argument kinds, so count errors read exactly as httpd words them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Exactly one word (httpd TAKE1).
    Take1,
    /// Exactly two words (TAKE2).
    Take2,
    /// One or two words (TAKE12).
    Take12,
    /// Any number of words, each applied in turn; none at all is accepted and does nothing
    /// (ITERATE).
    Iterate,
    /// Any number of words, checked by the directive itself.
    List,
    /// The raw rest of the line (sections, command lines).
    Raw,
}

/// Where a directive may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Main server, `<VirtualHost>` and `<MDomain>` sections.
    Anywhere,
    /// Main server and `<VirtualHost>`, not inside an `<MDomain>` section.
    NotInSection,
    /// Only inside an `<MDomain>` section.
    SectionOnly,
    /// Opens an `<MDomain>` section (not nestable).
    OpensSection,
}

/// One directive.
#[derive(Debug, Clone, Copy)]
pub struct Directive {
    /// Name as written in the config (sections with their leading `<`).
    pub name: &'static str,
    /// The current name this one is handled as (itself unless a legacy alias).
    pub canonical: &'static str,
    /// Argument form.
    pub args: Args,
    /// Allowed placement.
    pub place: Place,
}

const fn d(name: &'static str, args: Args, place: Place) -> Directive {
    Directive {
        name,
        canonical: name,
        args,
        place,
    }
}

const fn alias(name: &'static str, canonical: &'static str, args: Args, place: Place) -> Directive {
    Directive {
        name,
        canonical,
        args,
        place,
    }
}

use Args::{Iterate, List, Raw, Take1, Take12, Take2};
use Place::{Anywhere, NotInSection, OpensSection, SectionOnly};

/// All directives, in the order of SPEC.md section 1.
pub const DIRECTIVES: &[Directive] = &[
    d("MDomain", List, NotInSection),
    alias("ManagedDomain", "MDomain", List, NotInSection),
    d("<MDomainSet", Raw, OpensSection),
    alias("<MDomain", "<MDomainSet", Raw, OpensSection),
    alias("<ManagedDomain", "<MDomainSet", Raw, OpensSection),
    d("MDMember", List, Anywhere),
    alias("MDMembers", "MDMember", List, Anywhere),
    d("MDMatchNames", Take1, NotInSection),
    d("MDBaseServer", Take1, NotInSection),
    d("MDCertificateAuthority", Iterate, Anywhere),
    d("MDCertificateProtocol", Take1, Anywhere),
    d("MDCertificateAgreement", Take1, Anywhere),
    d("MDContactEmail", Take1, Anywhere),
    d("MDExternalAccountBinding", Take12, Anywhere),
    d("MDCAChallenges", Iterate, Anywhere),
    d("MDProfile", Take1, Anywhere),
    d("MDProfileMandatory", Take1, Anywhere),
    d("MDRetryFailover", Take1, NotInSection),
    d("MDRenewMode", Take1, Anywhere),
    alias("MDDriveMode", "MDRenewMode", Take1, Anywhere),
    d("MDRenewWindow", Take1, Anywhere),
    d("MDWarnWindow", Take1, Anywhere),
    d("MDRenewViaARI", Take1, Anywhere),
    d("MDCheckInterval", Take1, NotInSection),
    d("MDInitialDelay", Take1, NotInSection),
    d("MDRetryDelay", Take1, NotInSection),
    d("MDActivationDelay", Take1, NotInSection),
    d("MDStoreLocks", Take1, NotInSection),
    d("MDPrivateKeys", List, Anywhere),
    d("MDMustStaple", Take1, Anywhere),
    d("MDCertificateFile", Take1, SectionOnly),
    d("MDCertificateKeyFile", Take1, SectionOnly),
    d("MDPortMap", Take12, NotInSection),
    d("MDChallengeDns01", Raw, Anywhere),
    d("MDChallengeDns01Version", Take1, NotInSection),
    d("MDHttpProxy", Take1, Anywhere),
    d("MDCACertificateFile", Take1, Anywhere),
    d("MDHttpProxyCACertificateFile", Take1, Anywhere),
    d("MDRequireHttps", Take1, Anywhere),
    d("MDNotifyCmd", Raw, NotInSection),
    d("MDMessageCmd", Raw, NotInSection),
    d("MDServerStatus", Take1, Anywhere),
    d("MDCertificateStatus", Take1, Anywhere),
    d("MDCertificateCheck", Take2, Anywhere),
    d("MDStapling", Take1, Anywhere),
    d("MDStapleOthers", Take1, Anywhere),
    d("MDStaplingKeepResponse", Take1, Anywhere),
    d("MDStaplingRenewWindow", Take1, Anywhere),
    d("MDStoreDir", Take1, NotInSection),
    // mod_md-rs only: the parent activates finished renewals with a graceful restart.
    d("MDActivationRestart", Take1, NotInSection),
    // mod_md-rs only: the chain (by an issuer's name) to pick among the CA's alternates.
    d("MDPreferredChain", Take1, Anywhere),
    // mod_md-rs only: cluster mode (MDs shared by several nodes through PostgreSQL).
    d("MDClusterDatabase", Take1, NotInSection),
    d("MDClusterKeyFile", Take1, NotInSection),
    d("MDClusterNode", Take1, NotInSection),
    d("MDClusterLease", Take1, NotInSection),
    d("MDClusterPoll", Take1, NotInSection),
];

/// Look a directive up by its configured name (case-insensitive, as httpd matches them).
pub fn find(name: &str) -> Option<&'static Directive> {
    DIRECTIVES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

impl Args {
    /// Check a word count; errors read as httpd's, with the directive's help text.
    pub fn check_count(&self, name: &str, n: usize, help: &str) -> Result<(), String> {
        let want = match self {
            Args::Take1 if n != 1 => "one argument",
            Args::Take2 if n != 2 => "two arguments",
            Args::Take12 if !(1..=2).contains(&n) => "1-2 arguments",
            _ => return Ok(()),
        };
        Err(format!("{name} takes {want}, {help}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C glue's directive table must list exactly the names of this table, with the raw
    /// ones registered as RAW_ARGS.
    #[test]
    fn glue_table_matches() {
        let glue = include_str!("../../../../apxs-glue/mod_md.c");
        let mut names = Vec::new();
        for line in glue.lines() {
            let line = line.trim();
            for (prefix, raw) in [
                ("MD_ARGV(\"", false),
                ("MD_RAW(\"", true),
                ("AP_INIT_TAKE_ARGV(\"", false),
            ] {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let name = rest.split('"').next().unwrap().to_string();
                    names.push((name, raw));
                }
            }
        }
        assert_eq!(names.len(), DIRECTIVES.len(), "glue: {names:?}");
        for (name, raw) in &names {
            let d = find(name).unwrap_or_else(|| panic!("{name} missing in md-core"));
            assert_eq!(d.args == Args::Raw, *raw, "{name}: raw/argv mismatch");
        }
    }

    #[test]
    fn aliases_are_canonical() {
        assert_eq!(find("managedDOMAIN").unwrap().canonical, "MDomain");
        assert_eq!(find("MDDriveMode").unwrap().canonical, "MDRenewMode");
        assert_eq!(find("<MDomain").unwrap().canonical, "<MDomainSet");
        assert!(find("MDCertificateMonitor").is_none());
    }

    #[test]
    fn counts() {
        assert!(Take1.check_count("X", 1, "h").is_ok());
        assert_eq!(
            Take1.check_count("X", 2, "h").unwrap_err(),
            "X takes one argument, h"
        );
        assert_eq!(
            Take2.check_count("X", 1, "h").unwrap_err(),
            "X takes two arguments, h"
        );
        assert_eq!(
            Take12.check_count("X", 3, "h").unwrap_err(),
            "X takes 1-2 arguments, h"
        );
        assert!(Take12.check_count("X", 2, "h").is_ok());
        assert!(Iterate.check_count("X", 0, "h").is_ok());
        assert!(Raw.check_count("X", 0, "h").is_ok());
    }
}
