//! The command line (SPEC 7): one clap definition gives `--help`, the parser and `a2md.1`.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

/// a2md works directly on a mod_md store directory (MDStoreDir, e.g. /etc/apache2/md).
#[derive(Parser, Debug)]
#[command(
    name = "a2md",
    version,
    about = "Manage the mod_md certificate store and ACME accounts",
    long_about = "a2md manages the certificate store of Apache httpd's mod_md (MDStoreDir): \
                  managed domains, ACME accounts and certificates. It is safe beside a running \
                  httpd: commands that write take the store lock (store.lock, as MDStoreLocks) \
                  and write every file atomically.",
    after_help = "Exit status: 0 on success, 1 when a command fails, 2 for usage errors.",
    disable_version_flag = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    /// ACME directory URL of the CA (acme newreg, add, update).
    #[arg(short = 'a', long = "acme", value_name = "URL", global = true)]
    pub acme: Option<String>,
    /// Root certificates (PEM) trusted for TLS to the CA.
    #[arg(
        short = 'C',
        long = "ca-certs",
        visible_alias = "cafile",
        value_name = "FILE",
        global = true
    )]
    pub ca_certs: Option<PathBuf>,
    /// The store directory (MDStoreDir); required by every command.
    #[arg(short = 'd', long = "dir", value_name = "STORE", global = true)]
    pub dir: Option<PathBuf>,
    /// Output JSON: {"status": n, "output": [...]} ("description" on failure).
    #[arg(short = 'j', long = "json", global = true)]
    pub json: bool,
    /// HTTP proxy for requests to the CA.
    #[arg(short = 'p', long = "proxy", value_name = "URL", global = true)]
    pub proxy: Option<String>,
    /// Less logging (repeatable).
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, global = true)]
    pub quiet: u8,
    /// Terms of service agreed to (URL, or "accepted" for the CA's current ones).
    #[arg(short = 't', long = "terms", value_name = "URL", global = true)]
    pub terms: Option<String>,
    /// More logging (repeatable, up to trace).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print the version as "version: <v>" and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// Print the man page (roff) generated from these definitions and exit.
    #[arg(long = "man", hide = true)]
    pub man: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// ACME accounts: register, delete, agree to terms, validate.
    Acme {
        #[command(subcommand)]
        cmd: AcmeCmd,
    },
    /// Add a managed domain (checked: valid DNS names, no overlap with another MD).
    Add {
        /// DNS names; the first is the MD's name (punycode and *.wildcards allowed).
        #[arg(required = true, value_name = "DOMAIN")]
        domains: Vec<String>,
    },
    /// Change a property of a managed domain (-a also sets its CA).
    Update {
        /// The MD's name.
        #[arg(value_name = "NAME")]
        name: String,
        #[command(subcommand)]
        what: Option<UpdateCmd>,
    },
    /// Obtain or renew certificates now and activate them at once.
    Drive {
        /// Use only this challenge type.
        #[arg(short = 'c', long = "challenge", value_name = "TYPE",
              value_parser = ["http-01", "tls-alpn-01", "dns-01"])]
        challenge: Option<String>,
        /// Renew even when the certificate is not due.
        #[arg(short = 'f', long = "force")]
        force: bool,
        /// Reset: drop what is staged (an unfinished order) and start anew.
        #[arg(short = 'r', long = "reset")]
        reset: bool,
        /// Answer http-01 challenges here (e.g. 0.0.0.0:80) instead of a running httpd.
        #[arg(long = "listen", value_name = "ADDR:PORT")]
        listen: Option<String>,
        /// dns-01 command (as MDChallengeDns01: called with setup|teardown DOMAIN [VALUE]).
        #[arg(long = "dns01-cmd", value_name = "CMD")]
        dns01_cmd: Option<String>,
        /// The MDs to drive (default: all).
        #[arg(value_name = "MD")]
        mds: Vec<String>,
    },
    /// List the managed domains.
    List,
    /// Raw store manipulation (no registry checks).
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// What md-status would show for the store's MDs (a table, or md-status JSON with -j).
    Status {
        /// Only this MD (name or one of its domains).
        #[arg(value_name = "MD")]
        md: Option<String>,
    },
    /// Check the store read-only: files parse, keys match certificates, permissions.
    Check,
}

/// `acme` sub-commands.
#[derive(Subcommand, Debug)]
pub enum AcmeCmd {
    /// Register a new account at the -a CA; prints "registered: <account-id>".
    Newreg {
        /// Contact e-mail addresses (mailto: is added).
        #[arg(required = true, value_name = "CONTACT")]
        contacts: Vec<String>,
    },
    /// Deactivate accounts at their CA and remove them from the store.
    Delreg {
        #[arg(required = true, value_name = "ACCOUNT")]
        accounts: Vec<String>,
    },
    /// Agree to the terms of service (-t URL, else the CA's current ones).
    Agree {
        #[arg(required = true, value_name = "ACCOUNT")]
        accounts: Vec<String>,
    },
    /// Check accounts at their CA; prints "account valid: <id>".
    Validate {
        #[arg(required = true, value_name = "ACCOUNT")]
        accounts: Vec<String>,
    },
}

/// `update <name>` properties.
#[derive(Subcommand, Debug)]
pub enum UpdateCmd {
    /// Replace the MD's DNS names.
    Domains {
        #[arg(required = true, value_name = "DOMAIN")]
        domains: Vec<String>,
    },
    /// Set the CA's directory URL (and protocol, ACME).
    Ca {
        #[arg(value_name = "URL")]
        url: String,
        #[arg(value_name = "PROTO")]
        proto: Option<String>,
    },
    /// Use this account (an id in accounts/).
    Account {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Replace the contacts (mailto: is added).
    Contacts {
        #[arg(required = true, value_name = "EMAIL")]
        contacts: Vec<String>,
    },
    /// Set the agreed terms of service (URL or "accepted").
    Agreement {
        #[arg(value_name = "URL")]
        url: String,
    },
}

/// `store` sub-commands.
#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Create an MD in the store as given.
    Add {
        #[arg(required = true, value_name = "DNS")]
        domains: Vec<String>,
    },
    /// Remove MDs (their md.json) from the store.
    Remove {
        /// No error when an MD is not there.
        #[arg(short = 'f', long = "force")]
        force: bool,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// List the MDs in the store.
    List,
    /// Change an MD in the store as given.
    Update {
        #[arg(value_name = "NAME")]
        name: String,
        #[command(subcommand)]
        what: Option<StoreUpdateCmd>,
    },
}

/// `store update <name>` properties.
#[derive(Subcommand, Debug)]
pub enum StoreUpdateCmd {
    /// Replace the MD's DNS names.
    Domains {
        #[arg(required = true, value_name = "DNS")]
        domains: Vec<String>,
    },
}
