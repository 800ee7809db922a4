//! The ACME transport layer: directory, nonce pool, signed requests, error responses
//! (RFC 8555 §6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::jws::{self, KeyRef};
use super::{Directory, DirectoryError, Problem, RequestError};
use crate::crypt::PrivateKey;
use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};

/// How often a request rejected with `badNonce` is resent. The C module resends 9 times since
/// 2.6.11 (SPEC 5.3); we resend up to 19: a CA that rejects half of all nonces (pebble's
/// `PEBBLE_WFE_NONCEREJECT=50`) makes 9 retries fail about one request in a thousand (10
/// rejections in a row), about 1% of certificates; 19 make that one in a million. A
/// rejected nonce is the CA's doing and costs one round trip, so the bound only has to stop
/// a loop.
pub const DEFAULT_BAD_NONCE_RETRIES: u32 = 19;

/// Nonces kept for later requests (GETs also deliver them, and only POSTs use them).
const MAX_POOLED_NONCES: usize = 8;

/// A pooled nonce older than this is dropped rather than used: a client is shared by the MDs
/// of a CA and kept across renewal passes, and a CA forgets the nonces it handed out some time
/// later (a stale one costs a `badNonce` round trip; a fresh one from newNonce costs the same
/// and logs no rejection).
const NONCE_MAX_AGE: Duration = Duration::from_secs(120);

/// Backoff while polling authorizations and orders (SPEC 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// First wait.
    pub initial: Duration,
    /// Longest single wait (the wait doubles up to this).
    pub max: Duration,
    /// Give up after this long.
    pub deadline: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            deadline: Duration::from_secs(300),
        }
    }
}

/// Tunables of an [`AcmeClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Resends after `badNonce`.
    pub max_bad_nonce_retries: u32,
    /// Polling backoff.
    pub poll: PollPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_bad_nonce_retries: DEFAULT_BAD_NONCE_RETRIES,
            poll: PollPolicy::default(),
        }
    }
}

/// Parse `Retry-After` (RFC 9110 §10.2.3): delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// `Retry-After` of a response, if present and parseable.
pub fn retry_after_of(resp: &HttpResponse) -> Option<Duration> {
    resp.header("Retry-After")
        .and_then(|v| parse_retry_after(v, Utc::now()))
}

/// Turn a non-2xx response into the typed error (problem document or bare status).
pub fn error_from_response(url: &str, resp: &HttpResponse) -> RequestError {
    let retry_after = retry_after_of(resp);
    // Some CAs label problems plain application/json; accept any JSON with a `type`.
    match Problem::from_json(&resp.body) {
        Some(mut problem) => {
            problem.status.get_or_insert(resp.status);
            RequestError::Problem {
                url: url.to_string(),
                status: resp.status,
                problem: Box::new(problem),
                retry_after,
            }
        }
        None => RequestError::Status {
            url: url.to_string(),
            status: resp.status,
            retry_after,
        },
    }
}

/// `max-age` of a response's `Cache-Control` header.
pub fn max_age(resp: &HttpResponse) -> Option<Duration> {
    resp.header("Cache-Control")?
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Deserialize a response body, mapping failure to [`RequestError::BadResponse`].
pub fn parse_json<T: DeserializeOwned>(url: &str, resp: &HttpResponse) -> Result<T, RequestError> {
    serde_json::from_slice(&resp.body).map_err(|e| RequestError::BadResponse {
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// An ACME client bound to one CA directory. Cheap to share by reference; all methods take
/// `&self` (the nonce pool is behind a mutex).
pub struct AcmeClient {
    http: Arc<dyn HttpClient>,
    directory: Directory,
    /// `Cache-Control: max-age` of the directory response, if the CA sent one.
    directory_max_age: Option<Duration>,
    /// Unused nonces with when they arrived. Each is taken out (popped) under the mutex, so
    /// one nonce goes to one request even when several MDs renew at once on this client.
    nonces: Mutex<Vec<(String, Instant)>>,
    requests: AtomicU64,
    options: ClientOptions,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory", &self.directory.url)
            .finish()
    }
}

impl AcmeClient {
    /// Fetch the directory at `url` (SPEC 5.2) and make a client for that CA.
    pub fn connect(http: Arc<dyn HttpClient>, url: &str) -> Result<AcmeClient, DirectoryError> {
        let c = AcmeClient {
            http,
            directory: Directory::unfetched(url),
            directory_max_age: None,
            nonces: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            options: ClientOptions::default(),
        };
        let resp = c
            .send(&HttpRequest::get(url))
            .map_err(|source| match source {
                HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Setup(_) => {
                    DirectoryError::Unreachable {
                        url: url.to_string(),
                        source,
                    }
                }
                HttpError::TooLarge { .. } | HttpError::Body { .. } => {
                    DirectoryError::BadResponse {
                        url: url.to_string(),
                        source,
                    }
                }
            })?;
        let retry_after = retry_after_of(&resp);
        match resp.status {
            200..=299 => {}
            503 => {
                return Err(DirectoryError::Unavailable {
                    url: url.to_string(),
                    retry_after,
                })
            }
            status => {
                return Err(DirectoryError::Status {
                    url: url.to_string(),
                    status,
                    retry_after,
                })
            }
        }
        Ok(AcmeClient {
            directory: Directory::parse(url, &resp.body)?,
            directory_max_age: max_age(&resp),
            ..c
        })
    }

    /// Replace the tunables.
    pub fn with_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// The tunables.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The CA's directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// How long the CA said its directory may be used (`Cache-Control: max-age`), if it did.
    pub fn directory_max_age(&self) -> Option<Duration> {
        self.directory_max_age
    }

    /// HTTP requests sent so far (directory, nonces, signed requests, GETs).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Send one request and keep any `Replay-Nonce` (RFC 8555 §6.5: every response may carry
    /// one, and using them saves a newNonce round trip).
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.http.execute(req)?;
        if let Some(n) = resp.header("Replay-Nonce") {
            let n = n.trim();
            if !n.is_empty() {
                let mut pool = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
                // Unused nonces go stale at the CA; keep only the freshest few.
                if pool.len() >= MAX_POOLED_NONCES {
                    pool.remove(0);
                }
                pool.push((n.to_string(), Instant::now()));
            }
        }
        Ok(resp)
    }

    /// Plain GET (directory, renewalInfo, certificates for display); non-2xx is an error.
    pub fn get(&self, url: &str) -> Result<HttpResponse, RequestError> {
        let resp = self.send(&HttpRequest::get(url))?;
        if !resp.is_success() {
            return Err(error_from_response(url, &resp));
        }
        Ok(resp)
    }

    /// The freshest pooled nonce that is not too old, taken out of the pool.
    fn pooled_nonce(&self) -> Option<String> {
        let mut pool = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        pool.retain(|(_, at)| at.elapsed() < NONCE_MAX_AGE);
        pool.pop().map(|(n, _)| n)
    }

    fn nonce(&self) -> Result<String, RequestError> {
        if let Some(n) = self.pooled_nonce() {
            return Ok(n);
        }
        let url = &self.directory.new_nonce;
        // Not through `send`: the nonce this HEAD brings goes to this request, not into the
        // pool, where another MD's request on this client could take it first.
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.http.execute(&HttpRequest::head(url))?;
        if !resp.is_success() {
            return Err(error_from_response(url, &resp));
        }
        resp.header("Replay-Nonce")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| RequestError::NoNonce { url: url.clone() })
    }

    /// A signed POST (RFC 8555 §6.2). `payload` `None` is POST-as-GET. A `badNonce` answer is
    /// resent with a fresh nonce, up to [`ClientOptions::max_bad_nonce_retries`] times.
    pub fn post(
        &self,
        url: &str,
        key: &PrivateKey,
        key_ref: KeyRef<'_>,
        payload: Option<&Value>,
    ) -> Result<HttpResponse, RequestError> {
        let mut retries = 0;
        loop {
            let nonce = self.nonce()?;
            let body = jws::sign(key, key_ref, &nonce, url, payload)?;
            let req =
                HttpRequest::post(url, "application/jose+json", body.to_string().into_bytes());
            let resp = self.send(&req)?;
            if resp.is_success() {
                return Ok(resp);
            }
            let err = error_from_response(url, &resp);
            if err.problem().is_some_and(|p| p.is("badNonce"))
                && retries < self.options.max_bad_nonce_retries
            {
                retries += 1;
                continue;
            }
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // extremes parse without overflow; the driver caps them (MAX_CA_DELAY)
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("18446744073709551616", now), None);
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(far > Duration::from_secs(7000 * 365 * 86400), "{far:?}");
    }
}
