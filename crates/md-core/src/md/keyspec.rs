//! Private key specifications (`MDPrivateKeys`): one certificate per spec.

use std::fmt;

/// Smallest RSA key size mod_md accepts.
pub const RSA_MIN_BITS: u32 = 2048;
/// RSA key size of `Default`.
pub const RSA_DEFAULT_BITS: u32 = 2048;

/// One key spec of an MD, e.g. `RSA 3072` or `secp384r1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// `Default`: RSA 2048, named `rsa`.
    Default,
    /// RSA with this many bits.
    Rsa {
        /// Modulus size in bits (>= 2048).
        bits: u32,
    },
    /// Elliptic curve key on the named curve, as configured (e.g. `P-256`, `secp384r1`).
    Ec {
        /// Curve name as written in the config.
        curve: String,
    },
}

impl KeySpec {
    /// The spec's name as used in status output: `rsa` for any RSA spec, else the curve name.
    pub fn name(&self) -> &str {
        match self {
            KeySpec::Default | KeySpec::Rsa { .. } => "rsa",
            KeySpec::Ec { curve } => curve,
        }
    }

    /// File name suffix in the store: none for RSA, `.<lowercased curve>` for EC
    /// (`privkey.secp384r1.pem`).
    pub fn file_suffix(&self) -> String {
        match self {
            KeySpec::Default | KeySpec::Rsa { .. } => String::new(),
            KeySpec::Ec { curve } => format!(".{}", curve.to_ascii_lowercase()),
        }
    }

    /// True for RSA specs (including `Default`).
    pub fn is_rsa(&self) -> bool {
        matches!(self, KeySpec::Default | KeySpec::Rsa { .. })
    }

    /// RSA modulus bits, if this is an RSA spec.
    pub fn rsa_bits(&self) -> Option<u32> {
        match self {
            KeySpec::Default => Some(RSA_DEFAULT_BITS),
            KeySpec::Rsa { bits } => Some(*bits),
            KeySpec::Ec { .. } => None,
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Default => f.write_str("Default"),
            KeySpec::Rsa { bits } => write!(f, "RSA{bits}"),
            KeySpec::Ec { curve } => f.write_str(curve),
        }
    }
}
