//! The ACME client (RFC 8555), compatible with accounts and stores of the C mod_md.
//!
//! Layers: [`AcmeClient`] owns the transport, the directory and the nonce pool and signs
//! requests; `account`, `order`, `chain` and `ari` add the resource operations as methods on
//! it; [`AcmeClient::obtain_certificate`] runs a whole order. Every fallible operation has its
//! own error enum with classification methods (`is_retryable`, `retry_after`,
//! `is_input_related`) so the renewal driver never matches strings.

mod account;
mod ari;
mod chain;
mod challenge;
mod client;
mod directory;
mod error;
mod flow;
pub mod jws;
mod order;
mod problem;

pub use account::{normalize_contact, Account, AccountKey, EabCredentials, NewAccount};
pub use ari::{parse_renewal_info, RenewalInfo};
pub use chain::DownloadedCertificate;
pub use challenge::{
    dns01_txt_value, key_authorization, select_and_setup, ChallengeMaterial, ChallengeResponder,
    ChallengeSetup, ChallengeType, SetupError,
};
pub use client::{
    error_from_response, max_age, parse_retry_after, retry_after_of, AcmeClient, ClientOptions,
    PollPolicy, DEFAULT_BAD_NONCE_RETRIES,
};
pub use directory::Directory;
pub use error::{AccountError, AriError, DirectoryError, OrderError, RequestError, StatusClass};
pub use flow::{CertificateRequest, IssuedCertificate};
pub use order::{Authorization, Challenge, Identifier, NewOrder, Order};
pub use problem::{Problem, Subproblem, ACME_ERROR_NS, INPUT_BACKOFF};
