//! The renewing process's outgoing connections, shared by all its MDs and kept across
//! renewal passes: one HTTP client per distinct [`HttpConfig`] and one ACME client (directory
//! and nonce pool) per CA and config.
//!
//! Each reqwest client runs a runtime thread and loads its trust store, and each ACME client
//! fetches the CA's directory and starts with no nonces; made per MD and renewal, 50 MDs cost
//! 50 of each (issue 15: the renewing child's RSS was 36 MB against the C module's 20 MB).
//! Nothing is built until first asked for, so a registry made in httpd's parent holds no
//! thread or connection across the fork: the clients come to life in the child.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::ari::directory_ttl;
use crate::acme::{AcmeClient, DirectoryError};
use crate::http::{HttpClient, HttpConfig, LazyHttpClient};

/// An ACME client and until when its directory may be used.
struct CachedCa {
    client: Arc<AcmeClient>,
    until: DateTime<Utc>,
}

/// One slot per (CA URL, HTTP settings); its own mutex is held while the directory is
/// fetched, so MDs of one CA renewing at once wait for one fetch while other CAs go on.
type CaSlot = Arc<Mutex<Option<CachedCa>>>;

/// Per-process registry of HTTP and ACME clients (see the module comment).
#[derive(Default)]
pub struct Connections {
    http: Mutex<HashMap<HttpConfig, Arc<LazyHttpClient>>>,
    cas: Mutex<HashMap<(String, HttpConfig), CaSlot>>,
    /// Directories fetched (successful connects): for tests and the debug log.
    connects: AtomicUsize,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("connects", &self.connects())
            .finish()
    }
}

impl Connections {
    /// The HTTP client for `config`, made (lazily) on first use. A client whose building
    /// failed is replaced, so a fixed CA file is picked up at the next attempt as it was when
    /// each renewal made its own client.
    pub fn http(&self, config: &HttpConfig) -> Arc<LazyHttpClient> {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(config) {
            Some(c) if !c.failed() => c.clone(),
            _ => {
                let c = Arc::new(LazyHttpClient::new(config.clone()));
                map.insert(config.clone(), c.clone());
                c
            }
        }
    }

    /// The ACME client of the CA at `ca_url` over `config`: its directory is fetched once and
    /// used for as long as the CA's `Cache-Control: max-age` says (else an hour, as the ARI
    /// cache), its nonce pool shared by every MD of that CA. A failed fetch is not kept: the
    /// next MD or pass asks again.
    pub fn acme(
        &self,
        config: &HttpConfig,
        ca_url: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<AcmeClient>, DateTime<Utc>), DirectoryError> {
        self.acme_over(config, ca_url, now, || self.http(config))
    }

    /// [`Connections::acme`] with the transport made by `make_http` (tests: a fake CA).
    fn acme_over<H: HttpClient + 'static>(
        &self,
        config: &HttpConfig,
        ca_url: &str,
        now: DateTime<Utc>,
        make_http: impl FnOnce() -> Arc<H>,
    ) -> Result<(Arc<AcmeClient>, DateTime<Utc>), DirectoryError> {
        let slot = self
            .cas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((ca_url.to_string(), config.clone()))
            .or_default()
            .clone();
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref().filter(|c| c.until > now) {
            return Ok((c.client.clone(), c.until));
        }
        let http: Arc<dyn HttpClient> = make_http();
        let client = Arc::new(AcmeClient::connect(http, ca_url)?);
        self.connects.fetch_add(1, Ordering::Relaxed);
        let until = now + directory_ttl(client.directory_max_age());
        *slot = Some(CachedCa {
            client: client.clone(),
            until,
        });
        Ok((client, until))
    }

    /// Directories fetched so far.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpError, HttpRequest, HttpResponse};

    #[test]
    fn one_http_client_per_setting() {
        let c = Connections::default();
        let a = HttpConfig::default();
        let b = HttpConfig {
            proxy_url: Some("http://127.0.0.1:1".into()),
            ..HttpConfig::default()
        };
        assert!(Arc::ptr_eq(&c.http(&a), &c.http(&a.clone())));
        assert!(!Arc::ptr_eq(&c.http(&a), &c.http(&b)));
        // nothing is built before a request (no runtime thread in httpd's parent)
        assert!(!c.http(&a).is_built());
    }

    #[test]
    fn a_client_that_failed_to_build_is_replaced() {
        let c = Connections::default();
        let cfg = HttpConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..HttpConfig::default()
        };
        let first = c.http(&cfg);
        let e = first.execute(&HttpRequest::get("https://127.0.0.1:1/"));
        assert!(matches!(e, Err(HttpError::Setup(_))), "{e:?}");
        assert!(first.failed());
        assert!(!Arc::ptr_eq(&first, &c.http(&cfg)));
    }

    /// A CA whose directory allows `max_age` seconds of caching (or says nothing).
    struct Ca {
        max_age: Option<u64>,
        fail: std::sync::atomic::AtomicBool,
        gets: AtomicUsize,
    }

    impl HttpClient for Ca {
        fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Ok(HttpResponse {
                    status: 503,
                    ..Default::default()
                });
            }
            let mut headers = vec![];
            if let Some(s) = self.max_age {
                headers.push(("Cache-Control".into(), format!("public, max-age={s}")));
            }
            assert_eq!(req.url, "https://ca.test/dir");
            Ok(HttpResponse {
                status: 200,
                headers,
                body: br#"{"newNonce":"n","newAccount":"a","newOrder":"o"}"#.to_vec(),
            })
        }
    }

    #[test]
    fn the_directory_is_fetched_once_while_fresh() {
        let now = Utc::now();
        let cfg = HttpConfig::default();
        let url = "https://ca.test/dir";
        // a max-age below 5 minutes counts as 5 minutes
        for (max_age, fresh) in [(None, 3600), (Some(60), 300), (Some(600), 600)] {
            let ca = Arc::new(Ca {
                max_age,
                fail: false.into(),
                gets: 0.into(),
            });
            let c = Connections::default();
            let get = |at| c.acme_over(&cfg, url, at, || ca.clone());
            let (a, until) = get(now).unwrap();
            assert_eq!(until, now + chrono::Duration::seconds(fresh));
            let (b, _) = get(now + chrono::Duration::seconds(fresh - 1)).unwrap();
            assert!(Arc::ptr_eq(&a, &b));
            assert_eq!(ca.gets.load(Ordering::SeqCst), 1);
            // stale: fetched again; a failure is not kept
            ca.fail.store(true, Ordering::SeqCst);
            let later = now + chrono::Duration::seconds(fresh + 1);
            assert!(get(later).is_err());
            ca.fail.store(false, Ordering::SeqCst);
            let (d, _) = get(later).unwrap();
            assert!(!Arc::ptr_eq(&a, &d));
            assert_eq!(ca.gets.load(Ordering::SeqCst), 3);
            assert_eq!(c.connects(), 2);
        }
    }
}
