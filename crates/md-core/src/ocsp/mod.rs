//! OCSP stapling (SPEC 6, issue 12): certificate ids, requests with a nonce, response checks,
//! the stored record `ocsp/<md or other>/ocsp-<id>.json`, the registry of stapled
//! certificates that the handshake hook reads, and the watchdog pass that keeps their
//! responses fresh.

pub(crate) mod der;
pub mod id;
pub mod request;
pub mod response;
pub mod stapling;
pub mod stored;
pub mod watch;

pub use id::{cert_id, response_file_name, response_store_path, OTHER_GROUP};
pub use request::{build_request, http_request, responder_urls, OcspQuery};
pub use response::{check_response, CheckedResponse, OcspError, MAX_RESPONSE_BYTES};
pub use stapling::{NotStapled, OcspRegistry, Staple, StapledCert};
pub use stored::{CertStatus, StoredResponse, DEFAULT_RENEW_WINDOW};
pub use watch::{purge_old_responses, OcspWatch};
