//! Running renewals (SPEC 4.3, 5.4, 5.5): decide per MD whether it is due, obtain its
//! certificates into `staging/<md>/`, and keep `job.json` current so that a killed child
//! resumes where it stopped. Activation into `domains/` happens at the next restart (reg).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::check::check_md;
use super::job::{log_entry, set_last, RunResult};
use super::responder::StoreResponder;
use super::schedule::{ready_at, Validity};
use crate::acme::{
    AccountError, AccountKey, AcmeClient, CertificateRequest, ChallengeType, DirectoryError,
    EabCredentials, NewAccount, OrderError,
};
use crate::config::values::Eab;
use crate::crypt::{CryptError, KeyType, PrivateKey};
use crate::event::Events;
use crate::http::{HttpConfig, LazyHttpClient};
use crate::log::{Level, LogSink};
use crate::md::challenges::{candidates, ChallengeSupport};
use crate::md::ManagedDomain;
use crate::store::{files, AccountRecord, Group, JobRecord, MdRecord, Store, StoreError, StoreExt};
use crate::time::{jittered, retry_delay};

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
}

impl Default for RenewSettings {
    fn default() -> Self {
        RenewSettings {
            retry_delay: Duration::from_secs(30),
            retry_failover: 13,
            activation_delay: Duration::ZERO,
            dns01_version: 1,
        }
    }
}

/// Why a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// No challenge type can work (the C module's AH10173 text).
    #[error("{0}")]
    NoChallenge(String),
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

    fn problem_type(&self) -> Option<String> {
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
    /// Serialises account selection so that MDs renewing at once share one new account.
    pub account_lock: Mutex<()>,
    /// MDMessageCmd / MDNotifyCmd.
    pub events: Events,
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
            account_lock: Mutex::new(()),
            events,
        }
    }

    /// One pass for `md`: skip what is not due, renew what is, record the result.
    pub fn run_md(
        &self,
        md: &ManagedDomain,
        support: ChallengeSupport,
        now: DateTime<Utc>,
    ) -> MdOutcome {
        let name = md.name.as_str();
        let mut job = match self.store.load_job(Group::Staging, name) {
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
        };
        if job.finished {
            // Staged: announce it once ready (retrying a failed notification with backoff),
            // then wait for the restart that activates it.
            let outcome = self.announce(name, &mut job, now);
            self.save(name, &job);
            return outcome;
        }
        if let Some(next) = job.next_run.filter(|t| *t > now) {
            return MdOutcome::Idle(Some(next));
        }
        let check = check_md(md, &self.root, now);
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
        if let Err(e) = self.events.raise("renewing", name, &mut job, now, self.log) {
            // The admin's command vetoed the renewal (e.g. another cluster node renews).
            crate::md_log!(*self.log, Level::Info, "{name}: renewal vetoed: {e}");
            let delay = jittered(self.settings.retry_delay, super::random_jitter());
            let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
            job.next_run = Some(next);
            self.save(name, &job);
            return MdOutcome::Idle(Some(next));
        }
        job.last_run = Some(now);
        log_entry(&mut job, now, "starting", None);
        let setups = Mutex::new(Vec::new());
        let result = self.renew(md, support, &job, &setups);
        for reason in setups.into_inner().unwrap_or_else(|p| p.into_inner()) {
            log_entry(&mut job, now, &format!("message-{reason}"), None);
        }
        let outcome = match result {
            Ok(new) => {
                let old_until = check
                    .certs
                    .iter()
                    .map(|c| c.map(|v| v.until))
                    .min()
                    .flatten();
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
            Err(e) => {
                job.errors += 1;
                let base = retry_delay(self.settings.retry_delay, job.errors, e.is_input_related());
                // The CA's Retry-After wins when it asks for more patience than our backoff.
                let delay =
                    jittered(base, super::random_jitter()).max(e.retry_after().unwrap_or_default());
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                job.next_run = Some(next);
                let detail = e.to_string();
                let input = e.is_input_related();
                set_last(
                    &mut job,
                    &RunResult {
                        status: if input { 22 } else { 11 },
                        status_description: Some(
                            if input {
                                "Invalid argument"
                            } else {
                                "Resource temporarily unavailable"
                            }
                            .into(),
                        ),
                        problem: e.problem_type(),
                        detail: Some(detail.clone()),
                        activity: Some(format!("Renewing {name}")),
                        ..Default::default()
                    },
                );
                log_entry(&mut job, now, "renewal-error", Some(&detail));
                crate::md_log!(
                    *self.log,
                    Level::Err,
                    "AH10056: processing {name}: {detail}"
                );
                let _ = self.events.raise("errored", name, &mut job, now, self.log);
                MdOutcome::Failed(next)
            }
        };
        self.save(name, &job);
        outcome
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
                job.errors += 1;
                let delay = retry_delay(self.settings.retry_delay, job.errors, false);
                let next = now
                    + chrono::Duration::from_std(jittered(delay, super::random_jitter()))
                        .unwrap_or_default();
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

    /// Obtain every key spec's certificate into staging; returns their validity.
    fn renew(
        &self,
        md: &ManagedDomain,
        support: ChallengeSupport,
        job: &JobRecord,
        setups: &Mutex<Vec<String>>,
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
        let http = Arc::new(LazyHttpClient::new(http_config(md)));
        let client = AcmeClient::connect(http, &ca_url)?;
        let (account_id, acct) = self.account(md, &client, &ca_url)?;

        let responder = StoreResponder {
            challenges_dir: self.root.join(Group::Challenges.dir()),
            key_specs: md.private_keys.clone(),
            dns01_cmd: md.env.dns01_cmd.clone(),
            dns01_version: self.settings.dns01_version,
            log: self.log,
            // `challenge-setup:<type>:<domain>` after the material is in place: the admin's
            // command can copy it to other cluster nodes, or veto (abort) the attempt.
            on_setup: Some(&|reason: &str| {
                let mut scratch = JobRecord::default();
                let r = self
                    .events
                    .raise(reason, name, &mut scratch, Utc::now(), self.log);
                setups
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(reason.to_string());
                r.map_err(|e| e.0)
            }),
        };
        let mut validity = Vec::new();
        for spec in &md.private_keys {
            // Resume: a spec whose certificate is already staged and covers the names is done.
            if let Ok(Some((_, chain))) = self.store.load_cert_and_key(Group::Staging, name, spec) {
                let leaf = crate::crypt::Certificate::from_x509(chain[0].clone());
                if leaf.covers(&md.domains) {
                    validity.push(Validity {
                        from: leaf.not_before(),
                        until: leaf.not_after(),
                    });
                    continue;
                }
            }
            let key_file = files::privkey(spec);
            let key = match self.store.load_pkey(Group::Staging, name, &key_file)? {
                Some(k) => PrivateKey::from_pkey(k)?,
                None => {
                    let k = PrivateKey::generate(KeyType::from_spec(spec)?)?;
                    self.store
                        .save_pkey(Group::Staging, name, &key_file, k.pkey())?;
                    k
                }
            };
            let req = CertificateRequest {
                names: md.domains.clone(),
                challenges: challenges.clone(),
                profile: md.profile.clone(),
                replaces: None,
                must_staple: md.must_staple,
                preferred_chain: None,
            };
            crate::md_log!(
                *self.log,
                Level::Info,
                "{name}: ordering a certificate ({spec}) from {ca_url}"
            );
            let issued = client.obtain_certificate(&acct, &key, &req, &responder)?;
            let chain: Vec<_> = issued
                .chain
                .certs
                .iter()
                .map(|c| c.x509().clone())
                .collect();
            self.store
                .save_cert_and_key(Group::Staging, name, spec, key.pkey(), &chain)?;
            let leaf = issued.chain.leaf();
            validity.push(Validity {
                from: leaf.not_before(),
                until: leaf.not_after(),
            });
        }
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
        let _guard = self.account_lock.lock().unwrap_or_else(|p| p.into_inner());
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
        // Staged accounts: ours first, then other MDs' (they are activated with them).
        let mut staged: Vec<String> = vec![name.to_string()];
        staged.extend(st.names(Group::Staging)?.into_iter().filter(|n| n != name));
        for other in &staged {
            if let Some((rec, key)) = load(Group::Staging, other) {
                if rec.ca_url == ca_url && rec.is_valid() && rec.eab == eab_json {
                    if other != name {
                        st.save_pkey(Group::Staging, name, files::ACCOUNT_KEY, key.pkey())?;
                        st.save_account(Group::Staging, name, &rec)?;
                    }
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
            let acct = AccountKey::new(key, rec.url.clone());
            match client.validate_account(&acct, md.ca_agreement.as_deref()) {
                Ok(a) if a.is_valid() => return Ok((Some(id), acct)),
                Ok(_) | Err(_) => {
                    crate::md_log!(
                        *self.log,
                        Level::Info,
                        "{name}: account {id} not usable, skipping"
                    );
                }
            }
        }
        let key = PrivateKey::generate(KeyType::ACCOUNT_DEFAULT)?;
        let agreement = match md.ca_agreement.as_deref() {
            Some("accepted") => client.directory().terms_of_service.clone(),
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
        // Key first: an account.json without its key would be picked up and fail.
        st.save_pkey(Group::Staging, name, files::ACCOUNT_KEY, key.pkey())?;
        st.save_account(Group::Staging, name, &rec)?;
        Ok((None, AccountKey::new(key, account.url)))
    }
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
    fn challenge_problems_are_typed() {
        let e = RenewError::Order(OrderError::ChallengeMismatch {
            domain: "a".into(),
            offered: "x".into(),
            available: "y".into(),
        });
        assert_eq!(e.problem_type().as_deref(), Some("challenge-mismatch"));
        assert!(!RenewError::NoChallenge("none".into()).is_input_related());
    }
}
