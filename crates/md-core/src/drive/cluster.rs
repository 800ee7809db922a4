//! Cluster mode (mod_md-rs only): several httpd nodes share their MDs through a database, so
//! that one node orders each renewal and every node serves the result. The renewal driver
//! talks to the cluster only through [`Cluster`]; the PostgreSQL implementation is the
//! `md-cluster` crate, so md-core knows no database.
//!
//! The node's own file store stays what mod_ssl reads: a set another node published is copied
//! into the local `staging/` and activated like a local renewal (at a graceful restart, or by
//! MDActivationRestart).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What the cluster knows of an MD's published set (from [`Cluster::refresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The fencing number of the lease under which it was written (grows with every lease).
    pub fence: i64,
    /// The newest `notBefore` of its certificates: newer than a node's active set means
    /// "take it".
    pub valid_from: DateTime<Utc>,
    /// This node found it not fitting its configuration ([`Cluster::set_unfit`]).
    pub unfit: bool,
}

/// A certificate set as it travels between nodes: file names as in `domains/<md>/`
/// (`privkey[.<spec>].pem`, `pubcert[.<spec>].pem`), keys unencrypted PEM (the cluster
/// encrypts them in the database).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedSet {
    /// The CA that issued it.
    pub ca_url: String,
    /// The node that ordered it (for log lines).
    pub owner: String,
    /// Its fencing number.
    pub fence: i64,
    /// The files.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The right to renew one MD across the cluster, held while the renewal runs (kept alive in
/// the background). Dropping it releases it.
pub trait Lease: Send + Sync {
    /// Its fencing number: a result is accepted only under the newest one.
    fn fence(&self) -> i64;
    /// Still ours (not expired, not taken over)? Checked before steps that commit to the CA.
    fn held(&self) -> bool;
    /// A failed attempt: keep others from retrying before `until` (this node's backoff), so
    /// a cluster does not multiply the requests to a CA that refuses.
    fn keep_until(&self, until: DateTime<Utc>);
}

/// The answer to [`Cluster::acquire`].
pub enum Acquire<'c> {
    /// The lease is this node's: go ahead.
    Held(Box<dyn Lease + 'c>),
    /// Another node holds it (renewing, or backing off after a failure).
    Busy,
    /// A set was published since the last refresh: take that one instead of ordering.
    Newer,
}

/// The cluster as the renewal driver sees it. Errors are texts for the log: the database is
/// away, and then nothing is renewed (a node without the cluster's lease never orders).
pub trait Cluster: Sync {
    /// The node's name (log lines).
    fn node(&self) -> &str;
    /// How often a node looks for sets that others published (MDClusterPoll).
    fn poll(&self) -> Duration;
    /// Read which MDs have published sets (one round trip), unless that was done less than
    /// [`Cluster::poll`] ago (then nothing happens).
    fn refresh(&self) -> Result<(), String>;
    /// The published set of `md`, as of the last refresh.
    fn published(&self, md: &str) -> Option<Published>;
    /// The published set `fence` of `md` does not fit this node: do not offer it again.
    fn set_unfit(&self, md: &str, fence: i64);
    /// Read the published set of `md` (keys decrypted).
    fn fetch(&self, md: &str) -> Result<Option<SharedSet>, String>;
    /// Take the lease of `md`, unless another node holds it or a set other than `seen` (the
    /// fence of [`Cluster::published`]) has been published meanwhile.
    fn acquire(&self, md: &str, seen: Option<i64>) -> Result<Acquire<'_>, String>;
    /// Challenge material of `domain` is in place on this node: make it answerable on all
    /// (`files` as in `challenges/<domain>/`; keys are encrypted in the database).
    fn share_challenge(&self, domain: &str, files: &[(String, Vec<u8>)]) -> Result<(), String>;
    /// A renewal under `lease` staged `set`: publish it, unless the lease was lost (then
    /// `Err`, and the caller discards what it staged). Releases the lease.
    fn publish(&self, lease: &dyn Lease, md: &str, set: &SharedSet) -> Result<(), String>;
}

/// Is a published set newer than what a node serves? (`active_from`: the newest `notBefore`
/// of its active certificates, `None` without any.)
pub fn is_newer(p: &Published, active_from: Option<DateTime<Utc>>) -> bool {
    active_from.map_or(true, |a| p.valid_from > a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_only_when_later() {
        let t = Utc::now();
        let p = Published {
            fence: 1,
            valid_from: t,
            unfit: false,
        };
        assert!(is_newer(&p, None));
        assert!(is_newer(&p, Some(t - chrono::Duration::seconds(1))));
        assert!(!is_newer(&p, Some(t)));
        assert!(!is_newer(&p, Some(t + chrono::Duration::seconds(1))));
    }
}
