//! Running renewals (SPEC 4.3, 5.4, 5.5): decide per MD whether it is due, obtain its
//! certificates into `staging/<md>/`, and keep `job.json` current so that a killed child
//! resumes where it stopped. Activation into `domains/` happens at the next restart (reg).

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::check::{check_md, ActiveCerts};
use super::cluster::Lease;
use super::job::{log_entry, set_last, RunResult};
use super::responder::StoreResponder;
use super::schedule::{ready_at, Validity};
use crate::acme::{
    AccountError, AccountKey, AcmeClient, CertificateRequest, ChallengeType, DirectoryError,
    EabCredentials, NewAccount, OrderError,
};
use crate::apr::AprStatus;
use crate::config::values::Eab;
use crate::crypt::{CryptError, KeyType, PrivateKey};
use crate::event::Events;
use crate::http::HttpConfig;
use crate::log::{Level, LogSink};
use crate::md::challenges::{candidates, ChallengeSupport};
use crate::md::ManagedDomain;
use crate::store::{
    files, AccountRecord, FileKind, Group, JobRecord, MdRecord, OrderRecord, Store, StoreError,
    StoreExt,
};
use crate::time::{jittered, retry_delay};

mod cluster_steps;

/// Module-wide settings a renewal needs.
#[derive(Debug, Clone)]
pub struct RenewSettings {
    /// MDRetryDelay: first retry delay, doubled per error.
    pub retry_delay: Duration,
    /// MDRetryFailover: errors before switching to the next CA.
    pub retry_failover: u32,
    /// MDActivationDelay.
    pub activation_delay: Duration,
    /// MDChallengeDns01Version.
    pub dns01_version: u8,
    /// When this server generation started (its post_config): an MD that failed before
    /// it is retried at once, as the C module does after a restart ("fix the config,
    /// reload"), unless the CA itself asked for a delay.
    pub generation_started: DateTime<Utc>,
}

impl Default for RenewSettings {
    fn default() -> Self {
        RenewSettings {
            retry_delay: Duration::from_secs(30),
            retry_failover: 13,
            activation_delay: Duration::ZERO,
            dns01_version: 1,
            generation_started: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// The longest a CA's Retry-After is honoured (a larger one is read as a day).
pub const MAX_CA_DELAY: Duration = Duration::from_secs(24 * 3600);
/// When an MD's renewal lock is held by another process, look again after this long.
const BUSY_RETRY: Duration = Duration::from_secs(10);

/// Why a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// No challenge type can work (the C module's AH10173 text).
    #[error("{0}")]
    NoChallenge(String),
    /// The CA does not offer what the MD requires (MDProfileMandatory).
    #[error("{0}")]
    NotOffered(String),
    /// The CA's directory.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Account selection or registration.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The order.
    #[error(transparent)]
    Order(#[from] OrderError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Keys.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// The process is going away; the renewal continues in the next one.
    #[error("stopped: the server is restarting")]
    Stopping,
}

impl RenewError {
    /// The CA said the problem is in our input: retrying before a day passed cannot help.
    pub fn is_input_related(&self) -> bool {
        match self {
            RenewError::Directory(e) => e.is_input_related(),
            RenewError::Account(e) => e.is_input_related(),
            RenewError::Order(e) => e.is_input_related(),
            _ => false,
        }
    }

    /// The CA's wish for the next attempt (429/503 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RenewError::Directory(e) => e.retry_after(),
            RenewError::Account(e) => e.retry_after(),
            RenewError::Order(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The APR status recorded in job.json `last` (the C module's number for this failure).
    pub fn apr_status(&self) -> AprStatus {
        match self {
            RenewError::NoChallenge(_) | RenewError::NotOffered(_) => AprStatus::EINVAL,
            RenewError::Directory(e) => e.apr_status(),
            RenewError::Account(e) => e.apr_status(),
            RenewError::Order(e) => e.apr_status(),
            RenewError::Store(StoreError::Io { source, .. }) => AprStatus::of_io(source),
            RenewError::Store(_) | RenewError::Crypt(_) => AprStatus::EGENERAL,
            RenewError::Stopping => AprStatus::EAGAIN,
        }
    }

    /// What was going on, as the C module's `activity`: it names the CA contact when that
    /// failed, and records none for account failures (observed: EAB, unauthorized).
    fn activity(&self, name: &str) -> Option<String> {
        match self {
            RenewError::Directory(DirectoryError::Unreachable { url, .. }) => {
                Some(format!("Contacting ACME server for {name} at {url}"))
            }
            RenewError::Account(_) => None,
            RenewError::Order(OrderError::ChallengeSetup { tried, domain, .. })
            | RenewError::Order(OrderError::ChallengeMismatch {
                tried: Some(tried),
                domain,
                ..
            }) => Some(format!(
                "Setting up challenge '{tried}' for domain {domain}"
            )),
            _ => Some(format!("Renewing {name}")),
        }
    }

    fn problem_type(&self) -> Option<String> {
        if let RenewError::Account(e) = self {
            if let Some(p) = e.local_problem() {
                return Some(p.into());
            }
        }
        let p = match self {
            RenewError::Account(e) => e.problem(),
            RenewError::Order(OrderError::ChallengeMismatch { .. }) => {
                return Some("challenge-mismatch".into())
            }
            RenewError::Order(OrderError::ChallengeSetup { .. }) => {
                return Some("challenge-setup-failure".into())
            }
            RenewError::Order(e) => e.problem(),
            _ => None,
        };
        p.map(|p| p.problem_type.clone())
    }
}

/// The profile to order with: MDProfile matched case-insensitively against the CA's
/// `meta.profiles` (the CA's spelling is sent). Not offered: none, or an error for
/// MDProfileMandatory (SPEC 1: the renewal fails with EINVAL).
fn pick_profile(
    md: &ManagedDomain,
    dir: &crate::acme::Directory,
) -> Result<Option<String>, String> {
    let Some(wanted) = &md.profile else {
        return Ok(None);
    };
    match dir.profiles.keys().find(|k| k.eq_ignore_ascii_case(wanted)) {
        Some(k) => Ok(Some(k.clone())),
        None if md.profile_mandatory => Err(format!(
            "mandatory ACME profile '{wanted}' is not offered by CA {}",
            dir.url
        )),
        None => Ok(None),
    }
}

/// What one pass did for an MD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdOutcome {
    /// Nothing to do before this time (`None`: nothing scheduled, e.g. manual mode).
    Idle(Option<DateTime<Utc>>),
    /// Certificates were staged; a restart activates them.
    Staged,
    /// The run failed; the next attempt is at this time.
    Failed(DateTime<Utc>),
}

/// Runs renewals against a store. One per watchdog pass; MDs may be renewed concurrently.
pub struct Renewer<'a, S: Store + Sync> {
    /// The store (its secret decrypts staged keys and accounts).
    pub store: &'a S,
    /// The store's directory (certificates are read and challenges written there).
    pub root: std::path::PathBuf,
    /// Where lines go.
    pub log: &'a (dyn LogSink + Sync),
    /// Module-wide settings.
    pub settings: RenewSettings,
    /// Serialises account selection so that MDs renewing at once share one new account, and
    /// holds the accounts this renewer found or made: the MDs after the first take them from
    /// memory instead of reading every staging directory and decoding the key again, or
    /// asking the CA again whether a stored account is valid.
    accounts: Mutex<Vec<KnownAccount>>,
    /// MDMessageCmd / MDNotifyCmd.
    pub events: Events,
    /// True once the process is going away (an old generation's child at a graceful
    /// restart): no new order is started; what is staged stays resumable.
    pub stopping: &'a (dyn Fn() -> bool + Sync),
    /// The CA's renewal information (MDRenewViaARI), cached for the process; `None`: not
    /// consulted.
    pub ari: Option<&'a super::ari::AriCache>,
    /// Cluster mode: the lease, the sets other nodes published, shared challenges; `None`:
    /// a node of its own.
    pub cluster: Option<&'a dyn super::cluster::Cluster>,
    /// HTTP and ACME clients kept for the process (the watchdog's, across passes); `None`:
    /// this renewer's own, shared by the MDs it runs.
    pub connections: Option<&'a super::connections::Connections>,
    own_connections: super::connections::Connections,
}

impl<'a, S: Store + Sync> Renewer<'a, S> {
    /// A renewer over `store`, whose files are under `root`, raising `events`.
    pub fn new(
        store: &'a S,
        root: std::path::PathBuf,
        log: &'a (dyn LogSink + Sync),
        settings: RenewSettings,
        events: Events,
    ) -> Self {
        Renewer {
            store,
            root,
            log,
            settings,
            accounts: Mutex::new(Vec::new()),
            events,
            stopping: &|| false,
            ari: None,
            cluster: None,
            connections: None,
            own_connections: Default::default(),
        }
    }

    /// Where HTTP and ACME clients come from.
    fn connections(&self) -> &super::connections::Connections {
        self.connections.unwrap_or(&self.own_connections)
    }

    /// One pass for `md`: skip what is not due, renew what is, record the result. `active`
    /// is what the parent knew of the MD's certificates; a set staged here replaces it.
    pub fn run_md(
        &self,
        md: &ManagedDomain,
        support: ChallengeSupport,
        active: &mut ActiveCerts,
        now: DateTime<Utc>,
    ) -> MdOutcome {
        let name = md.name.as_str();
        // One driver per MD across processes: the children of two generations overlap at a
        // graceful restart, and the parent does not activate a set while it is written or
        // checked. The lock is held only while this process checks or writes the staged set,
        // never while an admin's command runs for a finished one: a `renewed` command that
        // restarts httpd must find the set free to activate.
        let mut lock = None;
        let mut job = self.load_job(name);
        if !job.finished && self.adopt(md, active, now) {
            job = self.load_job(name);
        }
        if job.finished {
            lock = match self.lock(name, now) {
                Ok(l) => Some(l),
                Err(outcome) => return outcome,
            };
            // as it is now, under the lock (the parent may have activated it meanwhile)
            job = self.load_job(name);
        }
        if job.finished {
            match self.staged_set(md, active, now) {
                Ok(staged) => {
                    drop(lock.take());
                    // Staged: announce it once ready (retrying a failed notification with
                    // backoff), then wait for the restart that activates it.
                    *active = ActiveCerts::staged(&staged);
                    let outcome = self.announce(name, &mut job, now);
                    self.save_existing(name, &job);
                    return outcome;
                }
                Err(why) => {
                    // A job that claims a staged set that is not there (or no longer fits)
                    // would keep the MD from renewing forever (C module issue #420).
                    crate::md_log!(
                        *self.log,
                        Level::Warning,
                        "{name}: staging claims a finished renewal, but {why}: starting over"
                    );
                    self.reset_staging(md);
                    job = JobRecord {
                        name: name.to_string(),
                        log: job.log.take(),
                        ..Default::default()
                    };
                }
            }
        }
        if job.errors > 0
            && job
                .last_run
                .is_some_and(|t| t < self.settings.generation_started)
            && !job.ca_retry_until.is_some_and(|t| t > now)
        {
            // Failed before this server (re)start: the admin may have fixed the cause.
            job.errors = 0;
            job.next_run = None;
        }
        if let Some(next) = job.next_run.filter(|t| *t > now) {
            return MdOutcome::Idle(Some(next));
        }
        let mut check = check_md(md, active, now);
        let ari_note = self.consult_ari(md, active, &mut check, now);
        if check.warn {
            crate::md_log!(
                *self.log,
                Level::Warning,
                "{name}: certificate is in its warn window"
            );
            // Rate limited to once a day; a failure is tried again on a later pass.
            let _ = self.events.raise("expiring", name, &mut job, now, self.log);
        }
        if !check.renews || !check.is_due(now) {
            if check.warn {
                self.save(name, &job);
            }
            return MdOutcome::Idle(check.renews.then_some(check.renew_at));
        }
        if (self.stopping)() {
            return MdOutcome::Idle(Some(now));
        }
        let _lock = match lock {
            Some(l) => l,
            None => match self.lock(name, now) {
                // another process may have staged it since this pass read the job
                Ok(_) if self.load_job(name).finished => return MdOutcome::Idle(Some(now)),
                Ok(l) => l,
                Err(outcome) => return outcome,
            },
        };
        if let Err(e) = self.store.recover_dir(Group::Staging, name) {
            crate::md_log!(*self.log, Level::Warning, "{name}: staging recovery: {e}");
        }
        let lease = match self.lease(name, now) {
            Ok(l) => l,
            Err(outcome) => return outcome,
        };
        if let Err(e) = self.events.raise("renewing", name, &mut job, now, self.log) {
            // The admin's command vetoed the renewal (e.g. another cluster node renews). It
            // counts as an error, with backoff, as in the C module.
            crate::md_log!(*self.log, Level::Info, "{name}: renewal vetoed: {e}");
            job.errors = job.errors.saturating_add(1);
            let (next, _) = next_attempt(&self.settings, now, job.errors, false, None);
            job.next_run = Some(next);
            self.save(name, &job);
            return MdOutcome::Failed(next);
        }
        job.last_run = Some(now);
        log_entry(&mut job, now, "starting", None);
        if let Some(note) = &ari_note {
            log_entry(&mut job, now, "progress", Some(note));
        }
        let setups = Mutex::new(Vec::new());
        let result = self.renew(md, support, &job, active, now, &setups, lease.as_deref());
        let result = match (result, self.cluster.zip(lease.as_deref())) {
            (Ok(new), Some((cluster, lease))) => match self.publish(cluster, lease, md) {
                Ok(()) => Ok(new),
                Err(e) => {
                    // Another node renewed it meanwhile (or may have): what this node got
                    // must not be used, the cluster's set is the one all nodes serve.
                    crate::md_log!(
                        *self.log,
                        Level::Warning,
                        "{name}: cluster lease lost, discarding the certificate(s) obtained \
                         here: {e}"
                    );
                    self.reset_staging(md);
                    return MdOutcome::Idle(Some(later(now, cluster.poll())));
                }
            },
            (r, _) => r,
        };
        for reason in setups.into_inner().unwrap_or_else(|p| p.into_inner()) {
            log_entry(&mut job, now, &format!("message-{reason}"), None);
        }
        let outcome = match result {
            Ok(new) => {
                let old_until = active
                    .incomplete
                    .is_none()
                    .then(|| active.valid_until())
                    .flatten();
                *active = ActiveCerts::staged(&new);
                job.ca_retry_until = None;
                let ready = ready_at(&new, old_until, self.settings.activation_delay, now);
                job.finished = true;
                job.errors = 0;
                job.next_run = None;
                job.valid_from = Some(ready);
                let detail = if ready > now {
                    format!(
                        "{} certificate(s) renewed successfully and can be used from {} on.",
                        new.len(),
                        crate::store::format_http_date(ready)
                    )
                } else {
                    format!(
                        "{} certificate(s) renewed successfully and can be used. A graceful \
                         server restart now is recommended.",
                        new.len()
                    )
                };
                set_last(
                    &mut job,
                    &RunResult {
                        valid_from: Some(ready),
                        ..Default::default()
                    },
                );
                log_entry(&mut job, now, "finished", Some(&detail));
                // Record the staged set before running the admin's commands, which may take
                // long or be cut short by a restart.
                self.save(name, &job);
                match self.announce(name, &mut job, now) {
                    MdOutcome::Idle(next) => next.map_or(MdOutcome::Staged, MdOutcome::Failed),
                    other => other,
                }
            }
            // Cut short because this child goes away: not an error; the next generation's
            // child continues the order.
            Err(e) if matches!(e, RenewError::Stopping) || (self.stopping)() => {
                crate::md_log!(*self.log, Level::Info, "{name}: renewal interrupted: {e}");
                MdOutcome::Idle(Some(now))
            }
            Err(e) => {
                job.errors = job.errors.saturating_add(1);
                let (next, ca_retry_until) = next_attempt(
                    &self.settings,
                    now,
                    job.errors,
                    e.is_input_related(),
                    e.retry_after(),
                );
                job.ca_retry_until = ca_retry_until;
                job.next_run = Some(next);
                if let Some(l) = &lease {
                    l.keep_until(next);
                }
                let detail = e.to_string();
                let status = e.apr_status();
                let activity = e.activity(name);
                set_last(
                    &mut job,
                    &RunResult {
                        status: status.code().into(),
                        status_description: Some(status.description().into()),
                        problem: e.problem_type(),
                        detail: Some(detail.clone()),
                        activity: activity.clone(),
                        ..Default::default()
                    },
                );
                log_entry(&mut job, now, "renewal-error", Some(&detail));
                // The underlying failure (TLS, DNS, ...) is not in the C module's detail text:
                // the admin sees it here.
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    if !detail.contains(&c.to_string()) {
                        crate::md_log!(
                            *self.log,
                            Level::Warning,
                            "md[{name}] while[{}]: {c}",
                            activity.as_deref().unwrap_or("renewing")
                        );
                        break;
                    }
                    cause = c.source();
                }
                crate::md_log!(
                    *self.log,
                    Level::Err,
                    "({}){}: AH10056: processing {name}: {detail}",
                    status.code(),
                    status.description()
                );
                let _ = self.events.raise("errored", name, &mut job, now, self.log);
                MdOutcome::Failed(next)
            }
        };
        self.save(name, &job);
        outcome
    }

    /// MDRenewViaARI: when the CA's suggested window for a certificate has come, that key
    /// spec is renewed now (the returned note says so, for the job log); a suggested time
    /// before the renew window becomes the time to look again. Never later than the window.
    fn consult_ari(
        &self,
        md: &ManagedDomain,
        active: &mut ActiveCerts,
        check: &mut super::check::MdCheck,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let cache = self.ari?;
        if !check.renews || !md.ari_renewals || check.is_due(now) {
            return None;
        }
        let config = http_config(md);
        // The directory the renewals use (fetched once per CA) tells ARI its renewalInfo
        // URL too; if it cannot be had, the ARI cache tries itself and logs why.
        if let Some(ca_url) = md.ca_urls.first() {
            if let Ok((client, until)) = self.connections().acme(&config, ca_url, now) {
                let base = client.directory().renewal_info.clone();
                cache.remember_directory(ca_url, base, until);
            }
        }
        let http = self.connections().http(&config);
        let advice = cache.advise(md, active, &*http, now, &super::random_jitter, self.log)?;
        crate::md_log!(
            *self.log,
            Level::Debug,
            "{}: ARI: the CA suggests renewal at {}",
            md.name,
            crate::store::format_http_date(advice.at)
        );
        if advice.due.is_empty() {
            check.renew_at = check.renew_at.min(advice.at);
            return None;
        }
        advice.due.iter().for_each(|i| active.force(Some(*i)));
        check.renew_at = now;
        let name = &md.name;
        let note = match &advice.explanation {
            Some(url) => {
                crate::md_log!(
                    *self.log,
                    Level::Notice,
                    "AH10515: {name}: the CA advises renewal via ARI now, for explanation see \
                     {url}"
                );
                format!("CA advises renewal via ARI, for explanation see {url}")
            }
            None => {
                crate::md_log!(
                    *self.log,
                    Level::Notice,
                    "AH10517: {name}: the CA advises renewal via ARI now"
                );
                "CA advises renewal via ARI".to_string()
            }
        };
        Some(note)
    }

    /// Take the MD's renewal lock; when another process holds it (or it cannot be taken),
    /// the outcome to return instead.
    fn lock(&self, name: &str, now: DateTime<Utc>) -> Result<crate::store::MdLock, MdOutcome> {
        match self.store.lock_md(name, true) {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => {
                crate::md_log!(
                    *self.log,
                    Level::Debug,
                    "{name}: staging is in use by another process"
                );
                Err(MdOutcome::Idle(Some(later(now, BUSY_RETRY))))
            }
            Err(e) => {
                crate::md_log!(*self.log, Level::Err, "{name}: renewal lock: {e}");
                Err(MdOutcome::Failed(later(now, self.settings.retry_delay)))
            }
        }
    }

    /// `staging/<name>/order.json`, if there is a readable one.
    fn staged_order(&self, name: &str) -> Option<OrderRecord> {
        self.store.load_order(Group::Staging, name).ok().flatten()
    }

    /// `staging/<name>/job.json`, or a new job when there is none or it is unreadable.
    fn load_job(&self, name: &str) -> JobRecord {
        match self.store.load_job(Group::Staging, name) {
            Ok(Some(j)) => j,
            Ok(None) => JobRecord {
                name: name.to_string(),
                ..Default::default()
            },
            Err(e) => {
                // A corrupt job.json must not stop the MD: start over (and say so).
                crate::md_log!(*self.log, Level::Warning, "{name}: ignoring job.json: {e}");
                JobRecord {
                    name: name.to_string(),
                    ..Default::default()
                }
            }
        }
    }

    /// A staged job: once its ready time has come, raise `renewed` (MDMessageCmd and
    /// MDNotifyCmd) and log AH10059. A failed notification is retried with backoff.
    fn announce(&self, name: &str, job: &mut JobRecord, now: DateTime<Utc>) -> MdOutcome {
        if job.notified_renewed {
            return MdOutcome::Idle(None);
        }
        let ready = job.valid_from.unwrap_or(now);
        if ready > now {
            return MdOutcome::Idle(Some(ready));
        }
        if let Some(next) = job.next_run.filter(|t| *t > now) {
            return MdOutcome::Idle(Some(next));
        }
        match self.events.raise("renewed", name, job, now, self.log) {
            Ok(()) => {
                job.notified = true;
                job.notified_renewed = true;
                job.next_run = None;
                crate::md_log!(
                    *self.log,
                    Level::Notice,
                    "AH10059: The Managed Domain {name} has been setup and changes will be \
                     activated on next (graceful) server restart."
                );
                MdOutcome::Idle(None)
            }
            Err(_) => {
                job.errors = job.errors.saturating_add(1);
                let (next, _) = next_attempt(&self.settings, now, job.errors, false, None);
                job.next_run = Some(next);
                MdOutcome::Idle(Some(next))
            }
        }
    }

    fn save(&self, name: &str, job: &JobRecord) {
        if let Err(e) = self.store.save_job(Group::Staging, name, job) {
            crate::md_log!(*self.log, Level::Err, "{name}: saving job.json: {e}");
        }
    }

    /// Save the job of a staged set, unless the set is gone: the parent of a new generation
    /// activated and purged it, and a late write must not leave a job that claims a staged
    /// set that is not there.
    fn save_existing(&self, name: &str, job: &JobRecord) {
        let r = self.store.save_existing(
            Group::Staging,
            name,
            files::JOB,
            &job.to_json(),
            FileKind::Json,
        );
        match r {
            Ok(true) => {}
            Ok(false) => crate::md_log!(
                *self.log,
                Level::Debug,
                "{name}: staged set was activated meanwhile"
            ),
            Err(e) => crate::md_log!(*self.log, Level::Err, "{name}: saving job.json: {e}"),
        }
    }

    /// The validity of a finished staged set that can be activated for `md` as configured:
    /// md.json with one of the MD's CAs, every key spec's key and certificate, matching,
    /// covering all names, must-staple as configured, not expired.
    fn staged_set(
        &self,
        md: &ManagedDomain,
        active: &ActiveCerts,
        now: DateTime<Utc>,
    ) -> Result<Vec<Validity>, String> {
        let name = md.name.as_str();
        let rec = match self.store.load_md(Group::Staging, name) {
            Ok(Some(r)) => r,
            Ok(None) => return Err("its md.json is missing".into()),
            Err(e) => return Err(e.to_string()),
        };
        if !rec.ca_url.as_ref().is_some_and(|u| md.ca_urls.contains(u)) {
            return Err("it is from a CA no longer configured".into());
        }
        let mut out = Vec::new();
        for (i, spec) in md.private_keys.iter().enumerate() {
            match self.staged_cert(md, spec, now)? {
                Some(v) => out.push(v),
                // not ordered: the active one is carried over at activation
                None => match active.keeps(i, md, now) {
                    Some(v)
                        if !self
                            .store
                            .exists(Group::Staging, name, &files::privkey(spec)) =>
                    {
                        out.push(v)
                    }
                    _ => return Err(format!("certificate({}) is missing", spec.name())),
                },
            }
        }
        Ok(out)
    }

    /// The validity of the certificate staged for `spec`, if there is one that can be used:
    /// matching its key, fitting `md` as configured, not expired (`Err` says what is wrong).
    fn staged_cert(
        &self,
        md: &ManagedDomain,
        spec: &crate::md::KeySpec,
        now: DateTime<Utc>,
    ) -> Result<Option<Validity>, String> {
        let what = || format!("certificate({})", spec.name());
        let (key, chain) = match self.store.load_cert_and_key(Group::Staging, &md.name, spec) {
            Ok(Some(kc)) => kc,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", what())),
        };
        let leaf = crate::crypt::Certificate::from_x509(chain[0].clone());
        let key = PrivateKey::from_pkey(key).map_err(|e| format!("{}: key: {e}", what()))?;
        if !leaf.matches_key(&key) {
            return Err(format!("{} does not match its key", what()));
        }
        crate::reg::fits(md, spec, &leaf)?;
        if leaf.not_after() <= now {
            return Err(format!("{} has expired", what()));
        }
        Ok(Some(Validity {
            from: leaf.not_before(),
            until: leaf.not_after(),
        }))
    }

    /// Drop everything staged for `md` (and its challenge files): the next run starts anew.
    fn reset_staging(&self, md: &ManagedDomain) {
        for d in &md.domains {
            let _ = self.store.purge(Group::Challenges, d);
        }
        if let Err(e) = self.store.purge(Group::Staging, &md.name) {
            crate::md_log!(*self.log, Level::Err, "{}: purging staging: {e}", md.name);
        }
    }

    /// Obtain every key spec's certificate into staging; returns their validity.
    #[allow(clippy::too_many_arguments)]
    fn renew(
        &self,
        md: &ManagedDomain,
        support: ChallengeSupport,
        job: &JobRecord,
        active: &ActiveCerts,
        now: DateTime<Utc>,
        setups: &Mutex<Vec<String>>,
        lease: Option<&dyn Lease>,
    ) -> Result<Vec<Validity>, RenewError> {
        let name = md.name.as_str();
        let challenges: Vec<ChallengeType> = candidates(&md.ca_challenges, support)
            .map_err(RenewError::NoChallenge)?
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        // Failover: after MDRetryFailover errors, the next configured CA (round robin).
        let idx = if md.ca_urls.len() > 1 {
            (job.errors / self.settings.retry_failover.max(1)) as usize % md.ca_urls.len()
        } else {
            0
        };
        let ca_url = md.ca_urls.get(idx).cloned().unwrap_or_default();
        // Failover (or a changed MDCertificateAuthority): what was staged at another CA
        // (account, order, certificates) is of no use here.
        let staged_ca = self
            .staged_order(name)
            .and_then(|o| order_mark(&o, ORDER_CA).map(String::from))
            .or_else(|| {
                self.store
                    .load_account(Group::Staging, name)
                    .ok()
                    .flatten()
                    .map(|a| a.ca_url)
            });
        if staged_ca.is_some_and(|c| c != ca_url) {
            crate::md_log!(
                *self.log,
                Level::Info,
                "{name}: switching to CA {ca_url}, staging starts anew"
            );
            self.store.purge(Group::Staging, name)?;
        }
        // Shared with the other MDs of this CA in the process: one directory fetch, one
        // nonce pool, one HTTP client.
        let (client, _) = self
            .connections()
            .acme(&http_config(md), &ca_url, Utc::now())?;
        let profile = pick_profile(md, client.directory()).map_err(RenewError::NotOffered)?;
        if let (Some(p), None) = (&md.profile, &profile) {
            crate::md_log!(
                *self.log,
                Level::Warning,
                "{name}: ACME profile '{p}' is not offered by CA {ca_url}, ordering without one"
            );
        }
        // The account is looked up (or registered) after the first certificate key is made:
        // the MDs renewing beside this one make their keys while the first of them makes the
        // account key, instead of waiting for it.
        let mut account = None;

        let responder = StoreResponder {
            md_name: name.to_string(),
            acme_tls_1: md.acme_tls_1.clone(),
            challenges_dir: self.root.join(Group::Challenges.dir()),
            key_specs: md.private_keys.clone(),
            dns01_cmd: md.env.dns01_cmd.clone(),
            dns01_version: self.settings.dns01_version,
            log: self.log,
            // `challenge-setup:<type>:<domain>` after the material is in place: the admin's
            // command can copy it to other cluster nodes, or veto (abort) the attempt.
            on_setup: Some(&|reason: &str| {
                // Between two ACME steps: a child that goes away answers no more challenges.
                if (self.stopping)() {
                    return Err("the server is restarting".into());
                }
                if let (Some(c), Some(l)) = (self.cluster, lease) {
                    self.share_challenge(c, l, name, reason)?;
                }
                let mut scratch = JobRecord::default();
                let r = self
                    .events
                    .raise(reason, name, &mut scratch, Utc::now(), self.log);
                setups
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(reason.to_string());
                r.map_err(|e| e.0)?;
                // The admin's command may have run long: the CA is asked to validate only
                // while the lease is still this node's.
                match lease {
                    Some(l) => self.lease_held(name, l),
                    None => Ok(()),
                }
            }),
        };
        let mut validity = Vec::new();
        for (i, spec) in md.private_keys.iter().enumerate() {
            // A spec whose active certificate fits and is not due stays: activation carries
            // it over (adding a key spec orders one certificate, not the whole set).
            if let Some(v) = active.keeps(i, md, now) {
                validity.push(v);
                continue;
            }
            // Resume: a spec whose certificate is already staged and usable is done.
            if let Ok(Some(v)) = self.staged_cert(md, spec, now) {
                validity.push(v);
                continue;
            }
            if (self.stopping)() {
                return Err(RenewError::Stopping);
            }
            let key_file = files::privkey(spec);
            let staged_key = self
                .store
                .load_pkey(Group::Staging, name, &key_file)
                .map_err(|e| e.to_string())
                .and_then(|k| {
                    k.map(PrivateKey::from_pkey)
                        .transpose()
                        .map_err(|e| e.to_string())
                });
            let key = match staged_key {
                Ok(Some(k)) => k,
                other => {
                    if let Err(e) = other {
                        // An unreadable staged key would fail every attempt: start this key
                        // spec over (its order used that key, so it goes too).
                        crate::md_log!(
                            *self.log,
                            Level::Warning,
                            "{name}: staged key for {spec} unusable ({e}), making a new one"
                        );
                        self.store.remove(Group::Staging, name, files::ORDER)?;
                    }
                    // Made and stored before the order, not while the CA validates: a store
                    // that cannot take it (full, read-only) then fails the attempt before
                    // any CA traffic; generated during the validation, a full disk cost a
                    // new order per attempt (test_disk_faults.py).
                    let k = PrivateKey::generate_with_threads(KeyType::from_spec(spec)?)?;
                    self.store
                        .save_pkey(Group::Staging, name, &key_file, k.pkey())?;
                    k
                }
            };
            // An order of this key spec that a killed run left: continue it (SPEC 3.4).
            let resume = self
                .staged_order(name)
                .filter(|o| {
                    order_mark(o, ORDER_SPEC) == Some(spec.name())
                        && order_mark(o, ORDER_CA) == Some(&ca_url)
                })
                .map(|o| o.url);
            let req = CertificateRequest {
                names: md.domains.clone(),
                challenges: challenges.clone(),
                profile: profile.clone(),
                // RFC 9773 §5: the certificate this one replaces, to a CA that has ARI
                replaces: client
                    .directory()
                    .renewal_info
                    .as_ref()
                    .and(active.ari_ids.get(i).cloned().flatten())
                    .filter(|_| active.certs.get(i).copied().flatten().is_some()),
                must_staple: md.must_staple,
                preferred_chain: md.preferred_chain.clone(),
                resume,
            };
            crate::md_log!(
                *self.log,
                Level::Info,
                "{name}: ordering a certificate ({spec}) from {ca_url}"
            );
            let record = |o: &crate::acme::Order| {
                let mut rec = OrderRecord {
                    url: o.url.clone(),
                    status: Some(o.status.clone()),
                    authorizations: o.authorizations.clone(),
                    finalize: Some(o.finalize.clone()),
                    certificate: o.certificate.clone(),
                    ..Default::default()
                };
                rec.extra.insert(ORDER_SPEC.into(), spec.name().into());
                rec.extra.insert(ORDER_CA.into(), ca_url.as_str().into());
                if let Err(e) = self.store.save_order(Group::Staging, name, &rec) {
                    crate::md_log!(*self.log, Level::Warning, "{name}: saving order.json: {e}");
                }
            };
            let (_, acct) = match &mut account {
                Some(a) => a,
                none => none.insert(self.account(md, &client, &ca_url)?),
            };
            let issued = client.obtain_certificate_with(acct, &key, &req, &responder, &record)?;
            let chain: Vec<_> = issued
                .chain
                .certs
                .iter()
                .map(|c| c.x509().clone())
                .collect();
            self.store
                .save_cert_and_key(Group::Staging, name, spec, key.pkey(), &chain)?;
            // done with this order: the next key spec must not resume it
            self.store.remove(Group::Staging, name, files::ORDER)?;
            let leaf = issued.chain.leaf();
            validity.push(Validity {
                from: leaf.not_before(),
                until: leaf.not_after(),
            });
        }
        let (account_id, _) = match account {
            Some(a) => a,
            None => self.account(md, &client, &ca_url)?,
        };
        // md.json in staging names the CA and account actually used (activation needs it).
        let mut rec = MdRecord::new(md.clone());
        rec.ca_url = Some(ca_url);
        rec.ca_account = account_id;
        self.store.save_md(Group::Staging, &rec)?;
        Ok(validity)
    }

    /// The account to order with (SPEC 5.4): one staged by an earlier attempt of this or any
    /// other MD for the same CA, else a stored valid one for the CA with the same EAB, else a
    /// new registration (kept in staging until activation). Returns its id, if stored.
    fn account(
        &self,
        md: &ManagedDomain,
        client: &AcmeClient,
        ca_url: &str,
    ) -> Result<(Option<String>, AccountKey), RenewError> {
        let mut known = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let name = md.name.as_str();
        let st = self.store;
        let eab = match &md.eab {
            Some(Eab::Key { kid, hmac }) => Some(EabCredentials {
                kid: kid.clone(),
                hmac: hmac.clone(),
            }),
            _ => None,
        };
        let eab_json = eab
            .as_ref()
            .map(|e| serde_json::json!({"kid": e.kid, "hmac": e.hmac}));
        let load = |group: Group, id: &str| -> Option<(AccountRecord, PrivateKey)> {
            let rec = st.load_account(group, id).ok()??;
            let key = st.load_pkey(group, id, files::ACCOUNT_KEY).ok()??;
            Some((rec, PrivateKey::from_pkey(key).ok()?))
        };
        // Staged accounts: ours first, then those this renewer has (staged or validated), then
        // other MDs' staged ones (they are activated with them).
        if let Some((rec, key)) = load(Group::Staging, name) {
            if rec.ca_url == ca_url && rec.is_valid() && rec.eab == eab_json {
                return Ok((None, AccountKey::new(key, rec.url)));
            }
        }
        // A staged account goes with this MD's staged set too (activation needs it).
        let stage = |rec: &AccountRecord, key: &PrivateKey| -> Result<(), RenewError> {
            // Key first: an account.json without its key would be picked up and fail.
            st.save_pkey(Group::Staging, name, files::ACCOUNT_KEY, key.pkey())?;
            st.save_account(Group::Staging, name, rec)?;
            Ok(())
        };
        let fits = |k: &&KnownAccount| k.rec.ca_url == ca_url && k.rec.eab == eab_json;
        if let Some(k) = known.iter().find(fits) {
            if k.stored_id.is_none() {
                stage(&k.rec, &k.key)?;
            }
            return Ok((
                k.stored_id.clone(),
                AccountKey::new(k.key.clone(), k.rec.url.clone()),
            ));
        }
        for other in st.names(Group::Staging)?.iter().filter(|n| *n != name) {
            if let Some((rec, key)) = load(Group::Staging, other) {
                if rec.ca_url == ca_url && rec.is_valid() && rec.eab == eab_json {
                    stage(&rec, &key)?;
                    known.push(KnownAccount::new(None, &rec, &key));
                    return Ok((None, AccountKey::new(key, rec.url)));
                }
            }
        }
        for id in st.names(Group::Accounts)? {
            let Some((rec, key)) = load(Group::Accounts, &id) else {
                continue;
            };
            if rec.ca_url != ca_url || !rec.is_valid() || rec.eab != eab_json {
                continue;
            }
            let acct = AccountKey::new(key.clone(), rec.url.clone());
            match client.validate_account(&acct, md.ca_agreement.as_deref()) {
                Ok(a) if a.is_valid() => {
                    known.push(KnownAccount::new(Some(id.clone()), &rec, &key));
                    return Ok((Some(id), acct));
                }
                Ok(_) | Err(_) => {
                    crate::md_log!(
                        *self.log,
                        Level::Info,
                        "{name}: account {id} not usable, skipping"
                    );
                }
            }
        }
        let key = PrivateKey::generate_with_threads(KeyType::ACCOUNT_DEFAULT)?;
        let agreement = match md.ca_agreement.as_deref() {
            Some(a) if a.eq_ignore_ascii_case("accepted") => {
                client.directory().terms_of_service.clone()
            }
            other => other.map(str::to_string),
        };
        let new = NewAccount {
            contacts: md.contacts.clone(),
            agreement,
            eab,
        };
        let account = client.register_account(&key, &new)?;
        crate::md_log!(
            *self.log,
            Level::Info,
            "{name}: registered account {} at {ca_url}",
            account.url
        );
        let rec = AccountRecord {
            status: Some(account.status.clone()),
            url: account.url.clone(),
            ca_url: ca_url.to_string(),
            contact: account.contact.clone(),
            registration: Some(account.registration.clone()),
            agreement: account.agreement.clone(),
            orders: account.orders.clone(),
            eab: eab_json,
            ..Default::default()
        };
        stage(&rec, &key)?;
        known.push(KnownAccount::new(None, &rec, &key));
        Ok((None, AccountKey::new(key, account.url)))
    }
}

/// An account a renewer found or made: `stored_id` for one of `accounts/` (validated with
/// the CA), `None` for one staged with an MD.
struct KnownAccount {
    stored_id: Option<String>,
    rec: AccountRecord,
    key: PrivateKey,
}

impl KnownAccount {
    fn new(stored_id: Option<String>, rec: &AccountRecord, key: &PrivateKey) -> Self {
        KnownAccount {
            stored_id,
            rec: rec.clone(),
            key: key.clone(),
        }
    }
}

/// order.json members of ours (kept by the C module as unknown ones): the key spec and the CA
/// the order belongs to, so a resumed run continues only its own order.
const ORDER_SPEC: &str = "key-spec";
const ORDER_CA: &str = "ca-url";

/// One of those members of a staged order.
fn order_mark<'o>(o: &'o OrderRecord, key: &str) -> Option<&'o str> {
    o.extra.get(key).and_then(|v| v.as_str())
}

/// When to try again after the `errors`-th failed attempt (and, if the CA sent a
/// `Retry-After`, until when the CA asked us to wait): our jittered backoff, or the CA's delay
/// when it asks for more patience. The CA's delay is remembered across restarts.
fn next_attempt(
    settings: &RenewSettings,
    now: DateTime<Utc>,
    errors: u32,
    input_related: bool,
    ca_retry_after: Option<Duration>,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    backoff(
        now,
        retry_delay(settings.retry_delay, errors, input_related),
        super::random_jitter(),
        ca_retry_after,
    )
}

/// The arithmetic of [`next_attempt`], with the jitter `r` given. Every input may come from
/// outside (Retry-After from the CA, the error count from job.json, MDRetryDelay): nothing
/// here may overflow, since a panic would lose the renewal pass.
fn backoff(
    now: DateTime<Utc>,
    base: Duration,
    r: f64,
    ca_retry_after: Option<Duration>,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let ca_delay = ca_retry_after.map(|d| d.min(MAX_CA_DELAY));
    let delay = jittered(base, r).max(ca_delay.unwrap_or_default());
    (later(now, delay), ca_delay.map(|d| later(now, d)))
}

/// `now + d`, saturating (a delay beyond chrono's range is read as a day, as a too large
/// Retry-After is).
fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1));
    now.checked_add_signed(d)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The outgoing connection settings of an MD (MDCACertificateFile, MDHttpProxy, ...).
fn http_config(md: &ManagedDomain) -> HttpConfig {
    let file = |v: &Option<String>| {
        v.as_deref()
            .filter(|f| !f.eq_ignore_ascii_case("none"))
            .map(std::path::PathBuf::from)
    };
    HttpConfig {
        ca_file: file(&md.env.ca_certs),
        proxy_url: md.env.proxy_url.clone(),
        proxy_ca_file: file(&md.env.proxy_ca_certs),
        ..HttpConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_matched_case_insensitively_or_dropped_unless_mandatory() {
        let mut dir = crate::acme::Directory::unfetched("https://ca.test/dir");
        dir.profiles.insert("shortlived".into(), "6 days".into());
        let mut md = crate::md::tests_support::mds_from_config(&["MDomain a.test"]).remove(0);
        assert_eq!(pick_profile(&md, &dir), Ok(None));
        md.profile = Some("ShortLived".into());
        assert_eq!(pick_profile(&md, &dir), Ok(Some("shortlived".into())));
        md.profile = Some("tlsserver".into());
        assert_eq!(pick_profile(&md, &dir), Ok(None));
        md.profile_mandatory = true;
        let e = pick_profile(&md, &dir).unwrap_err();
        assert!(
            e.contains("mandatory ACME profile 'tlsserver' is not offered"),
            "{e}"
        );
        assert_eq!(RenewError::NotOffered(e).apr_status(), AprStatus::EINVAL);
    }

    #[test]
    fn backoff_never_overflows() {
        use crate::acme::parse_retry_after;
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .to_utc();
        let day = chrono::Duration::days(1);
        let base = Duration::from_secs(30);
        // Retry-After of u64::MAX seconds and an HTTP date in year 9999: a day at most
        for ra in [
            parse_retry_after("18446744073709551615", now),
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(Duration::MAX),
        ] {
            let (next, ca_until) = backoff(now, base, 0.49, ra);
            assert_eq!((next, ca_until), (now + day, Some(now + day)), "{ra:?}");
        }
        // a modest Retry-After wins over a shorter backoff, and is remembered
        let (next, ca_until) = backoff(now, base, 0.0, Some(Duration::from_secs(600)));
        let ten = now + chrono::Duration::minutes(10);
        assert_eq!((next, ca_until), (ten, Some(ten)));
        // huge error counts and MDRetryDelay values: capped at a day (plus jitter)
        for (base, errors) in [
            (base, u32::MAX),
            (Duration::from_secs(1 << 62), 1),
            (Duration::MAX, u32::MAX),
        ] {
            let d = retry_delay(base, errors, false);
            let (next, ca_until) = backoff(now, d, 0.5, None);
            assert_eq!(ca_until, None);
            assert_eq!(next, now + chrono::Duration::hours(36), "{base:?} {errors}");
            let (next, _) = backoff(now, d, -0.5, None);
            assert_eq!(next, now + chrono::Duration::hours(12));
        }
        // at the end of time, no panic
        let (next, _) = backoff(DateTime::<Utc>::MAX_UTC, base, 0.0, Some(Duration::MAX));
        assert_eq!(next, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn challenge_problems_are_typed() {
        let e = RenewError::Order(OrderError::ChallengeMismatch {
            domain: "a".into(),
            offered: "x".into(),
            available: "y".into(),
            tried: None,
        });
        assert_eq!(e.problem_type().as_deref(), Some("challenge-mismatch"));
        assert!(!RenewError::NoChallenge("none".into()).is_input_related());
    }

    /// job.json `last` for failures the C module was observed with (status, problem, detail,
    /// activity as its job.json).
    #[test]
    fn last_status_as_the_c_module() {
        use crate::http::{ConnectCause, HttpError};
        let refused = RenewError::Directory(DirectoryError::Unreachable {
            url: "https://127.0.0.1:9/dir".into(),
            source: HttpError::Connect {
                url: "https://127.0.0.1:9/dir".into(),
                message: "tcp connect error".into(),
                cause: ConnectCause::NoConnection,
            },
        });
        assert_eq!(refused.apr_status(), AprStatus::ECONNREFUSED);
        assert_eq!(refused.problem_type(), None);
        assert_eq!(
            refused.activity("a.test").as_deref(),
            Some("Contacting ACME server for a.test at https://127.0.0.1:9/dir")
        );
        assert!(refused.to_string().starts_with(
            "Unsuccessful in contacting ACME server at <https://127.0.0.1:9/dir>. If this \
             problem persists,"
        ));
        let eab = RenewError::Account(AccountError::EabHmacInvalid);
        assert_eq!(eab.apr_status(), AprStatus::EINVAL);
        assert_eq!(eab.activity("a.test"), None);
        assert_eq!(
            eab.problem_type().as_deref(),
            Some("apache:eab-hmac-invalid")
        );
        assert_eq!(
            eab.to_string(),
            "external account binding HMAC value is not valid base64"
        );
        let unauthorized =
            RenewError::Account(AccountError::Request(crate::acme::RequestError::Problem {
                url: "u".into(),
                status: 401,
                problem: Box::new(crate::acme::Problem {
                    problem_type: "urn:ietf:params:acme:error:unauthorized".into(),
                    ..Default::default()
                }),
                retry_after: None,
            }));
        assert_eq!(unauthorized.apr_status(), AprStatus::EACCES);
        assert_eq!(AprStatus::EACCES.description(), "Permission denied");
        // a full or read-only disk shows its errno, as the C module's "(28)No space left..."
        for (errno, text) in [
            (28, "No space left on device"),
            (30, "Read-only file system"),
        ] {
            let disk = RenewError::Store(StoreError::Io {
                op: "write",
                path: "/x".into(),
                source: std::io::Error::from_raw_os_error(errno),
            });
            assert_eq!(disk.apr_status(), AprStatus(errno));
            assert_eq!(disk.apr_status().description(), text);
        }
    }
}
