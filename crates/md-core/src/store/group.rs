//! Store groups (the top-level directories) and what each implies for permissions and keys.

/// A top-level directory of the store (SPEC 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `accounts/`: ACME accounts, keys encrypted.
    Accounts,
    /// `domains/`: active certificates, root-only, keys plain.
    Domains,
    /// `staging/`: renewal work area, written by the child user, keys encrypted.
    Staging,
    /// `challenges/`: per DNS name challenge answers, written by the child user.
    Challenges,
    /// `archive/`: previous `domains/<md>` directories.
    Archive,
    /// `tmp/`: activation work area, root-only.
    Tmp,
    /// `ocsp/`: stapling responses, written by the child user.
    Ocsp,
}

impl Group {
    /// Every group, in the order they are created.
    pub const ALL: [Group; 7] = [
        Group::Accounts,
        Group::Domains,
        Group::Staging,
        Group::Challenges,
        Group::Archive,
        Group::Tmp,
        Group::Ocsp,
    ];

    /// Directory name under the store root.
    pub fn dir(self) -> &'static str {
        match self {
            Group::Accounts => "accounts",
            Group::Domains => "domains",
            Group::Staging => "staging",
            Group::Challenges => "challenges",
            Group::Archive => "archive",
            Group::Tmp => "tmp",
            Group::Ocsp => "ocsp",
        }
    }

    /// Private keys here are plain PEM; everywhere else they are encrypted with the store key.
    /// domains/ and tmp/ are root-only and read by mod_ssl, which has no pass phrase;
    /// challenge keys protect nothing of value.
    pub fn plain_keys(self) -> bool {
        matches!(self, Group::Domains | Group::Challenges | Group::Tmp)
    }

    /// The non-privileged child (the `User`) writes here, so these are chowned to it.
    pub fn child_owned(self) -> bool {
        matches!(self, Group::Staging | Group::Challenges | Group::Ocsp)
    }

    /// Mode of the group directory itself. These are the modes a C module store shows after
    /// a renewal: accounts/ is root-owned and must be readable by the child (it picks the
    /// account there), so it cannot stay at the 0750 of its creation.
    pub fn top_mode(self) -> u32 {
        match self {
            Group::Accounts | Group::Staging | Group::Challenges => 0o755,
            // as the C module creates it (its child, the owner, reads and writes there)
            Group::Ocsp => 0o750,
            Group::Domains | Group::Archive | Group::Tmp => 0o700,
        }
    }

    /// Mode of `<group>/<name>/` directories.
    pub fn dir_mode(self) -> u32 {
        match self {
            Group::Domains | Group::Archive | Group::Tmp => 0o700,
            _ => 0o755,
        }
    }

    /// Mode of ordinary files.
    pub fn file_mode(self) -> u32 {
        match self {
            Group::Domains | Group::Archive | Group::Tmp => 0o600,
            _ => 0o644,
        }
    }
}

/// What a file holds; decides its mode together with the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// JSON document.
    Json,
    /// PEM certificate(s).
    Cert,
    /// PEM private key (plain or encrypted depending on the group).
    PrivateKey,
    /// Other text (e.g. the http-01 key authorization).
    Text,
    /// JSON holding a credential in the clear: md.json or account.json with an EAB hmac
    /// (MDExternalAccountBinding). Never readable by others; the C module leaves these 0644.
    Secret,
}

impl FileKind {
    /// File mode for this kind in `group`: plain private keys are always 0600.
    pub fn mode(self, group: Group) -> u32 {
        match self {
            FileKind::PrivateKey if group.plain_keys() => 0o600,
            // accounts/ is root's and the child must read the account it uses: through the
            // child's group (see `secret_for_child_group`), not through "others".
            FileKind::Secret if group == Group::Accounts => 0o640,
            FileKind::Secret => 0o600,
            _ => group.file_mode(),
        }
    }

    /// True when a file of this kind in `group` is written by root but read by the child:
    /// it gets the child's group (the owner stays root).
    pub fn secret_for_child_group(self, group: Group) -> bool {
        self == FileKind::Secret && group == Group::Accounts
    }
}
