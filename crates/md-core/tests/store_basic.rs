//! Store and registry behaviour without a CA: open/versions/migration, tolerant files, sync with
//! rename detection, activation checks, account promotion, the store lock.

#[path = "common/cmod.rs"]
mod cmod;
#[path = "common/storefix.rs"]
mod storefix;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use cmod::TempDir;
use md_core::md::KeySpec;
use md_core::reg::{ActivateError, Activation, LockError, Registry, StoreLock};
use md_core::store::{
    files, FileKind, FsStore, Group, HttpdReachability, MdState, OpenError, Store, StoreExt,
    StoreOptions,
};
use storefix::{cert, key, md, put_active, put_staged, CertSet};

fn open(dir: &std::path::Path) -> Result<FsStore, OpenError> {
    FsStore::open(dir, StoreOptions::default())
}

fn ec() -> KeySpec {
    KeySpec::Ec {
        curve: "secp256r1".into(),
    }
}

#[test]
fn new_store_layout_and_meta() {
    let t = TempDir::new("md-basic");
    let dir = t.path().join("md");
    let st = open(&dir).unwrap();
    for g in Group::ALL {
        assert!(dir.join(g.dir()).is_dir(), "{}", g.dir());
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("md_store.json")).unwrap()).unwrap();
    assert_eq!(meta["store"]["version"].as_f64(), Some(3.0));
    assert_eq!(meta["key"].as_str().unwrap().len(), 64);
    assert_eq!(st.secret().len(), 48);
    let secret = st.secret().to_vec();
    drop(st);
    assert_eq!(open(&dir).unwrap().secret(), &secret[..], "created once");
}

#[test]
fn newer_or_corrupt_store_is_refused_with_advice() {
    let t = TempDir::new("md-basic");
    fs::write(
        t.path().join("md_store.json"),
        r#"{"store":{"version":4.0},"key":"AAAA"}"#,
    )
    .unwrap();
    let e = open(t.path()).unwrap_err();
    assert!(matches!(e, OpenError::NewerVersion { .. }), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
    fs::write(t.path().join("md_store.json"), "{\"store\": {\"vers").unwrap();
    let e = open(t.path()).unwrap_err();
    assert!(matches!(e, OpenError::CorruptMeta { .. }));
    assert!(e.to_string().contains("backup"), "advice in: {e}");
}

#[test]
fn v1_store_is_migrated() {
    let t = TempDir::new("md-basic");
    let d = t.path().join("domains/old.org");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        t.path().join("md_store.json"),
        r#"{"store":{"version":1.0},"key":"QUJDRA"}"#,
    )
    .unwrap();
    let k = key(&KeySpec::Default);
    let leaf = cert(&k, &["old.org"], 7);
    let ca = cert(&key(&ec()), &["issuer"], 8);
    fs::write(d.join("pkey.pem"), k.private_key_to_pem_pkcs8().unwrap()).unwrap();
    fs::write(d.join("cert.pem"), leaf.to_pem().unwrap()).unwrap();
    fs::write(d.join("chain.pem"), ca.to_pem().unwrap()).unwrap();
    fs::write(
        d.join("md.json"),
        r#"{"name":"old.org","domains":["old.org"]}"#,
    )
    .unwrap();
    let st = open(t.path()).unwrap();
    assert_eq!(st.version(), 3.0);
    let (_, chain) = st
        .load_cert_and_key(Group::Domains, "old.org", &KeySpec::Default)
        .unwrap()
        .unwrap();
    assert_eq!(chain.len(), 2, "cert + chain joined into pubcert.pem");
    assert!(!d.join("cert.pem").exists() && !d.join("chain.pem").exists());
    let meta = fs::read_to_string(t.path().join("md_store.json")).unwrap();
    assert!(meta.contains("\"version\": 3.0"), "{meta}");
}

#[test]
fn httpd_json_repaired_and_written_only_when_not_default() {
    let t = TempDir::new("md-basic");
    let st = open(t.path()).unwrap();
    assert_eq!(st.load_reachability().unwrap(), None);
    let r = HttpdReachability {
        http: false,
        https: true,
    };
    st.save_reachability(r).unwrap();
    assert_eq!(st.load_reachability().unwrap(), Some(r));
    st.save_reachability(HttpdReachability::default()).unwrap();
    assert!(!t.path().join("httpd.json").exists());
    fs::write(t.path().join("httpd.json"), "{garbage").unwrap();
    drop(st);
    let st = open(t.path()).unwrap();
    assert!(!t.path().join("httpd.json").exists(), "removed silently");
    assert_eq!(st.load_reachability().unwrap(), None);
}

#[test]
fn names_are_confined_to_their_group() {
    let t = TempDir::new("md-basic");
    let st = open(t.path()).unwrap();
    for bad in ["", ".", "..", "a/b", "@ready@x"] {
        assert!(
            st.save(Group::Domains, bad, "f", b"x", FileKind::Text)
                .is_err(),
            "{bad}"
        );
    }
    assert!(st
        .save(Group::Domains, "a", "../x", b"x", FileKind::Text)
        .is_err());
}

#[test]
fn sync_of_many_mds_writes_them_all_in_order_and_reports_each_failure() {
    // Many records are written by several threads: the report keeps the config order and
    // a failing MD is reported under its own name, the others written.
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let names: Vec<String> = (0..150).map(|i| format!("m{i:03}.org")).collect();
    // a file where MD 77's directory belongs: its md.json cannot be written
    fs::write(
        t.path().join("domains").join(&names[77]),
        b"not a directory",
    )
    .unwrap();
    let mds: Vec<_> = names
        .iter()
        .map(|n| md(n, &[n.as_str()], &[KeySpec::Default]))
        .collect();
    let rep = reg.sync(&mds).unwrap();
    let expected: Vec<String> = names.iter().filter(|n| *n != &names[77]).cloned().collect();
    assert_eq!(rep.new, expected);
    assert_eq!(rep.errors.len(), 1, "{:?}", rep.errors);
    assert_eq!(rep.errors[0].0, names[77]);
    for n in &expected {
        assert_eq!(reg.get(n).unwrap().unwrap().md.domains, vec![n.clone()]);
    }
    // all of them changed: rewritten, reported as changed, in order
    let wider: Vec<_> = names
        .iter()
        .map(|n| md(n, &[n.as_str(), &format!("www.{n}")], &[KeySpec::Default]))
        .collect();
    let rep = reg.sync(&wider).unwrap();
    assert_eq!(rep.changed, expected);
    assert_eq!(reg.get(&names[149]).unwrap().unwrap().md.domains.len(), 2);
}

#[test]
fn sync_new_changed_renamed_removed() {
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let a = md("a.org", &["a.org", "www.a.org"], &[KeySpec::Default]);
    let b = md("b.org", &["b.org"], &[KeySpec::Default]);
    let rep = reg.sync(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(rep.new, vec!["a.org", "b.org"]);
    let rec = reg.get("a.org").unwrap().unwrap();
    assert_eq!(rec.state, MdState::Incomplete);
    assert_eq!(
        rec.state_descr.as_deref(),
        Some("certificate(rsa) is missing")
    );
    // unchanged: nothing written
    assert_eq!(
        reg.sync(&[a.clone(), b.clone()]).unwrap(),
        Default::default()
    );
    // certificate present -> complete; keep the store's account across config changes
    let set = CertSet::new(&[KeySpec::Default], &["a.org", "www.a.org"], 1);
    put_active(reg.store(), &a, &set);
    let mut rec = reg.get("a.org").unwrap().unwrap();
    rec.ca_account = Some("ACME-x-0000".into());
    reg.store().save_md(Group::Domains, &rec).unwrap();
    let mut a2 = a.clone();
    a2.must_staple = true;
    let rep = reg.sync(&[a2.clone(), b.clone()]).unwrap();
    assert_eq!(rep.changed, vec!["a.org"]);
    let rec = reg.get("a.org").unwrap().unwrap();
    assert!(rec.md.must_staple);
    assert_eq!(rec.ca_account.as_deref(), Some("ACME-x-0000"));
    // rename: new first name, same names -> dirs renamed, certs kept
    let renamed = md("www.a.org", &["www.a.org", "a.org"], &[KeySpec::Default]);
    reg.store()
        .save(
            Group::Challenges,
            "b.org",
            files::HTTP01,
            b"x",
            FileKind::Text,
        )
        .unwrap();
    let rep = reg.sync(std::slice::from_ref(&renamed)).unwrap();
    assert_eq!(
        rep.renamed,
        vec![("a.org".to_string(), "www.a.org".to_string())]
    );
    assert_eq!(rep.removed, vec!["b.org"]);
    assert!(!reg.store().exists(Group::Domains, "a.org", files::MD));
    assert!(reg
        .store()
        .load_cert_and_key(Group::Domains, "www.a.org", &KeySpec::Default)
        .unwrap()
        .is_some());
    assert_eq!(
        reg.get("www.a.org").unwrap().unwrap().state,
        MdState::Complete
    );
    assert!(
        reg.store().exists(Group::Domains, "b.org", files::MD),
        "removed MDs are kept"
    );
    assert!(reg
        .store()
        .files(Group::Challenges, "b.org")
        .unwrap()
        .is_empty());
    // most names in common wins when none contains all
    let c1 = md(
        "c.org",
        &["c.org", "x.c.org", "y.c.org"],
        &[KeySpec::Default],
    );
    let d1 = md("d.org", &["d.org", "x.c.org"], &[KeySpec::Default]);
    reg.sync(&[c1, d1]).unwrap();
    let n = md(
        "n.org",
        &["n.org", "x.c.org", "y.c.org"],
        &[KeySpec::Default],
    );
    let rep = reg.sync(&[n]).unwrap();
    assert_eq!(
        rep.renamed,
        vec![("c.org".to_string(), "n.org".to_string())]
    );
}

#[test]
fn corrupt_md_json_affects_only_that_md() {
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let a = md("a.org", &["a.org"], &[KeySpec::Default]);
    let b = md("b.org", &["b.org"], &[KeySpec::Default]);
    reg.sync(&[a.clone(), b.clone()]).unwrap();
    fs::write(t.path().join("domains/a.org/md.json"), "{\"name\": ").unwrap();
    fs::write(t.path().join("domains/b.org/job.json"), "[1,").unwrap();
    let mut b2 = b.clone();
    b2.stapling = true;
    let rep = reg.sync(&[a, b2]).unwrap();
    assert_eq!(rep.errors.len(), 1, "{rep:?}");
    assert_eq!(rep.errors[0].0, "a.org");
    assert_eq!(rep.changed, vec!["b.org"]);
    assert_eq!(
        fs::read_to_string(t.path().join("domains/a.org/md.json")).unwrap(),
        "{\"name\": ",
        "left for the admin"
    );
    let e = reg.store().load_job(Group::Domains, "b.org").unwrap_err();
    assert!(e.to_string().contains("domains/b.org/job.json"), "{e}");
}

#[test]
fn activation_checks_and_account_promotion() {
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let specs = [ec(), KeySpec::Default];
    let a = md("a.org", &["a.org"], &specs);
    let old = CertSet::new(&specs, &["a.org"], 1);
    let new = CertSet::new(&specs, &["a.org"], 2);
    put_active(reg.store(), &a, &old);

    // in progress (one certificate missing): left alone
    put_staged(reg.store(), &a, &new, true);
    reg.store()
        .remove(Group::Staging, "a.org", &files::pubcert(&KeySpec::Default))
        .unwrap();
    let r = reg.load_stagings(["a.org"]);
    assert!(matches!(r[0].1, Ok(Activation::NotReady)), "{r:?}");
    assert!(reg.store().exists(Group::Staging, "a.org", files::MD));

    // key does not match the certificate: refused and purged, active set untouched
    let (_, _, c) = &new.pairs[1];
    let pem = c.to_pem().unwrap();
    let other = key(&KeySpec::Default);
    reg.store()
        .save(
            Group::Staging,
            "a.org",
            &files::pubcert(&KeySpec::Default),
            &pem,
            FileKind::Cert,
        )
        .unwrap();
    reg.store()
        .save_pkey(
            Group::Staging,
            "a.org",
            &files::privkey(&KeySpec::Default),
            &other,
        )
        .unwrap();
    let r = reg.load_stagings(["a.org"]);
    assert!(
        matches!(r[0].1, Err(ActivateError::Mismatch { .. })),
        "{r:?}"
    );
    assert!(
        !reg.store().exists(Group::Staging, "a.org", files::MD),
        "purged"
    );
    assert!(reg
        .store()
        .files(Group::Challenges, "a.org")
        .unwrap()
        .is_empty());
    assert_eq!(
        storefix::assert_all_pairs_match(reg.store()),
        2,
        "old set still active"
    );

    // a good set: activated, old one archived, staged account promoted with a fresh id
    put_staged(reg.store(), &a, &new, true);
    let r = reg.load_stagings(["a.org"]);
    match &r[0].1 {
        Ok(Activation::Activated { archived, account }) => {
            assert_eq!(archived.as_deref(), Some("a.org.1"));
            assert_eq!(account.as_deref(), Some("ACME-127.0.0.1-0000"));
        }
        other => panic!("{other:?}"),
    }
    let rec = reg.get("a.org").unwrap().unwrap();
    assert_eq!(rec.ca_account.as_deref(), Some("ACME-127.0.0.1-0000"));
    assert!(reg.store().exists(Group::Domains, "a.org", files::JOB));
    let k = fs::read_to_string(t.path().join("domains/a.org/privkey.pem")).unwrap();
    assert!(
        k.starts_with("-----BEGIN PRIVATE KEY-----"),
        "plain in domains/"
    );
    let k = fs::read_to_string(t.path().join("accounts/ACME-127.0.0.1-0000/account.pem")).unwrap();
    assert!(k.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    // the same account staged again (same URL) is merged, a second MD gets archive .1 too
    let newer = CertSet::new(&specs, &["a.org"], 3);
    put_staged(reg.store(), &a, &newer, true);
    match &reg.load_stagings(["a.org"])[0].1 {
        Ok(Activation::Activated { archived, account }) => {
            assert_eq!(archived.as_deref(), Some("a.org.2"));
            assert_eq!(account.as_deref(), Some("ACME-127.0.0.1-0000"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reg.store().names(Group::Accounts).unwrap().len(), 1);
    let (kf, cf) = reg.cert_files("a.org", &ec()).unwrap();
    assert!(kf.ends_with("domains/a.org/privkey.secp256r1.pem"));
    assert!(cf.ends_with("domains/a.org/pubcert.secp256r1.pem"));

    // no effective CA url: refused
    let b = md("b.org", &["b.org"], &[ec()]);
    let bset = CertSet::new(&[ec()], &["b.org"], 4);
    put_staged(reg.store(), &b, &bset, false);
    let mut rec = reg
        .store()
        .load_md(Group::Staging, "b.org")
        .unwrap()
        .unwrap();
    rec.ca_url = None;
    reg.store().save_md(Group::Staging, &rec).unwrap();
    assert!(matches!(
        reg.load_stagings(["b.org"])[0].1,
        Err(ActivateError::NoCaUrl(_))
    ));
}

#[test]
fn store_lock_excludes_another_process() {
    let t = TempDir::new("md-basic");
    // another process holds a POSIX record lock, as APR's apr_file_lock takes it
    let script = format!(
        "import fcntl,sys,time\nf=open('{}/store.lock','a+')\nfcntl.lockf(f,fcntl.LOCK_EX)\n\
         print('locked',flush=True)\nsys.stdin.read()\n",
        t.path().display()
    );
    let mut holder = cmod::Proc::spawn(
        "python3",
        Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let e = StoreLock::acquire(t.path(), Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    drop(holder.child.stdin.take()); // let it exit, releasing the lock
    let l = StoreLock::acquire(t.path(), Duration::from_secs(10)).unwrap();
    drop(l);
    holder.stop();
}

#[test]
fn concurrent_creation_agrees_on_one_secret() {
    for _ in 0..10 {
        let t = TempDir::new("md-basic");
        let root = t.path().join("md");
        fs::create_dir_all(&root).unwrap();
        let secrets: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| open(&root).unwrap().secret().to_vec()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            secrets.windows(2).all(|w| w[0] == w[1]),
            "one secret for all"
        );
        assert_eq!(open(&root).unwrap().secret(), &secrets[0][..]);
    }
    let t = TempDir::new("md-basic");
    let child = StoreOptions {
        as_child: true,
        ..Default::default()
    };
    assert!(
        FsStore::open(t.path(), child).is_err(),
        "a child never creates the secret"
    );
    assert!(!t.path().join("md_store.json").exists());
}

#[test]
fn sync_assesses_coverage() {
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let a = md("a.org", &["a.org"], &[KeySpec::Default]);
    put_active(
        reg.store(),
        &a,
        &CertSet::new(&[KeySpec::Default], &["a.org"], 1),
    );
    reg.sync(std::slice::from_ref(&a)).unwrap();
    assert_eq!(reg.get("a.org").unwrap().unwrap().state, MdState::Complete);
    // a name added to the MD: the certificate no longer covers it
    let wider = md("a.org", &["a.org", "new.a.org"], &[KeySpec::Default]);
    assert_eq!(reg.sync(&[wider]).unwrap().changed, vec!["a.org"]);
    let rec = reg.get("a.org").unwrap().unwrap();
    assert_eq!(rec.state, MdState::Incomplete);
    assert_eq!(
        rec.state_descr.as_deref(),
        Some("certificate(rsa) does not cover all domains.")
    );
    // back to the covered set: complete again
    reg.sync(&[a]).unwrap();
    assert_eq!(reg.get("a.org").unwrap().unwrap().state, MdState::Complete);
}

#[test]
fn sync_saves_a_changed_state_description() {
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let a = md("a.org", &["a.org", "b.a.org"], &[KeySpec::Default]);
    reg.sync(std::slice::from_ref(&a)).unwrap();
    put_active(
        reg.store(),
        &a,
        &CertSet::new(&[KeySpec::Default], &["a.org"], 1),
    );
    let mut rec = reg.get("a.org").unwrap().unwrap();
    rec.state = MdState::Incomplete;
    rec.state_descr = Some("certificate(rsa) is missing".into());
    reg.store().save_md(Group::Domains, &rec).unwrap();
    assert_eq!(
        reg.sync(std::slice::from_ref(&a)).unwrap().changed,
        vec!["a.org"]
    );
    assert_eq!(
        reg.get("a.org").unwrap().unwrap().state_descr.as_deref(),
        Some("certificate(rsa) does not cover all domains.")
    );
}

#[test]
fn failed_rename_is_reported_for_that_md_only() {
    let t = TempDir::new("md-basic");
    let reg = Registry::new(open(t.path()).unwrap());
    let a = md("a.org", &["a.org", "www.a.org"], &[KeySpec::Default]);
    let b = md("b.org", &["b.org"], &[KeySpec::Default]);
    reg.sync(&[a, b.clone()]).unwrap();
    // a stray directory where the renamed MD would go
    fs::create_dir_all(t.path().join("domains/www.a.org/junk")).unwrap();
    let renamed = md("www.a.org", &["www.a.org", "a.org"], &[KeySpec::Default]);
    let mut b2 = b;
    b2.must_staple = true;
    let rep = reg.sync(&[renamed, b2]).unwrap();
    assert_eq!(rep.errors.len(), 1, "{rep:?}");
    assert_eq!(rep.errors[0].0, "www.a.org");
    assert_eq!(rep.changed, vec!["b.org"]);
    assert!(
        reg.store().exists(Group::Domains, "a.org", files::MD),
        "left in place"
    );
}
