//! Steady state: the pieces that keep a running server from ordering when nothing is needed.
//! The per-MD renewal lock, late writes into a purged staging dir, crash recovery beside a
//! live child, activation that refuses stale sets and carries unchanged key specs over, and
//! the renewal driver's decisions (lying job.json, backoff across restarts, vetoes). No CA:
//! where a renewal is attempted, the CA is unreachable and the attempt fails.

#[path = "common/cmod.rs"]
mod cmod;
#[path = "common/storefix.rs"]
mod storefix;

use chrono::{Duration as CDuration, Utc};
use cmod::TempDir;
use md_core::drive::check::ActiveCerts;
use md_core::drive::renew::{MdOutcome, RenewSettings, Renewer};
use md_core::event::Events;
use md_core::log::NullSink;
use md_core::md::challenges::{ChallengeSupport, Reachability};
use md_core::md::{KeySpec, ManagedDomain};
use md_core::reg::{ActivateError, Activation, Registry};
use md_core::status::MdSnapshot;
use md_core::store::{files, FileKind, FsStore, Group, JobRecord, Store, StoreExt, StoreOptions};
use md_core::time::Timeslice;
use storefix::{md, put_active, put_staged, CertSet};

fn open(dir: &std::path::Path) -> FsStore {
    FsStore::open(dir, StoreOptions::default()).unwrap()
}

fn ec() -> KeySpec {
    KeySpec::Ec {
        curve: "secp256r1".into(),
    }
}

#[test]
fn md_lock_is_exclusive_and_a_never_made_lock_is_free() {
    let t = TempDir::new("md-steady");
    let st = open(t.path());
    assert!(
        st.lock_md("a.org", false).unwrap().is_some(),
        "nobody ever locked: free, and nothing is created"
    );
    assert!(!t.path().join("staging/.locks").exists());
    let held = st.lock_md("a.org", true).unwrap().expect("first taker");
    assert!(st.lock_md("a.org", true).unwrap().is_none(), "child");
    assert!(st.lock_md("a.org", false).unwrap().is_none(), "parent");
    assert!(st.lock_md("b.org", true).unwrap().is_some(), "per MD");
    drop(held);
    assert!(st.lock_md("a.org", false).unwrap().is_some());
    // the lock dir is not an MD
    st.save_job(Group::Staging, "a.org", &JobRecord::default())
        .unwrap();
    assert_eq!(st.names(Group::Staging).unwrap(), vec!["a.org"]);
}

#[test]
fn a_planted_fifo_is_no_lock_and_blocks_nobody() {
    let t = TempDir::new("md-steady");
    let st = open(t.path());
    st.save_job(Group::Staging, "a.org", &JobRecord::default())
        .unwrap();
    let locks = t.path().join("staging/.locks");
    std::fs::create_dir_all(&locks).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(locks.join("a.org"))
        .status()
        .unwrap();
    assert!(made.success());
    // the parent's open with recovery neither hangs nor fails; the MD counts as busy
    drop(open(t.path()));
    assert!(st.lock_md("a.org", false).unwrap().is_none());
    assert!(st.lock_md("a.org", true).unwrap().is_none());
}

#[test]
fn a_late_write_never_recreates_a_purged_staging_dir() {
    let t = TempDir::new("md-steady");
    let st = open(t.path());
    let job = JobRecord {
        name: "a.org".into(),
        finished: true,
        ..Default::default()
    };
    let data = job.to_json();
    st.save_job(Group::Staging, "a.org", &job).unwrap();
    assert!(st
        .save_existing(Group::Staging, "a.org", files::JOB, &data, FileKind::Json)
        .unwrap());
    st.purge(Group::Staging, "a.org").unwrap();
    assert!(!st
        .save_existing(Group::Staging, "a.org", files::JOB, &data, FileKind::Json)
        .unwrap());
    assert!(!t.path().join("staging/a.org").exists());
}

#[test]
fn recovery_leaves_a_locked_staging_dir_to_its_writer() {
    let t = TempDir::new("md-steady");
    let st = open(t.path());
    st.save_job(Group::Staging, "a.org", &JobRecord::default())
        .unwrap();
    let half = t.path().join("staging/a.org/privkey.pem.new");
    std::fs::write(&half, b"being written").unwrap();
    let held = st.lock_md("a.org", true).unwrap().unwrap();
    drop(open(t.path())); // the parent of a new generation opens the store
    assert!(
        half.exists(),
        "a live child's file survives the parent's recovery"
    );
    drop(held);
    drop(open(t.path()));
    assert!(!half.exists(), "an abandoned one is cleaned up");
}

#[test]
fn activation_waits_for_a_child_that_holds_the_lock() {
    let t = TempDir::new("md-steady");
    let reg = Registry::new(open(t.path()));
    let a = md("a.org", &["a.org"], &[ec()]);
    put_staged(
        reg.store(),
        &a,
        &CertSet::new(&[ec()], &["a.org"], 2),
        false,
    );
    let held = reg.store().lock_md("a.org", true).unwrap().unwrap();
    let r = reg.load_stagings_for(std::slice::from_ref(&a));
    assert!(matches!(r[0].1, Ok(Activation::Busy)), "{r:?}");
    assert!(reg.store().exists(Group::Staging, "a.org", files::MD));
    drop(held);
    let r = reg.load_stagings_for(std::slice::from_ref(&a));
    assert!(matches!(r[0].1, Ok(Activation::Activated { .. })), "{r:?}");
}

#[test]
fn activation_refuses_a_set_that_no_longer_fits() {
    let t = TempDir::new("md-steady");
    let reg = Registry::new(open(t.path()));
    let a = md("a.org", &["a.org"], &[ec()]);
    let old = CertSet::new(&[ec()], &["a.org"], 1);
    put_active(reg.store(), &a, &old);
    put_staged(
        reg.store(),
        &a,
        &CertSet::new(&[ec()], &["a.org"], 2),
        false,
    );
    // www.a.org was added to the MD after the renewal was ordered
    let wider = md("a.org", &["a.org", "www.a.org"], &[ec()]);
    let r = reg.load_stagings_for(std::slice::from_ref(&wider));
    match &r[0].1 {
        Err(e @ ActivateError::Stale { why, .. }) => {
            assert_eq!(why, "certificate(secp256r1) does not cover all domains.");
            assert!(e.purges_staging());
        }
        other => panic!("{other:?}"),
    }
    assert!(!reg.store().exists(Group::Staging, "a.org", files::MD));
    let (_, chain) = reg
        .store()
        .load_cert_and_key(Group::Domains, "a.org", &ec())
        .unwrap()
        .unwrap();
    assert_eq!(chain[0].serial_number().to_bn().unwrap().to_string(), "1");
}

#[test]
fn activation_carries_over_a_key_spec_that_was_not_ordered() {
    let t = TempDir::new("md-steady");
    let reg = Registry::new(open(t.path()));
    // active: RSA only; the config adds secp256r1; the renewal ordered only that one
    let rsa_only = md("a.org", &["a.org"], &[KeySpec::Default]);
    let active = CertSet::new(&[KeySpec::Default], &["a.org"], 1);
    put_active(reg.store(), &rsa_only, &active);
    let both = md("a.org", &["a.org"], &[ec(), KeySpec::Default]);
    let mut rec = md_core::store::MdRecord::new(both.clone());
    rec.ca_url = Some(both.ca_urls[0].clone());
    reg.store().save_md(Group::Staging, &rec).unwrap();
    let new_ec = CertSet::new(&[ec()], &["a.org"], 2);
    let (s, k, c) = &new_ec.pairs[0];
    reg.store()
        .save_cert_and_key(Group::Staging, "a.org", s, k, std::slice::from_ref(c))
        .unwrap();
    let r = reg.load_stagings_for(std::slice::from_ref(&both));
    assert!(matches!(r[0].1, Ok(Activation::Activated { .. })), "{r:?}");
    let st = reg.store();
    let serial = |spec: &KeySpec| {
        let (_, chain) = st
            .load_cert_and_key(Group::Domains, "a.org", spec)
            .unwrap()
            .unwrap();
        chain[0].serial_number().to_bn().unwrap().to_string()
    };
    assert_eq!(serial(&KeySpec::Default), "1", "carried over");
    assert_eq!(serial(&ec()), "2", "newly ordered");
    assert!(storefix::assert_all_pairs_match(st) >= 2);
}

// --- the renewal driver ---------------------------------------------------------------------

/// An MD whose CA cannot be reached: an attempted renewal fails at once.
fn unreachable_md(window: Timeslice) -> ManagedDomain {
    let mut m = md("a.org", &["a.org"], &[ec()]);
    m.ca_urls = vec!["https://127.0.0.1:9/dir".into()];
    m.ca_challenges = vec!["http-01".into()];
    m.renew_window = window;
    m
}

const SUPPORT: ChallengeSupport = ChallengeSupport {
    reach: Reachability {
        http: true,
        https: true,
    },
    acme_tls_1: false,
    dns01_cmd: false,
};

struct Driver {
    _t: TempDir,
    store: FsStore,
    root: std::path::PathBuf,
}

impl Driver {
    /// A store with an active, valid 90-day certificate for `m`.
    fn new(m: &ManagedDomain) -> Driver {
        let t = TempDir::new("md-steady");
        let root = t.path().to_path_buf();
        let store = open(&root);
        put_active(&store, m, &CertSet::new(&m.private_keys, &["a.org"], 1));
        Driver { _t: t, store, root }
    }

    /// What the parent hands to the child.
    fn picture(&self, m: &ManagedDomain) -> ActiveCerts {
        ActiveCerts::from_snapshot(&MdSnapshot::load(m, &self.root, true))
    }

    fn run(&self, m: &ManagedDomain, settings: RenewSettings, events: Events) -> MdOutcome {
        let log = NullSink;
        let r = Renewer::new(&self.store, self.root.clone(), &log, settings, events);
        let mut active = self.picture(m);
        r.run_md(m, SUPPORT, &mut active, Utc::now())
    }

    fn job(&self) -> Option<JobRecord> {
        self.store.load_job(Group::Staging, "a.org").unwrap()
    }
}

fn no_events() -> Events {
    Events::new(None, None)
}

#[test]
fn a_valid_active_certificate_is_not_renewed() {
    let m = unreachable_md(Timeslice::Percent(33));
    let d = Driver::new(&m);
    let before = Utc::now();
    match d.run(&m, RenewSettings::default(), no_events()) {
        MdOutcome::Idle(Some(t)) => assert!(t > before + CDuration::days(50), "{t}"),
        other => panic!("{other:?}"),
    }
    assert!(d.job().is_none(), "nothing attempted, nothing written");
}

#[test]
fn a_job_claiming_a_missing_staged_set_starts_over() {
    // 2.6.10's "lying job.json": finished and notified, but no staged files.
    let m = unreachable_md(Timeslice::Duration(std::time::Duration::from_secs(
        100 * 86400,
    )));
    let d = Driver::new(&m);
    let lying = JobRecord {
        name: "a.org".into(),
        finished: true,
        notified: true,
        notified_renewed: true,
        ..Default::default()
    };
    d.store.save_job(Group::Staging, "a.org", &lying).unwrap();
    let out = d.run(&m, RenewSettings::default(), no_events());
    assert!(
        matches!(out, MdOutcome::Failed(_)),
        "{out:?}: renewal attempted"
    );
    let job = d.job().unwrap();
    assert!(!job.finished && job.errors == 1, "{job:?}");
}

#[test]
fn a_failed_md_is_retried_at_a_restart_unless_the_ca_asked_to_wait() {
    let m = unreachable_md(Timeslice::Duration(std::time::Duration::from_secs(
        100 * 86400,
    )));
    let d = Driver::new(&m);
    // job.json keeps whole seconds
    let now = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let failed = JobRecord {
        name: "a.org".into(),
        errors: 3,
        last_run: Some(now - CDuration::hours(1)),
        next_run: Some(now + CDuration::hours(1)),
        ..Default::default()
    };
    let restarted = RenewSettings {
        generation_started: now - CDuration::minutes(1),
        ..Default::default()
    };
    // same generation: the backoff holds
    d.store.save_job(Group::Staging, "a.org", &failed).unwrap();
    let same = RenewSettings {
        generation_started: now - CDuration::hours(2),
        ..Default::default()
    };
    assert_eq!(
        d.run(&m, same, no_events()),
        MdOutcome::Idle(failed.next_run)
    );
    // the CA's Retry-After survives the restart
    let asked = JobRecord {
        ca_retry_until: Some(now + CDuration::minutes(30)),
        ..failed.clone()
    };
    d.store.save_job(Group::Staging, "a.org", &asked).unwrap();
    assert_eq!(
        d.run(&m, restarted.clone(), no_events()),
        MdOutcome::Idle(failed.next_run)
    );
    // a restart otherwise retries at once, counting errors from zero
    d.store.save_job(Group::Staging, "a.org", &failed).unwrap();
    let out = d.run(&m, restarted, no_events());
    assert!(matches!(out, MdOutcome::Failed(_)), "{out:?}");
    assert_eq!(d.job().unwrap().errors, 1);
}

#[test]
fn a_huge_error_count_in_job_json_neither_overflows_nor_drops_the_backoff() {
    // job.json is written by the child user: its error count may be anything. The next
    // failure must still count (saturating) and back off for the capped 24 h (+-50 %), not
    // panic (that loses the watchdog pass) nor wrap to no backoff at all.
    let m = unreachable_md(Timeslice::Duration(std::time::Duration::from_secs(
        100 * 86400,
    )));
    let d = Driver::new(&m);
    let now = Utc::now();
    for veto in [false, true] {
        let job = JobRecord {
            name: "a.org".into(),
            errors: u32::MAX,
            last_run: Some(now - CDuration::hours(1)),
            next_run: Some(now - CDuration::minutes(1)),
            ..Default::default()
        };
        d.store.save_job(Group::Staging, "a.org", &job).unwrap();
        let same_generation = RenewSettings {
            generation_started: now - CDuration::hours(2),
            ..Default::default()
        };
        let events = match veto {
            true => Events::new(Some("/bin/false".into()), None),
            false => no_events(),
        };
        let out = d.run(&m, same_generation, events);
        let MdOutcome::Failed(next) = out else {
            panic!("{out:?}")
        };
        assert!(next >= now + CDuration::hours(12), "veto {veto}: {next}");
        assert!(
            next <= Utc::now() + CDuration::hours(36),
            "veto {veto}: {next}"
        );
        assert_eq!(d.job().unwrap().errors, u32::MAX);
    }
}

#[test]
fn a_renewing_veto_counts_as_an_error_with_backoff() {
    let m = unreachable_md(Timeslice::Duration(std::time::Duration::from_secs(
        100 * 86400,
    )));
    let d = Driver::new(&m);
    let veto = Events::new(Some("/bin/false".into()), None);
    let before = Utc::now();
    let out = d.run(&m, RenewSettings::default(), veto);
    let MdOutcome::Failed(next) = out else {
        panic!("{out:?}")
    };
    assert!(
        next >= before + CDuration::seconds(14),
        "jittered 30 s backoff"
    );
    let job = d.job().unwrap();
    assert_eq!(job.errors, 1);
    assert_eq!(job.last_run, None, "no renewal was started");
}

#[test]
fn an_md_renewed_by_another_process_is_left_alone() {
    let m = unreachable_md(Timeslice::Duration(std::time::Duration::from_secs(
        100 * 86400,
    )));
    let d = Driver::new(&m);
    let _other = d.store.lock_md("a.org", true).unwrap().unwrap();
    let before = Utc::now();
    match d.run(&m, RenewSettings::default(), no_events()) {
        MdOutcome::Idle(Some(t)) => assert!(t > before && t < before + CDuration::minutes(1)),
        other => panic!("{other:?}"),
    }
    assert!(d.job().is_none());
}

#[test]
fn an_unusable_finished_staging_set_is_dropped() {
    for spoil in ["key", "ca", "names"] {
        let m = unreachable_md(Timeslice::Percent(33));
        let d = Driver::new(&m);
        let set = CertSet::new(&m.private_keys, &["a.org"], 2);
        put_staged(&d.store, &m, &set, false);
        let mut m = m.clone();
        match spoil {
            "key" => d
                .store
                .save(
                    Group::Staging,
                    "a.org",
                    &files::privkey(&ec()),
                    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\ngarbage\n",
                    FileKind::PrivateKey,
                )
                .unwrap(),
            "ca" => m.ca_urls = vec!["https://127.0.0.1:9/other-ca".into()],
            _ => m.domains.push("www.a.org".into()),
        }
        let out = d.run(&m, RenewSettings::default(), no_events());
        match spoil {
            // still served by the valid active certificate: nothing due, staging is gone
            "key" | "ca" => {
                assert!(matches!(out, MdOutcome::Idle(Some(_))), "{spoil}: {out:?}");
                assert!(d.job().is_none(), "{spoil}: staging purged");
            }
            // the active certificate does not cover the new name either: ordered again
            _ => {
                assert!(matches!(out, MdOutcome::Failed(_)), "{spoil}: {out:?}");
                assert!(!d.job().unwrap().finished);
            }
        }
    }
}

#[test]
fn account_dirs_left_private_by_the_c_module_are_opened_to_the_child() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("md-steady");
    drop(open(t.path()));
    let acct = t.path().join("accounts/ACME-127.0.0.1-0000");
    std::fs::create_dir(&acct).unwrap();
    std::fs::write(acct.join("account.json"), b"{}").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set(&t.path().join("accounts"), 0o750);
    set(&acct, 0o750);
    set(&acct.join("account.json"), 0o600);
    // as httpd's parent opens it (as root, with a child user; here our own ids)
    let me = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&acct).unwrap();
        (m.uid(), m.gid())
    };
    let opts = StoreOptions {
        child_owner: Some(me),
        ..Default::default()
    };
    drop(FsStore::open(t.path(), opts).unwrap());
    assert_eq!(mode(&t.path().join("accounts")), 0o755);
    assert_eq!(mode(&acct), 0o755);
    assert_eq!(mode(&acct.join("account.json")), 0o644);
}

#[test]
fn the_renewed_command_runs_without_the_md_lock() {
    // A `renewed` command that restarts httpd: the new parent must be able to activate.
    let m = unreachable_md(Timeslice::Percent(33));
    let d = Driver::new(&m);
    put_staged(
        &d.store,
        &m,
        &CertSet::new(&m.private_keys, &["a.org"], 2),
        false,
    );
    let lock = d.root.join("staging/.locks/a.org");
    let cmd = d.root.join("renewed.sh");
    std::fs::write(
        &cmd,
        format!(
            "#!/bin/sh\n[ \"$1\" = renewed ] || exit 0\nexec flock -n {} true\n",
            lock.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cmd, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let events = Events::new(Some(cmd.display().to_string()), None);
    assert_eq!(
        d.run(&m, RenewSettings::default(), events),
        MdOutcome::Idle(None)
    );
    let job = d.job().unwrap();
    assert!(job.notified_renewed, "the command got the lock: {job:?}");
    assert!(lock.exists(), "the check before it took the lock");
}

#[test]
fn a_stopping_child_starts_no_renewal() {
    // An old generation's child after a graceful restart: the new one takes over.
    let m = unreachable_md(Timeslice::Duration(std::time::Duration::from_secs(
        100 * 86400,
    )));
    let d = Driver::new(&m);
    let log = NullSink;
    let mut r = Renewer::new(
        &d.store,
        d.root.clone(),
        &log,
        RenewSettings::default(),
        no_events(),
    );
    r.stopping = &|| true;
    let now = Utc::now();
    let mut active = d.picture(&m);
    assert_eq!(
        r.run_md(&m, SUPPORT, &mut active, now),
        MdOutcome::Idle(Some(now))
    );
    assert!(d.job().is_none(), "no attempt recorded, no error counted");
}
