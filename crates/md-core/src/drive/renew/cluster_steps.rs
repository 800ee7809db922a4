//! The renewal's steps in cluster mode ([`super::super::cluster`]): take a set another node
//! published, hold the MD's lease while ordering, share challenges, publish the result.

use super::*;
use crate::drive::cluster::{is_newer, Acquire, Cluster, Lease, SharedSet};
use crate::store::keys;

impl<'a, S: Store + Sync> Renewer<'a, S> {
    /// Stage the set another node published for `md` when it is newer than this node's
    /// certificates and fits this node's configuration. True when a finished set is staged.
    pub(super) fn adopt(
        &self,
        md: &ManagedDomain,
        active: &ActiveCerts,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(cluster) = self.cluster else {
            return false;
        };
        let name = md.name.as_str();
        // A pass over many MDs lasts longer than MDClusterPoll: look again (the cluster reads
        // the database at most once per MDClusterPoll; a failure is logged by the pass and
        // shows again when the lease is asked for).
        let _ = cluster.refresh();
        let Some(p) = cluster.published(name) else {
            return false;
        };
        let active_from = match active.incomplete {
            Some(_) => None,
            None => active.certs.iter().flatten().map(|v| v.from).max(),
        };
        if p.unfit || !is_newer(&p, active_from) {
            return false;
        }
        let Ok(_lock) = self.lock(name, now) else {
            return false;
        };
        if self.load_job(name).finished {
            // staged by another process of this node meanwhile
            return false;
        }
        let set = match cluster.fetch(name) {
            Ok(Some(set)) => set,
            Ok(None) => return false,
            Err(e) => {
                crate::md_log!(*self.log, Level::Warning, "{name}: cluster database: {e}");
                return false;
            }
        };
        match self.stage_shared(md, &set, active, now) {
            Ok(n) => {
                crate::md_log!(
                    *self.log,
                    Level::Info,
                    "{name}: staged {n} certificate(s) that cluster node {} obtained",
                    set.owner
                );
                true
            }
            Err(e) => {
                // Nodes configured differently would take turns ordering: this node orders
                // for its own configuration, once, and does not take this set again.
                crate::md_log!(
                    *self.log,
                    Level::Warning,
                    "{name}: the certificate(s) cluster node {} obtained do not fit this node's \
                     configuration ({e}); are all nodes configured alike?",
                    set.owner
                );
                cluster.set_unfit(name, set.fence);
                self.reset_staging(md);
                false
            }
        }
    }

    /// Write `set` into `staging/<md>/` as a finished renewal; returns how many certificates.
    fn stage_shared(
        &self,
        md: &ManagedDomain,
        set: &SharedSet,
        active: &ActiveCerts,
        now: DateTime<Utc>,
    ) -> Result<usize, String> {
        let name = md.name.as_str();
        self.store
            .purge(Group::Staging, name)
            .map_err(|e| e.to_string())?;
        let file = |f: &str| set.files.iter().find(|(n, _)| n == f).map(|(_, d)| d);
        for spec in &md.private_keys {
            // A key spec without a file in the set is carried over from the active set, if
            // it can be (checked with the rest by staged_set).
            let (Some(key), Some(chain)) =
                (file(&files::privkey(spec)), file(&files::pubcert(spec)))
            else {
                continue;
            };
            let key = keys::key_from_pem(key, None)?;
            let chain = keys::chain_from_pem(chain)?;
            self.store
                .save_cert_and_key(Group::Staging, name, spec, &key, &chain)
                .map_err(|e| e.to_string())?;
        }
        let mut rec = MdRecord::new(md.clone());
        rec.ca_url = Some(set.ca_url.clone());
        self.store
            .save_md(Group::Staging, &rec)
            .map_err(|e| e.to_string())?;
        let validity = self.staged_set(md, active, now)?;
        let old_until = active
            .incomplete
            .is_none()
            .then(|| active.valid_until())
            .flatten();
        let ready = ready_at(&validity, old_until, self.settings.activation_delay, now);
        let mut job = JobRecord {
            name: name.to_string(),
            finished: true,
            valid_from: Some(ready),
            ..Default::default()
        };
        set_last(
            &mut job,
            &RunResult {
                valid_from: Some(ready),
                ..Default::default()
            },
        );
        let detail = format!(
            "{} certificate(s) obtained by cluster node {} taken over.",
            validity.len(),
            set.owner
        );
        log_entry(&mut job, now, "finished", Some(&detail));
        self.store
            .save_job(Group::Staging, name, &job)
            .map_err(|e| e.to_string())?;
        Ok(validity.len())
    }

    /// The MD's cluster lease, when in cluster mode; the outcome to return instead when this
    /// node must not renew now.
    pub(super) fn lease(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Box<dyn Lease + 'a>>, MdOutcome> {
        let Some(cluster) = self.cluster else {
            return Ok(None);
        };
        let retry = MdOutcome::Idle(Some(later(now, cluster.poll())));
        match cluster.acquire(name, cluster.published(name).map(|p| p.fence)) {
            Ok(Acquire::Held(lease)) => Ok(Some(lease)),
            Ok(Acquire::Busy) => {
                crate::md_log!(
                    *self.log,
                    Level::Debug,
                    "{name}: another cluster node holds the lease"
                );
                Err(retry)
            }
            Ok(Acquire::Newer) => {
                crate::md_log!(
                    *self.log,
                    Level::Debug,
                    "{name}: another cluster node published certificate(s) meanwhile"
                );
                Err(MdOutcome::Idle(Some(now)))
            }
            Err(e) => {
                crate::md_log!(
                    *self.log,
                    Level::Warning,
                    "{name}: not renewing while the cluster database is unavailable: {e}"
                );
                Err(retry)
            }
        }
    }

    /// Publish what the renewal under `lease` staged (every key spec it ordered).
    pub(super) fn publish(
        &self,
        cluster: &dyn Cluster,
        lease: &dyn Lease,
        md: &ManagedDomain,
    ) -> Result<(), String> {
        let name = md.name.as_str();
        let rec = self
            .store
            .load_md(Group::Staging, name)
            .map_err(|e| e.to_string())?
            .ok_or("the staged md.json is missing")?;
        let mut set = SharedSet {
            ca_url: rec.ca_url.unwrap_or_default(),
            owner: cluster.node().to_string(),
            fence: lease.fence(),
            files: Vec::new(),
        };
        for spec in &md.private_keys {
            let staged = self
                .store
                .load_cert_and_key(Group::Staging, name, spec)
                .map_err(|e| e.to_string())?;
            if let Some((key, chain)) = staged {
                set.files
                    .push((files::privkey(spec), keys::key_to_pem(&key, None)?));
                set.files
                    .push((files::pubcert(spec), keys::chain_to_pem(&chain)?));
            }
        }
        cluster.publish(lease, name, &set)?;
        crate::md_log!(
            *self.log,
            Level::Info,
            "{name}: certificate(s) published to the cluster (fence {})",
            set.fence
        );
        Ok(())
    }

    /// `Ok` while `lease` is still ours; else say so (the order is abandoned).
    pub(super) fn lease_held(&self, name: &str, lease: &dyn Lease) -> Result<(), String> {
        if lease.held() {
            return Ok(());
        }
        crate::md_log!(
            *self.log,
            Level::Warning,
            "{name}: cluster lease lost (fence {}): another node may renew it now, abandoning \
             this order",
            lease.fence()
        );
        Err("the cluster lease of this MD was lost".into())
    }

    /// At a challenge setup (`challenge-setup:<type>:<domain>`): the lease must still be
    /// ours, and the challenge's files go to the cluster so that any node answers it.
    pub(super) fn share_challenge(
        &self,
        cluster: &dyn Cluster,
        lease: &dyn Lease,
        name: &str,
        reason: &str,
    ) -> Result<(), String> {
        self.lease_held(name, lease)?;
        let Some((_, domain)) = reason
            .strip_prefix("challenge-setup:")
            .and_then(|r| r.split_once(':'))
        else {
            return Ok(());
        };
        let mut shared = Vec::new();
        let names = self
            .store
            .files(Group::Challenges, domain)
            .map_err(|e| e.to_string())?;
        for f in names {
            if let Some(data) = self
                .store
                .load(Group::Challenges, domain, &f)
                .map_err(|e| e.to_string())?
            {
                shared.push((f, data));
            }
        }
        cluster
            .share_challenge(domain, &shared)
            .map_err(|e| format!("sharing the challenge with the cluster: {e}"))
    }
}
