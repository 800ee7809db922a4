//! Crash tests: a fault-injecting file layer stops every multi-file operation at each of its
//! steps (as if the process died there, with a torn write at that point). After each crash the
//! store must open, every key must match its certificate, the previously active certificate
//! must be intact (or fully replaced by the new one), and a rerun must complete the work.

#[path = "common/cmod.rs"]
mod cmod;
#[path = "common/storefix.rs"]
mod storefix;

use std::path::Path;

use cmod::TempDir;
use md_core::md::KeySpec;
use md_core::reg::Registry;
use md_core::store::{files, keys, FaultPlan, FsStore, Group, Store, StoreExt, StoreOptions};
use storefix::{assert_all_pairs_match, md, put_active, put_staged, CertSet};

fn specs() -> Vec<KeySpec> {
    vec![
        KeySpec::Ec {
            curve: "secp384r1".into(),
        },
        KeySpec::Default,
    ]
}

fn open(dir: &Path, faults: Option<FaultPlan>) -> Result<FsStore, md_core::store::OpenError> {
    FsStore::open(
        dir,
        StoreOptions {
            faults,
            ..Default::default()
        },
    )
}

/// Fingerprints of the active certificates (per spec), None where a spec has no pair.
fn active(st: &FsStore, name: &str) -> Vec<Option<String>> {
    specs()
        .iter()
        .map(|s| {
            st.load_cert_and_key(Group::Domains, name, s)
                .unwrap()
                .map(|(_, c)| keys::fingerprint_sha256(&c[0]))
        })
        .collect()
}

#[test]
fn activation_survives_a_crash_at_every_step() {
    let m = md("a.org", &["a.org", "www.a.org"], &specs());
    let old = CertSet::new(&specs(), &["a.org", "www.a.org"], 1);
    let new = CertSet::new(&specs(), &["a.org", "www.a.org"], 2);
    let old_fp: Vec<_> = old.fingerprints().into_iter().map(Some).collect();
    let new_fp: Vec<_> = new.fingerprints().into_iter().map(Some).collect();
    let fixture = |dir: &Path| {
        let st = open(dir, None).unwrap();
        put_active(&st, &m, &old);
        put_staged(&st, &m, &new, true);
    };

    // count the steps of one uninterrupted open + activation
    let tmp = TempDir::new("md-crash-count");
    fixture(tmp.path());
    let plan = FaultPlan::default();
    let reg = Registry::new(open(tmp.path(), Some(plan.clone())).unwrap());
    let r = reg.load_stagings(["a.org"]);
    assert!(r[0].1.is_ok(), "{r:?}");
    let total = plan.steps();
    assert!(
        total > 20,
        "activation should take many steps, took {total}"
    );
    assert_eq!(active(reg.store(), "a.org"), new_fp);

    for k in 1..=total {
        let tmp = TempDir::new("md-crash");
        fixture(tmp.path());
        if let Ok(st) = open(tmp.path(), Some(FaultPlan::crash_at(k))) {
            let _ = Registry::new(st).load_stagings(["a.org"]);
        }
        // "restart": open recovers, then the check
        let st = open(tmp.path(), None).unwrap_or_else(|e| panic!("step {k}: open: {e}"));
        assert_all_pairs_match(&st);
        let now = active(&st, "a.org");
        assert!(
            now == old_fp || now == new_fp,
            "step {k}: domains/ holds neither the old nor the new set: {now:?}"
        );
        let staged = st.exists(Group::Staging, "a.org", files::MD);
        if now == old_fp {
            assert!(
                staged,
                "step {k}: old set active but staging gone: certificate lost"
            );
        }
        // the next start completes the activation
        let reg = Registry::new(st);
        for (_, r) in reg.load_stagings(["a.org"]) {
            r.unwrap_or_else(|e| panic!("step {k}: re-activation: {e}"));
        }
        assert_eq!(active(reg.store(), "a.org"), new_fp, "step {k}");
        assert!(!reg.store().exists(Group::Staging, "a.org", files::MD));
        let acct = reg.store().names(Group::Accounts).unwrap();
        assert!(!acct.is_empty(), "step {k}: staged account promoted");
        assert!(
            reg.store()
                .load_pkey(Group::Accounts, &acct[acct.len() - 1], files::ACCOUNT_KEY)
                .unwrap()
                .is_some(),
            "step {k}"
        );
    }
}

#[test]
fn pair_write_survives_a_crash_at_every_step() {
    let spec = specs()[0].clone();
    let names = ["b.org"];
    let old = CertSet::new(std::slice::from_ref(&spec), &names, 1);
    let new = CertSet::new(std::slice::from_ref(&spec), &names, 2);
    let (_, nk, nc) = &new.pairs[0];
    for group in [Group::Domains, Group::Staging] {
        let fixture = |dir: &Path| {
            let st = open(dir, None).unwrap();
            let (s, k, c) = &old.pairs[0];
            st.save_cert_and_key(group, "b.org", s, k, std::slice::from_ref(c))
                .unwrap();
        };
        let tmp = TempDir::new("md-pair-count");
        fixture(tmp.path());
        let plan = FaultPlan::default();
        let st = open(tmp.path(), Some(plan.clone())).unwrap();
        let before = plan.steps();
        st.save_cert_and_key(group, "b.org", &spec, nk, std::slice::from_ref(nc))
            .unwrap();
        let total = plan.steps();
        assert!(total - before >= 8, "{group:?}: {} steps", total - before);
        for k in 1..=total {
            let tmp = TempDir::new("md-pair");
            fixture(tmp.path());
            if let Ok(st) = open(tmp.path(), Some(FaultPlan::crash_at(k))) {
                let _ = st.save_cert_and_key(group, "b.org", &spec, nk, std::slice::from_ref(nc));
            }
            let st = open(tmp.path(), None).unwrap();
            assert_all_pairs_match(&st);
            let (_, c) = st
                .load_cert_and_key(group, "b.org", &spec)
                .unwrap()
                .unwrap_or_else(|| panic!("{group:?} step {k}: certificate lost"));
            let fp = keys::fingerprint_sha256(&c[0]);
            assert!(
                fp == old.fingerprints()[0] || fp == new.fingerprints()[0],
                "{group:?} step {k}"
            );
            let leftovers: Vec<String> =
                std::fs::read_dir(tmp.path().join(group.dir()).join("b.org"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".new") || n.ends_with(".pair") || n.ends_with(".tmp"))
                    .collect();
            assert!(leftovers.is_empty(), "{group:?} step {k}: {leftovers:?}");
        }
    }
}

#[test]
fn single_file_writes_are_old_or_new_after_a_crash() {
    let m = md("c.org", &["c.org"], &[KeySpec::Default]);
    let tmp0 = TempDir::new("md-json-count");
    let plan = FaultPlan::default();
    let st = open(tmp0.path(), None).unwrap();
    let mut rec = md_core::store::MdRecord::new(m.clone());
    st.save_md(Group::Domains, &rec).unwrap();
    let st = open(tmp0.path(), Some(plan.clone())).unwrap();
    let before = plan.steps();
    rec.md.domains.push("www.c.org".into());
    st.save_md(Group::Domains, &rec).unwrap();
    let total = plan.steps();
    for k in before + 1..=total {
        let tmp = TempDir::new("md-json");
        let st = open(tmp.path(), None).unwrap();
        let mut r = md_core::store::MdRecord::new(m.clone());
        st.save_md(Group::Domains, &r).unwrap();
        let st = open(tmp.path(), Some(FaultPlan::crash_at(k))).unwrap();
        r.md.domains.push("www.c.org".into());
        let _ = st.save_md(Group::Domains, &r);
        let st = open(tmp.path(), None).unwrap();
        let got = st.load_md(Group::Domains, "c.org").unwrap().unwrap();
        assert!(
            got.md.domains.len() == 1 || got.md.domains.len() == 2,
            "step {k}"
        );
    }
}

/// Serial numbers of the active certificates, per spec.
fn active_serials(st: &FsStore, name: &str, specs: &[KeySpec]) -> Vec<Option<String>> {
    specs
        .iter()
        .map(|s| {
            st.load_cert_and_key(Group::Domains, name, s)
                .unwrap()
                .map(|(_, c)| c[0].serial_number().to_bn().unwrap().to_string())
        })
        .collect()
}

/// A real process, SIGKILLed at a random moment while it stages and activates certificate
/// sets in a loop; the store must be consistent afterwards. The test re-runs its own binary
/// as the writer (selected by an environment variable).
#[test]
fn killed_writer_leaves_a_consistent_store() {
    let specs = [
        KeySpec::Ec {
            curve: "secp384r1".into(),
        },
        KeySpec::Ec {
            curve: "secp256r1".into(),
        },
    ];
    let m = md("k.org", &["k.org"], &specs);
    if let Some(dir) = std::env::var_os("MD_STORE_CRASH_WRITER") {
        // writer: activate generation after generation until killed
        let reg = Registry::new(open(Path::new(&dir), None).unwrap());
        println!("writer ready");
        for serial in 2.. {
            let set = CertSet::new(&specs, &["k.org"], serial);
            put_staged(reg.store(), &m, &set, serial % 5 == 0);
            for (_, r) in reg.load_stagings(["k.org"]) {
                r.unwrap();
            }
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut progressed = 0;
    for round in 0..12 {
        let tmp = TempDir::new("md-kill");
        {
            let st = open(tmp.path(), None).unwrap();
            put_active(&st, &m, &CertSet::new(&specs, &["k.org"], 1));
        }
        let mut child = cmod::Proc::spawn(
            "crash writer",
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "killed_writer_leaves_a_consistent_store",
                    "--nocapture",
                ])
                .env("MD_STORE_CRASH_WRITER", tmp.path())
                .stdout(std::process::Stdio::null()),
        );
        let mut r = [0u8; 2];
        openssl::rand::rand_bytes(&mut r).unwrap();
        let ms = 100 + u64::from(u16::from_le_bytes(r)) % 900;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        assert!(child.alive(), "round {round}: writer died by itself");
        child.signal("KILL");
        let _ = child.child.wait();
        let st = open(tmp.path(), None).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_all_pairs_match(&st);
        let serials = active_serials(&st, "k.org", &specs);
        assert!(
            serials[0].is_some(),
            "round {round}: active certificate lost"
        );
        assert_eq!(
            serials[0], serials[1],
            "round {round}: mixed generations {serials:?}"
        );
        if serials[0].as_deref() != Some("1") {
            progressed += 1;
        }
        // and the store is usable: a staged set left behind activates
        let reg = Registry::new(st);
        for (_, r) in reg.load_stagings(["k.org"]) {
            r.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert_all_pairs_match(reg.store());
    }
    eprintln!("{progressed} of 12 rounds were killed after at least one activation");
    assert!(progressed > 0, "the writer never got to activate anything");
}
