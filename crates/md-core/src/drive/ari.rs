//! ACME Renewal Information for the renewal watchdog (SPEC 5.8, RFC 9773): may the CA's
//! suggested window renew an MD earlier than its renew window?
//!
//! The C module fetches the CA's directory once per MD and check (its issue #403: load on
//! CAs with many certificates). Here one cache per process serves every MD: the directory is
//! fetched once per CA for as long as its `Cache-Control: max-age` says (else an hour; at
//! least 5 minutes, also after a `max-age=0`), and
//! each certificate's renewalInfo is asked again only after its `Retry-After` (else 6 hours,
//! as RFC 9773 §4.3 suggests). The point in the window is drawn once per answer, so the
//! decision does not wander between checks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::acme::parse_renewal_info;
use crate::acme::Directory;
use crate::acme::{max_age, retry_after_of};
use crate::http::{HttpClient, HttpRequest, HttpResponse};
use crate::log::{Level, LogSink};
use crate::md::ManagedDomain;

use super::check::ActiveCerts;

/// The shortest time a directory is used, whatever its `Cache-Control` says.
const DIRECTORY_MIN_TTL: Duration = Duration::from_secs(300);
/// How long a directory is used without `Cache-Control: max-age`.
pub(crate) const DIRECTORY_TTL: Duration = Duration::from_secs(3600);
/// How long a renewalInfo answer is used without `Retry-After`.
const INFO_TTL: Duration = Duration::from_secs(6 * 3600);
/// Bounds on what a CA may ask for: not more often than each second, at least daily.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(86400);

#[derive(Debug, Clone)]
struct CachedDirectory {
    renewal_info: Option<String>,
    until: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct CachedInfo {
    /// The point in the suggested window this process renews at.
    at: DateTime<Utc>,
    explanation: Option<String>,
    until: DateTime<Utc>,
}

/// What the CA's renewal information says for an MD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AriAdvice {
    /// The earliest suggested renewal time over the MD's certificates.
    pub at: DateTime<Utc>,
    /// Key specs (indices) whose suggested time has come.
    pub due: Vec<usize>,
    /// The CA's explanation URL, if it gave one for a due certificate.
    pub explanation: Option<String>,
}

/// The per-process ARI cache (directories per CA, answers per certificate id).
#[derive(Debug, Default)]
pub struct AriCache {
    directories: Mutex<HashMap<String, CachedDirectory>>,
    infos: Mutex<HashMap<String, CachedInfo>>,
    /// Requests made (directory, renewalInfo): for tests and the debug log.
    pub fetches: Mutex<(usize, usize)>,
}

/// How long a directory with this `max-age` is used: at least [`DIRECTORY_MIN_TTL`] (a
/// `max-age=0`, pebble sends one, must not make every renewal pass fetch it again and build
/// an HTTP client for it), else [`DIRECTORY_TTL`] without one.
pub(crate) fn directory_ttl(max_age: Option<Duration>) -> chrono::Duration {
    ttl(max_age.map(|a| a.max(DIRECTORY_MIN_TTL)), DIRECTORY_TTL)
}

pub(crate) fn ttl(d: Option<Duration>, default: Duration) -> chrono::Duration {
    let d = d.unwrap_or(default).clamp(MIN_TTL, MAX_TTL);
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::hours(1))
}

fn get(http: &dyn HttpClient, url: &str) -> Result<HttpResponse, String> {
    let resp = http
        .execute(&HttpRequest::get(url))
        .map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("{url}: HTTP status {}", resp.status));
    }
    Ok(resp)
}

impl AriCache {
    /// Take the renewalInfo base of the CA at `ca_url` from a directory fetched elsewhere in
    /// this process (the renewals' shared ACME client), valid until `until`: one fetch serves
    /// both.
    pub(crate) fn remember_directory(
        &self,
        ca_url: &str,
        renewal_info: Option<String>,
        until: DateTime<Utc>,
    ) {
        let mut dirs = self.directories.lock().unwrap_or_else(|p| p.into_inner());
        let known = dirs.get(ca_url).is_some_and(|d| d.until >= until);
        if !known {
            dirs.insert(
                ca_url.to_string(),
                CachedDirectory {
                    renewal_info,
                    until,
                },
            );
        }
    }

    /// The renewalInfo base URL of the CA at `ca_url` (None: the CA has no ARI).
    fn renewal_info_base(
        &self,
        http: &dyn HttpClient,
        ca_url: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, String> {
        // Held while fetching: MDs checked at once wait for the one fetch.
        let mut dirs = self.directories.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = dirs.get(ca_url).filter(|d| d.until > now) {
            return Ok(d.renewal_info.clone());
        }
        self.fetches.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        let resp = get(http, ca_url)?;
        let dir = Directory::parse(ca_url, &resp.body).map_err(|e| e.to_string())?;
        let entry = CachedDirectory {
            renewal_info: dir.renewal_info,
            until: now + directory_ttl(max_age(&resp)),
        };
        dirs.insert(ca_url.to_string(), entry.clone());
        Ok(entry.renewal_info)
    }

    /// The cached or fetched answer for certificate `id`.
    fn info(
        &self,
        http: &dyn HttpClient,
        base: &str,
        id: &str,
        now: DateTime<Utc>,
        r: f64,
    ) -> Result<CachedInfo, String> {
        let url = format!("{}/{id}", base.trim_end_matches('/'));
        if let Some(i) = self
            .infos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&url)
            .filter(|i| i.until > now)
        {
            return Ok(i.clone());
        }
        self.fetches.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
        let resp = get(http, &url)?;
        let info = parse_renewal_info(&url, &resp.body).map_err(|e| e.to_string())?;
        let entry = CachedInfo {
            at: info.pick(r),
            explanation: info.explanation_url.clone(),
            until: now + ttl(retry_after_of(&resp), INFO_TTL),
        };
        self.infos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url, entry.clone());
        Ok(entry)
    }

    /// What the first configured CA suggests for `md`'s active certificates (those with an
    /// ARI id). `None` when the CA has no ARI, no certificate has an id, or asking failed
    /// (logged; the renew window decides then). `r` draws the point in a fresh window.
    pub fn advise(
        &self,
        md: &ManagedDomain,
        active: &ActiveCerts,
        http: &dyn HttpClient,
        now: DateTime<Utc>,
        r: &dyn Fn() -> f64,
        log: &dyn LogSink,
    ) -> Option<AriAdvice> {
        let ca_url = md.ca_urls.first()?;
        let ids: Vec<(usize, &String)> = active
            .ari_ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| id.as_ref().map(|id| (i, id)))
            .collect();
        if ids.is_empty() {
            return None;
        }
        let base = match self.renewal_info_base(http, ca_url, now) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                crate::md_log!(*log, Level::Debug, "{}: ARI: directory: {e}", md.name);
                return None;
            }
        };
        let mut advice: Option<AriAdvice> = None;
        for (i, id) in ids {
            let info = match self.info(http, &base, id, now, r()) {
                Ok(info) => info,
                Err(e) => {
                    crate::md_log!(*log, Level::Warning, "{}: ARI: {e}", md.name);
                    continue;
                }
            };
            let a = advice.get_or_insert(AriAdvice {
                at: info.at,
                due: vec![],
                explanation: None,
            });
            a.at = a.at.min(info.at);
            if info.at <= now {
                a.due.push(i);
                a.explanation = a.explanation.take().or(info.explanation);
            }
        }
        advice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A CA with ARI: the directory and one window for every certificate.
    struct Ca {
        window: Mutex<(String, String)>,
        retry_after: Option<&'static str>,
        requests: AtomicUsize,
    }

    impl HttpClient for Ca {
        fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let (body, headers) = if req.url.ends_with("/dir") {
                (
                    r#"{"newNonce":"https://ca/n","newAccount":"https://ca/a","newOrder":"https://ca/o",
                        "renewalInfo":"https://ca/ari/"}"#
                        .to_string(),
                    vec![("Cache-Control".into(), "public, max-age=600".into())],
                )
            } else {
                let w = self.window.lock().unwrap();
                let mut h = vec![];
                if let Some(r) = self.retry_after {
                    h.push(("Retry-After".to_string(), r.to_string()));
                }
                (
                    format!(
                        r#"{{"suggestedWindow":{{"start":"{}","end":"{}"}},
                            "explanationURL":"https://ca/why"}}"#,
                        w.0, w.1
                    ),
                    h,
                )
            };
            Ok(HttpResponse {
                status: 200,
                headers,
                body: body.into_bytes(),
            })
        }
    }

    fn md() -> ManagedDomain {
        let mut m = crate::md::tests_support::mds_from_config(&["MDomain a.test"]).remove(0);
        m.ca_urls = vec!["https://ca/dir".into()];
        m
    }

    fn active(ids: &[Option<&str>]) -> ActiveCerts {
        ActiveCerts {
            certs: vec![None; ids.len()],
            ari_ids: ids.iter().map(|i| i.map(String::from)).collect(),
            forced: vec![false; ids.len()],
            ..Default::default()
        }
    }

    #[test]
    fn window_in_the_past_is_due_in_the_future_is_not() {
        let ca = Ca {
            window: Mutex::new(("2020-01-01T00:00:00Z".into(), "2020-01-02T00:00:00Z".into())),
            retry_after: Some("1"),
            requests: AtomicUsize::new(0),
        };
        let cache = AriCache::default();
        let now = Utc::now();
        let log = crate::log::NullSink;
        let a = cache
            .advise(
                &md(),
                &active(&[Some("k.s"), None]),
                &ca,
                now,
                &|| 0.0,
                &log,
            )
            .unwrap();
        assert_eq!(a.due, vec![0]);
        assert_eq!(a.explanation.as_deref(), Some("https://ca/why"));
        // a window in the future, seen once the answer's Retry-After (1 s) has passed
        *ca.window.lock().unwrap() = ("2099-01-01T00:00:00Z".into(), "2099-01-02T00:00:00Z".into());
        let later = now + chrono::Duration::seconds(2);
        let a = cache
            .advise(&md(), &active(&[Some("k.s")]), &ca, later, &|| 0.0, &log)
            .unwrap();
        assert!(a.due.is_empty() && a.at > later);
        // no ids: nothing asked
        assert!(cache
            .advise(&md(), &active(&[None]), &ca, later, &|| 0.0, &log)
            .is_none());
    }

    #[test]
    fn many_mds_share_one_directory_fetch_and_answers_are_cached() {
        let ca = Ca {
            window: Mutex::new(("2099-01-01T00:00:00Z".into(), "2099-01-02T00:00:00Z".into())),
            retry_after: None,
            requests: AtomicUsize::new(0),
        };
        let cache = AriCache::default();
        let now = Utc::now();
        let log = crate::log::NullSink;
        for n in 0..200 {
            let id = format!("k.{n}");
            cache.advise(&md(), &active(&[Some(&id)]), &ca, now, &|| 0.0, &log);
        }
        assert_eq!(*cache.fetches.lock().unwrap(), (1, 200));
        // a second check: everything from the cache
        for n in 0..200 {
            let id = format!("k.{n}");
            cache.advise(&md(), &active(&[Some(&id)]), &ca, now, &|| 0.0, &log);
        }
        assert_eq!(*cache.fetches.lock().unwrap(), (1, 200));
        assert_eq!(ca.requests.load(Ordering::SeqCst), 201);
        // max-age=600: after 10 minutes the directory is fetched again
        let later = now + chrono::Duration::seconds(601);
        cache.advise(&md(), &active(&[Some("k.0")]), &ca, later, &|| 0.0, &log);
        assert_eq!(cache.fetches.lock().unwrap().0, 2);
    }
}
