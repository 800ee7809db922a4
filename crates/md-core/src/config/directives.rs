//! The directive table: every mod_md directive with its arity and where it may appear.
//!
//! The C glue (apxs-glue/mod_md.c) lists the same names for httpd; a unit test keeps both lists
//! equal. Canonical names map legacy aliases (`ManagedDomain`, `MDDriveMode`) to today's.

/// How arguments arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Tokenized by httpd; minimum and maximum count (`usize::MAX` = no limit).
    Words(usize, usize),
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

const ANY: usize = usize::MAX;

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

use Args::{Raw, Words};
use Place::{Anywhere, NotInSection, OpensSection, SectionOnly};

/// All directives, in the order of SPEC.md section 1.
pub const DIRECTIVES: &[Directive] = &[
    d("MDomain", Words(1, ANY), NotInSection),
    alias("ManagedDomain", "MDomain", Words(1, ANY), NotInSection),
    d("<MDomainSet", Raw, OpensSection),
    alias("<MDomain", "<MDomainSet", Raw, OpensSection),
    alias("<ManagedDomain", "<MDomainSet", Raw, OpensSection),
    d("MDMember", Words(1, ANY), Anywhere),
    alias("MDMembers", "MDMember", Words(1, ANY), Anywhere),
    d("MDMatchNames", Words(1, 1), NotInSection),
    d("MDBaseServer", Words(1, 1), NotInSection),
    d("MDCertificateAuthority", Words(1, ANY), Anywhere),
    d("MDCertificateProtocol", Words(1, 1), Anywhere),
    d("MDCertificateAgreement", Words(1, 1), Anywhere),
    d("MDContactEmail", Words(1, 1), Anywhere),
    d("MDExternalAccountBinding", Words(1, 2), Anywhere),
    d("MDCAChallenges", Words(1, ANY), Anywhere),
    d("MDProfile", Words(1, 1), Anywhere),
    d("MDProfileMandatory", Words(1, 1), Anywhere),
    d("MDRetryFailover", Words(1, 1), NotInSection),
    d("MDRenewMode", Words(1, 1), Anywhere),
    alias("MDDriveMode", "MDRenewMode", Words(1, 1), Anywhere),
    d("MDRenewWindow", Words(1, 1), Anywhere),
    d("MDWarnWindow", Words(1, 1), Anywhere),
    d("MDRenewViaARI", Words(1, 1), Anywhere),
    d("MDCheckInterval", Words(1, 1), NotInSection),
    d("MDInitialDelay", Words(1, 1), NotInSection),
    d("MDRetryDelay", Words(1, 1), NotInSection),
    d("MDActivationDelay", Words(1, 1), NotInSection),
    d("MDStoreLocks", Words(1, 1), NotInSection),
    d("MDPrivateKeys", Words(1, ANY), Anywhere),
    d("MDMustStaple", Words(1, 1), Anywhere),
    d("MDCertificateFile", Words(1, 1), SectionOnly),
    d("MDCertificateKeyFile", Words(1, 1), SectionOnly),
    d("MDPortMap", Words(1, 2), NotInSection),
    d("MDChallengeDns01", Raw, Anywhere),
    d("MDChallengeDns01Version", Words(1, 1), NotInSection),
    d("MDHttpProxy", Words(1, 1), Anywhere),
    d("MDCACertificateFile", Words(1, 1), Anywhere),
    d("MDHttpProxyCACertificateFile", Words(1, 1), Anywhere),
    d("MDRequireHttps", Words(1, 1), Anywhere),
    d("MDNotifyCmd", Raw, NotInSection),
    d("MDMessageCmd", Raw, NotInSection),
    d("MDServerStatus", Words(1, 1), Anywhere),
    d("MDCertificateStatus", Words(1, 1), Anywhere),
    d("MDCertificateCheck", Words(2, 2), Anywhere),
    d("MDStapling", Words(1, 1), Anywhere),
    d("MDStapleOthers", Words(1, 1), Anywhere),
    d("MDStaplingKeepResponse", Words(1, 1), Anywhere),
    d("MDStaplingRenewWindow", Words(1, 1), Anywhere),
    d("MDStoreDir", Words(1, 1), NotInSection),
];

/// Look a directive up by its configured name (case-insensitive, as httpd matches them).
pub fn find(name: &str) -> Option<&'static Directive> {
    DIRECTIVES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

impl Args {
    /// Check a word count, with httpd-like wording.
    pub fn check_count(&self, name: &str, n: usize) -> Result<(), String> {
        let Args::Words(min, max) = *self else {
            return Ok(());
        };
        let ok = n >= min && n <= max;
        if ok {
            return Ok(());
        }
        let want = match (min, max) {
            (1, 1) => "one argument".to_string(),
            (a, b) if a == b => format!("{a} arguments"),
            (1, ANY) => "at least one argument".to_string(),
            (a, ANY) => format!("at least {a} arguments"),
            (a, b) => format!("{a} to {b} arguments"),
        };
        Err(format!("{name} takes {want}"))
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
        assert!(Words(1, 1).check_count("X", 1).is_ok());
        assert_eq!(
            Words(1, 1).check_count("X", 2).unwrap_err(),
            "X takes one argument"
        );
        assert_eq!(
            Words(2, 2).check_count("X", 1).unwrap_err(),
            "X takes 2 arguments"
        );
        assert!(Words(1, ANY).check_count("X", 0).is_err());
        assert!(Raw.check_count("X", 0).is_ok());
    }
}
