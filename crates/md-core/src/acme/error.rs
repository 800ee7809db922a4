//! Errors of the ACME client: one enum per operation, classified by methods.

use std::time::Duration;

use super::Problem;
use crate::apr::AprStatus;
use crate::crypt::CryptError;
use crate::http::HttpError;

/// What an error status without a problem document means (SPEC 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 400: the request was invalid.
    InvalidInput,
    /// 401/403: access denied (Sectigo answers 401).
    AccessDenied,
    /// 404: the resource does not exist (order or account gone).
    NotFound,
    /// 429: too many requests.
    RateLimited,
    /// 503: the service is unavailable.
    Unavailable,
    /// Anything else.
    Unexpected,
}

impl StatusClass {
    /// Classify an HTTP status.
    pub fn of(status: u16) -> StatusClass {
        match status {
            400 => StatusClass::InvalidInput,
            401 | 403 => StatusClass::AccessDenied,
            404 => StatusClass::NotFound,
            429 => StatusClass::RateLimited,
            503 => StatusClass::Unavailable,
            _ => StatusClass::Unexpected,
        }
    }
}

/// Failure of one ACME request (GET, HEAD newNonce or signed POST).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No usable response (connect, timeout, oversized, broken body).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The CA answered with a problem document.
    #[error("{url}: {problem}")]
    Problem {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The problem (boxed: keeps every `Result` small).
        problem: Box<Problem>,
        /// Parsed `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// The CA answered with an error status and no problem document.
    #[error("{url}: unexpected HTTP status {status}")]
    Status {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Parsed `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// A 2xx response we cannot use (not JSON, truncated JSON, missing members).
    #[error("{url}: unusable response: {message}")]
    BadResponse {
        /// Request URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// newNonce returned no `Replay-Nonce`.
    #[error("{url}: the CA sent no Replay-Nonce")]
    NoNonce {
        /// newNonce URL.
        url: String,
    },
    /// Signing failed.
    #[error(transparent)]
    Crypt(#[from] CryptError),
}

impl RequestError {
    /// The problem document, if the CA sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RequestError::Problem { problem, .. } => Some(problem.as_ref()),
            _ => None,
        }
    }

    /// HTTP status of the error response, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Problem { status, .. } | RequestError::Status { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Status classification (SPEC 5.3) for error responses.
    pub fn status_class(&self) -> Option<StatusClass> {
        self.status().map(StatusClass::of)
    }

    /// `Retry-After` the CA asked for (RFC 8555 §6.6, 429/503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Problem { retry_after, .. }
            | RequestError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Caused by our input: do not retry before [`super::problem::INPUT_BACKOFF`].
    pub fn is_input_related(&self) -> bool {
        match self {
            RequestError::Problem { problem, .. } => problem.is_input_related(),
            RequestError::Status { status, .. } => *status == 400,
            _ => false,
        }
    }

    /// The APR status the C module records (its md_acme.c: the problem type's, or the HTTP
    /// status's; transport failures as curl's).
    pub fn apr_status(&self) -> AprStatus {
        match self {
            RequestError::Http(e) => e.apr_status(),
            RequestError::Problem { problem, .. } => problem.apr_status(),
            RequestError::Status { status, .. } => match status {
                400 => AprStatus::EINVAL,
                401 | 403 => AprStatus::EACCES,
                404 => AprStatus::ENOENT,
                _ => AprStatus::EGENERAL,
            },
            RequestError::BadResponse { .. }
            | RequestError::NoNonce { .. }
            | RequestError::Crypt(_) => AprStatus::EGENERAL,
        }
    }

    /// The CA rate-limits us.
    pub fn is_rate_limited(&self) -> bool {
        self.problem().is_some_and(Problem::is_rate_limited) || self.status() == Some(429)
    }

    /// Trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RequestError::Http(e) => e.is_retryable(),
            RequestError::Problem {
                problem, status, ..
            } => problem.is_transient() || *status >= 500 || *status == 429,
            RequestError::Status { status, .. } => *status >= 500 || *status == 429,
            RequestError::BadResponse { .. } | RequestError::NoNonce { .. } => true,
            RequestError::Crypt(_) => false,
        }
    }

    /// The resource is gone (404) or no longer ours (403): start over with a new one.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.status_class(),
            Some(StatusClass::NotFound | StatusClass::AccessDenied)
        )
    }
}

/// Failure to fetch or understand the ACME directory (SPEC 5.2).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No connection to the CA.
    /// The C module's words; the transport failure itself is the `source` (logged
    /// separately, and its class is the job's status).
    #[error(
        "Unsuccessful in contacting ACME server at <{url}>. If this problem persists, please \
         check your network connectivity from your Apache server to the ACME server. Also, older \
         servers might have trouble verifying the certificates of the ACME server. You can check \
         if you are able to contact it manually via the curl command. Sometimes, the ACME server \
         might be down for maintenance, so failing to contact it is not an immediate problem. \
         Apache will continue retrying this."
    )]
    Unreachable {
        /// Directory URL.
        url: String,
        /// The transport failure.
        source: HttpError,
    },
    /// The CA answered, but the response could not be read (oversized, cut off).
    #[error("ACME server at {url} sent an unusable response: {source}")]
    BadResponse {
        /// Directory URL.
        url: String,
        /// The transport failure.
        source: HttpError,
    },
    /// 503 from the CA.
    #[error("ACME server at {url}: Service is Unavailable (503)")]
    Unavailable {
        /// Directory URL.
        url: String,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// Other non-2xx answers.
    #[error("ACME server at {url} responded with HTTP status {status}, unusual")]
    Status {
        /// Directory URL.
        url: String,
        /// The status.
        status: u16,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// An ACMEv1 directory.
    #[error(
        "ACME server speaks version 1 (at {url}), which is no longer supported; configure the \
         ACMEv2 directory URL of this CA"
    )]
    AcmeV1 {
        /// Directory URL.
        url: String,
    },
    /// Neither v1 nor v2.
    #[error("Unable to understand ACME server response from {url}. Wrong ACME protocol version or link?")]
    Unknown {
        /// Directory URL.
        url: String,
    },
    /// A body that is not JSON at all (garbled or cut short on the way, an error page of a
    /// middlebox): the C module's text, but transient, so retried with the normal backoff
    /// (as the C module does) rather than the day an input error waits.
    #[error("Unable to understand ACME server response from {url}. Wrong ACME protocol version or link?")]
    NotJson {
        /// Directory URL.
        url: String,
    },
}

impl DirectoryError {
    /// Trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DirectoryError::Unreachable { source, .. }
            | DirectoryError::BadResponse { source, .. } => source.is_retryable(),
            DirectoryError::Unavailable { .. } | DirectoryError::NotJson { .. } => true,
            DirectoryError::Status { status, .. } => *status >= 500 || *status == 429,
            DirectoryError::AcmeV1 { .. } | DirectoryError::Unknown { .. } => false,
        }
    }

    /// `Retry-After` of the CA.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DirectoryError::Unavailable { retry_after, .. }
            | DirectoryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The configured CA URL is wrong (not a transient condition).
    pub fn is_input_related(&self) -> bool {
        matches!(
            self,
            DirectoryError::AcmeV1 { .. } | DirectoryError::Unknown { .. }
        )
    }

    /// The APR status the C module records.
    pub fn apr_status(&self) -> AprStatus {
        match self {
            DirectoryError::Unreachable { source, .. }
            | DirectoryError::BadResponse { source, .. } => source.apr_status(),
            DirectoryError::Unavailable { .. } => AprStatus::EAGAIN,
            DirectoryError::Status { .. } => AprStatus::EGENERAL,
            DirectoryError::AcmeV1 { .. }
            | DirectoryError::Unknown { .. }
            | DirectoryError::NotJson { .. } => AprStatus::EINVAL,
        }
    }
}

/// Failures of account operations (RFC 8555 §7.3).
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The request failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No contact configured.
    #[error(
        "No contact information is available for registering an account with the CA. Configure \
         one using the MDContactEmail or ServerAdmin directive."
    )]
    NoContact,
    /// The CA has terms of service and none were accepted.
    #[error(
        "The CA requires you to accept its terms of service ({tos}). Read them and, if you agree, \
         configure \"MDCertificateAgreement accepted\"."
    )]
    AgreementRequired {
        /// Terms-of-service URL from the directory.
        tos: String,
    },
    /// The External Account Binding's HMAC is not base64url (the C module's words).
    #[error("external account binding HMAC value is not valid base64")]
    EabHmacInvalid,
    /// The CA returned no account URL (`Location`).
    #[error("the CA returned no account URL (Location header) for {url}")]
    NoLocation {
        /// newAccount URL.
        url: String,
    },
    /// The account exists but is not `valid`.
    #[error("account {url} has status {status}")]
    NotValid {
        /// Account URL.
        url: String,
        /// Its status (deactivated, revoked).
        status: String,
    },
    /// Key trouble.
    #[error(transparent)]
    Crypt(#[from] CryptError),
}

impl AccountError {
    /// The problem document, if any.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AccountError::Request(r) => r.problem(),
            _ => None,
        }
    }

    /// Trying again later (without config change) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AccountError::Request(r) => r.is_retryable(),
            AccountError::NoLocation { .. } => true,
            _ => false,
        }
    }

    /// `Retry-After` of the CA.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AccountError::Request(r) => r.retry_after(),
            _ => None,
        }
    }

    /// The configuration must change first.
    pub fn is_input_related(&self) -> bool {
        match self {
            AccountError::Request(r) => r.is_input_related(),
            AccountError::NoContact | AccountError::AgreementRequired { .. } => true,
            AccountError::EabHmacInvalid => true,
            _ => false,
        }
    }

    /// The APR status the C module records.
    pub fn apr_status(&self) -> AprStatus {
        match self {
            AccountError::Request(r) => r.apr_status(),
            AccountError::NoContact
            | AccountError::AgreementRequired { .. }
            | AccountError::EabHmacInvalid => AprStatus::EINVAL,
            AccountError::NoLocation { .. }
            | AccountError::NotValid { .. }
            | AccountError::Crypt(_) => AprStatus::EGENERAL,
        }
    }

    /// The problem type recorded for a failure the CA did not report (the C module's
    /// `apache:` problems).
    pub fn local_problem(&self) -> Option<&'static str> {
        match self {
            AccountError::EabHmacInvalid => Some("apache:eab-hmac-invalid"),
            _ => None,
        }
    }

    /// The account is unknown, gone or unusable: register a new one.
    pub fn is_account_gone(&self) -> bool {
        match self {
            AccountError::Request(r) => {
                r.is_not_found() || r.problem().is_some_and(|p| p.is("accountDoesNotExist"))
            }
            AccountError::NotValid { .. } => true,
            _ => false,
        }
    }
}

/// Failures while obtaining a certificate (order, authorizations, challenges, finalize,
/// download; RFC 8555 §7.4-7.5).
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// A request failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The CA considers the answer to a challenge invalid.
    #[error("domain authorization for {domain} failed, CA considers answer to challenge invalid{}",
        .problem.as_ref().map(|p| format!(": {p}")).unwrap_or_default())]
    AuthorizationInvalid {
        /// The identifier value.
        domain: String,
        /// The challenge or authorization error.
        problem: Option<Problem>,
    },
    /// None of the offered challenge types is in our list.
    #[error(
        "None of offered challenge types for domain {domain} are supported. The server offered \
         '{offered}' and available are: '{available}'."
    )]
    ChallengeMismatch {
        /// Identifier value.
        domain: String,
        /// Types the CA offered, space separated.
        offered: String,
        /// Types we may use, space separated.
        available: String,
        /// The last type this server could not answer, if one was offered.
        tried: Option<String>,
    },
    /// The setup of an offered type failed (each failure is logged as it happens); the
    /// C module's text, its word order included.
    #[error(
        "None of the offered challenge types {domain} offered for domain {offered} could be \
         setup successfully. Please check the log for errors."
    )]
    ChallengeSetup {
        /// Identifier value.
        domain: String,
        /// Types the CA offered, space separated.
        offered: String,
        /// The last type whose setup was attempted.
        tried: String,
    },
    /// The order became `invalid`.
    #[error("order {url} is invalid{}", .problem.as_ref().map(|p| format!(": {p}")).unwrap_or_default())]
    OrderInvalid {
        /// Order URL.
        url: String,
        /// The order's error.
        problem: Option<Problem>,
    },
    /// Polling did not reach the wanted state before the deadline.
    #[error("timeout waiting for {what} at {url}")]
    Timeout {
        /// What we waited for.
        what: &'static str,
        /// Polled URL.
        url: String,
    },
    /// The downloaded certificate or chain is unusable.
    #[error("certificate from {url}: {message}")]
    BadCertificate {
        /// Certificate URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The issued certificate does not belong to our key.
    #[error("the certificate from {url} does not match the private key")]
    KeyMismatch {
        /// Certificate URL.
        url: String,
    },
    /// Key or CSR trouble.
    #[error(transparent)]
    Crypt(#[from] CryptError),
}

impl OrderError {
    /// The problem document, if any.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            OrderError::Request(r) => r.problem(),
            OrderError::AuthorizationInvalid { problem, .. }
            | OrderError::OrderInvalid { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// Trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            OrderError::Request(r) => r.is_retryable(),
            OrderError::ChallengeMismatch { .. } | OrderError::Crypt(_) => false,
            // A failed validation or setup may well be fixed on the next attempt (DNS, ports).
            _ => !self.is_input_related(),
        }
    }

    /// `Retry-After` of the CA.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OrderError::Request(r) => r.retry_after(),
            _ => None,
        }
    }

    /// The configuration must change first.
    pub fn is_input_related(&self) -> bool {
        match self {
            OrderError::Request(r) => r.is_input_related(),
            OrderError::ChallengeMismatch { .. } => true,
            _ => self.problem().is_some_and(Problem::is_input_related),
        }
    }

    /// The APR status the C module records (challenge and validation failures are
    /// EINVAL there).
    pub fn apr_status(&self) -> AprStatus {
        match self {
            OrderError::Request(r) => r.apr_status(),
            OrderError::ChallengeMismatch { .. }
            | OrderError::AuthorizationInvalid { .. }
            | OrderError::OrderInvalid { .. } => AprStatus::EINVAL,
            // The C module records the failed setup's own status; ours are not APR codes.
            OrderError::ChallengeSetup { .. } => AprStatus::EGENERAL,
            OrderError::Timeout { .. } => AprStatus::TIMEUP,
            OrderError::BadCertificate { .. }
            | OrderError::KeyMismatch { .. }
            | OrderError::Crypt(_) => AprStatus::EGENERAL,
        }
    }
}

/// Failures fetching ARI renewal information (RFC 9773).
#[derive(Debug, thiserror::Error)]
pub enum AriError {
    /// The CA has no renewalInfo resource.
    #[error("the CA offers no renewalInfo")]
    NotSupported,
    /// The certificate has no Authority Key Identifier.
    #[error("certificate has no authority key identifier")]
    NoAuthorityKeyId,
    /// The request failed.
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl AriError {
    /// Trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AriError::Request(r) if r.is_retryable())
    }

    /// `Retry-After` of the CA.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AriError::Request(r) => r.retry_after(),
            _ => None,
        }
    }
}
