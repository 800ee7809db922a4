//! md-core: everything mod_md-rs does, with no knowledge of httpd or APR.
//!
//! The Apache module (`mod_md.so`, the root crate) and the `a2md` tool are thin shells over this
//! crate. Module names mirror the C original's (`md_acme`, `md_store`, `md_reg`, ...) so a reader can
//! trace each part; see DESIGN.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Version of mod_md-rs, as printed by `a2md --version` and used in the User-Agent.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod acme;
pub mod apr;
pub mod config;
pub mod crypt;
pub mod drive;
pub mod event;
pub mod http;
pub mod log;
pub mod md;
pub mod ocsp;
pub mod reg;
pub mod serve;
pub mod status;
pub mod store;
pub mod time;
