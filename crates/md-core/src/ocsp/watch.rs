//! One pass of the OCSP watchdog (SPEC 6): fetch a new response for every stapled
//! certificate whose renewal is due within the next minute (up to [`MAX_PARALLEL`] requests at
//! once), check it, store it, record the outcome in `ocsp/<md or other>/job.json`, raise
//! `ocsp-renewed` / `ocsp-errored`, and say when the next pass is due.
//!
//! A failed fetch never touches the response in use: the last good one stays stapled until it
//! expires. Errors back off per certificate with the renewal formula (MDRetryDelay doubled per
//! error, capped at a day, jittered).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use super::request::{build_request, http_request};
use super::response::{check_response, OcspError};
use super::stapling::{OcspRegistry, StapledCert};
use super::stored::{self, StoredResponse};
use crate::apr::AprStatus;
use crate::drive::job::{log_entry, set_last, RunResult};
use crate::event::Events;
use crate::http::{HttpClient, HttpError};
use crate::log::{Level, LogSink};
use crate::store::{Group, JobRecord, Store, StoreExt};
use crate::time::{jittered, retry_delay};

/// Requests in flight at once.
pub const MAX_PARALLEL: usize = 6;
/// Certificates due within this much are fetched in the current pass.
const LOOKAHEAD: ChronoDuration = ChronoDuration::minutes(1);
/// Longest pause between passes.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be sent or the answer not read.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The responder answered with an HTTP error status.
    #[error("OCSP responder {url} answered HTTP status {status}")]
    Status {
        /// Responder URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The answer is not an acceptable response for the certificate.
    #[error("{0}")]
    Response(#[from] OcspError),
    /// The response could not be stored.
    #[error("storing the OCSP response: {0}")]
    Store(String),
}

impl FetchError {
    /// The responder answered (the failure is in what it said, not in reaching it).
    pub fn got_answer(&self) -> bool {
        !matches!(self, FetchError::Http(_))
    }

    /// The APR status recorded in job.json.
    pub fn apr_status(&self) -> AprStatus {
        match self {
            FetchError::Http(e) => e.apr_status(),
            FetchError::Store(_) => AprStatus::EGENERAL,
            // as the C module, which reads an HTTP error's body as a bad response
            FetchError::Status { .. } | FetchError::Response(_) => AprStatus::EINVAL,
        }
    }
}

/// The per-certificate schedule, kept in the watchdog's process.
#[derive(Debug, Default, Clone)]
struct Schedule {
    next_run: Option<DateTime<Utc>>,
    errors: u32,
}

/// The OCSP watchdog's state in its child.
pub struct OcspWatch {
    /// The primed certificates.
    pub registry: Arc<OcspRegistry>,
    /// MDRetryDelay, the base of the backoff.
    pub retry_delay: Duration,
    /// MDMessageCmd.
    pub events: Events,
    schedule: Mutex<HashMap<String, Schedule>>,
}

/// What fetching one certificate's response gave.
struct Fetched<'a> {
    cert: &'a StapledCert,
    result: Result<StoredResponse, FetchError>,
}

impl OcspWatch {
    /// A watch over `registry`.
    pub fn new(registry: Arc<OcspRegistry>, retry_delay: Duration, events: Events) -> Self {
        OcspWatch {
            registry,
            retry_delay,
            events,
            schedule: Mutex::new(HashMap::new()),
        }
    }

    /// When the response of `c` should be fetched: the backoff after an error, else the start
    /// of the renew window of the response in use (read anew from the store, which another
    /// child or an older generation may have updated), else now.
    fn due(&self, c: &StapledCert, now: DateTime<Utc>) -> DateTime<Utc> {
        let sched = self.sched(c);
        if let Some(t) = sched.next_run.filter(|_| sched.errors > 0) {
            return t;
        }
        match self.registry.refresh_from_store(c) {
            Some(r) => r.renew_at(&self.registry.window()).min(r.valid.until),
            None => now,
        }
    }

    fn sched(&self, c: &StapledCert) -> Schedule {
        let map = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&c.id).cloned().unwrap_or_default()
    }

    fn set_sched(&self, c: &StapledCert, s: Schedule) {
        let mut map = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(c.id.clone(), s);
    }

    /// Run one pass at `now`; returns the pause until the next one.
    pub fn run_pass(
        &self,
        store: &(dyn Store + Sync),
        http: &dyn HttpClient,
        log: &(dyn LogSink + Sync),
        now: DateTime<Utc>,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Duration {
        let due: Vec<&StapledCert> = self
            .registry
            .certs()
            .iter()
            .map(|c| c.as_ref())
            .filter(|c| self.due(c, now) <= now + LOOKAHEAD)
            .collect();
        let fetched = fetch_all(&due, http, store, log, stopping);
        // job.json per group, written once per pass
        let mut by_group: BTreeMap<String, Vec<Fetched>> = BTreeMap::new();
        for f in fetched {
            by_group
                .entry(f.cert.group().to_string())
                .or_default()
                .push(f);
        }
        for (group, results) in by_group {
            self.record(store, log, &group, results, now);
        }
        let now = Utc::now();
        let next = self
            .registry
            .certs()
            .iter()
            .map(|c| self.due(c, now))
            .min()
            .map(|t| (t - now).to_std().unwrap_or_default())
            .unwrap_or(MAX_PAUSE);
        next.clamp(Duration::from_secs(1), MAX_PAUSE)
    }

    /// Update the schedules and `ocsp/<group>/job.json` with the results of one group.
    fn record(
        &self,
        store: &(dyn Store + Sync),
        log: &(dyn LogSink + Sync),
        group: &str,
        results: Vec<Fetched>,
        now: DateTime<Utc>,
    ) {
        let mut job = match store.load_job(Group::Ocsp, group) {
            Ok(Some(j)) => j,
            Ok(None) | Err(_) => JobRecord {
                name: group.to_string(),
                ..Default::default()
            },
        };
        job.last_run = Some(now);
        log_entry(&mut job, now, "starting", None);
        let mut renewed = false;
        let mut errored = false;
        for f in results {
            match f.result {
                Ok(resp) => {
                    // the job as the C module writes it: the steps, then the result
                    let certid = format!("status of certid {}", f.cert.id);
                    let contacting = format!("{certid}, contacting {}", f.cert.responder);
                    let reading = format!("{certid}, reading response");
                    let detail = format!(
                        "certificate status is {}, status valid {} - {}",
                        resp.status.as_str().to_ascii_uppercase(),
                        crate::store::format_http_date(resp.valid.from),
                        crate::store::format_http_date(resp.valid.until)
                    );
                    log_entry(&mut job, now, "progress", Some(&contacting));
                    log_entry(&mut job, now, "progress", Some(&reading));
                    log_entry(
                        &mut job,
                        now,
                        "progress",
                        Some(&format!("{reading}: {detail}")),
                    );
                    log_entry(&mut job, now, "finished", None);
                    set_last(
                        &mut job,
                        &RunResult {
                            detail: Some(detail),
                            activity: Some(reading),
                            ..Default::default()
                        },
                    );
                    crate::md_log!(
                        *log,
                        Level::Debug,
                        "{group}: OCSP response for certificate {} is {}, valid until {}",
                        f.cert.id,
                        resp.status.as_str(),
                        crate::store::format_http_date(resp.valid.until)
                    );
                    let next = resp.renew_at(&self.registry.window());
                    self.set_sched(
                        f.cert,
                        Schedule {
                            next_run: Some(next),
                            errors: 0,
                        },
                    );
                    renewed = true;
                }
                Err(e) => {
                    let mut s = self.sched(f.cert);
                    s.errors = s.errors.saturating_add(1);
                    let delay = jittered(
                        retry_delay(self.retry_delay, s.errors, false),
                        crate::drive::random_jitter(),
                    );
                    s.next_run = Some(now + ChronoDuration::from_std(delay).unwrap_or_default());
                    // The C module's job entries and wording; the detail also says why (the
                    // C module only logs that, at debug level).
                    let certid = format!("status of certid {}", f.cert.id);
                    let contacting = format!("{certid}, contacting {}", f.cert.responder);
                    let activity = if e.got_answer() {
                        format!("{certid}, reading response")
                    } else {
                        contacting.clone()
                    };
                    log_entry(&mut job, now, "progress", Some(&contacting));
                    if e.got_answer() {
                        log_entry(&mut job, now, "progress", Some(&activity));
                    }
                    log_entry(&mut job, now, "finished", None);
                    let detail = format!("OCSP status update failed ({}. time): {e}", s.errors);
                    crate::md_log!(
                        *log,
                        Level::Warning,
                        "{group}: {activity}: {detail}; next attempt in {} s",
                        delay.as_secs()
                    );
                    log_entry(&mut job, now, "ocsp-error", Some(&detail));
                    let status = e.apr_status();
                    set_last(
                        &mut job,
                        &RunResult {
                            status: status.code().into(),
                            status_description: Some(status.description().to_string()),
                            detail: Some(detail),
                            activity: Some(activity),
                            ..Default::default()
                        },
                    );
                    self.set_sched(f.cert, s);
                    errored = true;
                }
            }
        }
        let scheds: Vec<Schedule> = self
            .registry
            .certs()
            .iter()
            .filter(|c| c.group() == group)
            .map(|c| self.sched(c))
            .collect();
        job.errors = scheds.iter().map(|s| s.errors).max().unwrap_or(0);
        // as the C module: every run ends `finished` (the run, not the response, is what is
        // finished); a job without errors has no next-run (the refresh time shown in the
        // status comes from the response), a failed one says when it is tried again
        job.finished = true;
        job.next_run = if job.errors > 0 {
            scheds.iter().filter_map(|s| s.next_run).min()
        } else {
            None
        };
        if renewed {
            let _ = self.events.raise("ocsp-renewed", group, &mut job, now, log);
        }
        if errored {
            let _ = self.events.raise("ocsp-errored", group, &mut job, now, log);
        }
        if let Err(e) = store.save_job(Group::Ocsp, group, &job) {
            crate::md_log!(
                *log,
                Level::Err,
                "{group}: saving ocsp/{group}/job.json: {e}"
            );
        }
    }
}

/// Fetch, check and store the responses of `certs`, [`MAX_PARALLEL`] at a time.
fn fetch_all<'a>(
    certs: &[&'a StapledCert],
    http: &dyn HttpClient,
    store: &(dyn Store + Sync),
    log: &(dyn LogSink + Sync),
    stopping: &(dyn Fn() -> bool + Sync),
) -> Vec<Fetched<'a>> {
    let queue = Mutex::new(certs.iter());
    let out = Mutex::new(Vec::with_capacity(certs.len()));
    std::thread::scope(|scope| {
        for _ in 0..MAX_PARALLEL.min(certs.len()) {
            scope.spawn(|| loop {
                if stopping() {
                    break;
                }
                let Some(c) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                    break;
                };
                let result = fetch_one(c, http, store, log);
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Fetched { cert: c, result });
            });
        }
    });
    out.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// One certificate: request with a nonce, check, store, and use from now on in this process.
fn fetch_one(
    c: &StapledCert,
    http: &dyn HttpClient,
    store: &(dyn Store + Sync),
    log: &(dyn LogSink + Sync),
) -> Result<StoredResponse, FetchError> {
    crate::md_log!(
        *log,
        Level::Debug,
        "{}: requesting OCSP response for certificate {} from {}",
        c.group(),
        c.id,
        c.responder
    );
    let query = build_request(&c.cert, &c.issuer)?;
    let resp = http.execute(&http_request(&c.responder, &query))?;
    if resp.status != 200 {
        return Err(FetchError::Status {
            url: c.responder.clone(),
            status: resp.status,
        });
    }
    let checked = check_response(
        &resp.body,
        &c.cert,
        &c.issuer,
        Some(&query.nonce),
        Utc::now(),
    )?;
    stored::save(store, c.md.as_deref(), &c.id, &checked)
        .map_err(|e| FetchError::Store(e.to_string()))?;
    let mtime = store
        .path(
            Group::Ocsp,
            c.group(),
            &super::id::response_file_name(&c.id),
        )
        .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    c.set_response(checked.clone(), mtime);
    Ok(checked)
}

/// Delete stored responses whose file is older than `keep` (MDStaplingKeepResponse, by mtime),
/// at startup. Returns the number of files removed.
pub fn purge_old_responses(
    store: &dyn Store,
    keep: Duration,
    now: std::time::SystemTime,
    log: &dyn LogSink,
) -> usize {
    let mut removed = 0;
    let Ok(groups) = store.names(Group::Ocsp) else {
        return 0;
    };
    for g in groups {
        for f in store.files(Group::Ocsp, &g).unwrap_or_default() {
            if super::id::parse_response_file_name(&f).is_none() {
                continue;
            }
            let old = store
                .path(Group::Ocsp, &g, &f)
                .and_then(|p| std::fs::symlink_metadata(p).ok())
                .and_then(|m| m.modified().ok())
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > keep);
            if old {
                match store.remove(Group::Ocsp, &g, &f) {
                    Ok(()) => removed += 1,
                    Err(e) => crate::md_log!(*log, Level::Warning, "ocsp/{g}/{f}: {e}"),
                }
            }
        }
    }
    removed
}
