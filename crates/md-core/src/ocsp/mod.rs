//! OCSP stapling, first layer (SPEC 6, issue 12): certificate ids, requests with a nonce,
//! response checks and the stored record `ocsp/<md or other>/ocsp-<id>.json`.
//!
//! The httpd hooks, the OCSP watchdog and the status tables build on these pieces.

mod der;
pub mod id;
pub mod request;
pub mod response;
pub mod stored;

pub use id::{cert_id, response_file_name, response_store_path, OTHER_GROUP};
pub use request::{build_request, http_request, responder_urls, OcspQuery};
pub use response::{check_response, CheckedResponse, OcspError, MAX_RESPONSE_BYTES};
pub use stored::{CertStatus, StoredResponse, DEFAULT_RENEW_WINDOW};
