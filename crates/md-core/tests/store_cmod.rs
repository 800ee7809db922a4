//! Interoperability with stores written by the real C mod_md (Debian's mod_md.so).
//!
//! 1. Our code creates the store layout; the C module obtains an account and certificates for two MDs (one with two key specs),
//!    stages them, and activates them on a graceful restart.
//! 2. Our code opens that store, reads everything (keys decrypt, account and jobs parse, keys
//!    match certificates) and writes it all back; JSON comes out byte-identical.
//! 3. The C module starts on the store we wrote and serves the same certificates without
//!    ordering new ones; for a third MD it reuses the account we re-encrypted.
//! 4. We activate the C module's staged set for that third MD; the C module serves it.

#[path = "common/cmod.rs"]
mod cmod;

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cmod::{free_port, staged_finished, wait_for, www_data, Httpd, Pebble, TempDir};
use md_core::reg::{Activation, Registry};
use md_core::store::{
    files, keys, FileKind, FsStore, Group, MdState, Store, StoreExt, StoreOptions,
};
use openssl::x509::X509;
use std::os::unix::fs::PermissionsExt;

const A1: &str = "a1.test";
const A2: &str = "a2.test";
const A3: &str = "a3.test";
const TWO_KEYS: &str = "    MDPrivateKeys secp256r1 rsa2048";

fn fp_pem(pem: &[u8]) -> String {
    keys::fingerprint_sha256(&X509::from_pem(pem).unwrap())
}

fn read(store: &Path, rel: &str) -> Vec<u8> {
    fs::read(store.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file and directory the C module wrote has the mode (and owner) our store would give
/// it. Returns the number of entries checked.
fn modes_match_ours(store: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let (uid, _) = www_data();
    let mut n = 0;
    let mut bad = Vec::new();
    for g in Group::ALL {
        let gd = store.join(g.dir());
        let Ok(rd) = fs::read_dir(&gd) else { continue };
        let owner = if g.child_owned() { uid } else { 0 };
        let m = fs::metadata(&gd).unwrap();
        // Known, deliberate difference: the C module keeps an empty accounts/ at 0750 until
        // the first account is written (then 0755); we use 0755 from the start.
        let empty_accounts = g == Group::Accounts && fs::read_dir(&gd).unwrap().next().is_none();
        if (m.mode() & 0o777, m.uid()) != (g.top_mode(), owner)
            && !(empty_accounts && m.mode() & 0o777 == 0o750)
        {
            bad.push(format!(
                "{}: {:o} uid {}",
                g.dir(),
                m.mode() & 0o777,
                m.uid()
            ));
        }
        for e in rd {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            // tmp/ leftovers of the C module's activation are not ours to judge
            if !m.is_dir() || g == Group::Tmp {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if (m.mode() & 0o777, m.uid()) != (g.dir_mode(), owner) {
                bad.push(format!(
                    "{}/{name}: {:o} uid {}",
                    g.dir(),
                    m.mode() & 0o777,
                    m.uid()
                ));
            }
            for f in fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                let fname = f.file_name().to_string_lossy().into_owned();
                let kind = if fname.ends_with(".json") {
                    FileKind::Json
                } else if fname.contains("privkey") || fname == files::ACCOUNT_KEY {
                    FileKind::PrivateKey
                } else if fname.contains("pubcert") {
                    FileKind::Cert
                } else {
                    FileKind::Text
                };
                let fm = f.metadata().unwrap();
                let want = (kind.mode(g), owner);
                n += 1;
                if (fm.mode() & 0o777, fm.uid()) != want {
                    bad.push(format!(
                        "{}/{name}/{fname}: {:o} uid {} (ours {:o} uid {})",
                        g.dir(),
                        fm.mode() & 0o777,
                        fm.uid(),
                        want.0,
                        want.1
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "C module modes differ from ours:\n{}",
        bad.join("\n")
    );
    n
}

fn open(store: &Path) -> FsStore {
    FsStore::open(
        store,
        StoreOptions {
            child_owner: Some(www_data()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn c_module_store_round_trip() {
    let tmp = TempDir::new("md-store-cmod");
    let (hp, tp) = (free_port(), free_port());
    let pebble = Pebble::start(tmp.path(), hp, tp);
    let mut httpd = Httpd::new(tmp.path(), hp, tp);
    let store_dir = httpd.store();

    // The store secret is raw bytes used as pass phrase; make sure both implementations
    // take all 48 of them, NULs included (a C-string pass phrase would stop at the first).
    fs::create_dir_all(&store_dir).unwrap();
    let mut secret = [0x5au8; 48];
    secret[0] = 0;
    secret[17] = 0;
    fs::write(
        store_dir.join("md_store.json"),
        format!(
            "{{\"store\": {{\"version\": 3.0}}, \"key\": \"{}\"}}",
            URL_SAFE_NO_PAD.encode(secret)
        ),
    )
    .unwrap();
    fs::set_permissions(
        store_dir.join("md_store.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // ---- 1. the C module obtains and activates certificates
    httpd.start(&pebble, &[(A1, TWO_KEYS), (A2, "")]);
    wait_for(120, "C module staged a1+a2", || {
        staged_finished(&store_dir, A1) && staged_finished(&store_dir, A2)
    });
    assert!(modes_match_ours(&store_dir) >= 6);
    httpd.graceful();
    wait_for(60, "C module activated a1+a2", || {
        [A1, A2].iter().all(|m| {
            store_dir
                .join("domains")
                .join(m)
                .join("pubcert.pem")
                .exists()
                && !store_dir.join("staging").join(m).exists()
        })
    });
    httpd.stop();
    assert!(modes_match_ours(&store_dir) >= 10);
    let before: Vec<(String, Vec<u8>)> = [
        "domains/a1.test/pubcert.pem",
        "domains/a1.test/pubcert.secp256r1.pem",
        "domains/a2.test/pubcert.pem",
    ]
    .iter()
    .map(|r| (r.to_string(), read(&store_dir, r)))
    .collect();
    let md_json: Vec<Vec<u8>> = [A1, A2]
        .iter()
        .map(|m| read(&store_dir, &format!("domains/{m}/md.json")))
        .collect();
    let job_json: Vec<Vec<u8>> = [A1, A2]
        .iter()
        .map(|m| read(&store_dir, &format!("domains/{m}/job.json")))
        .collect();

    // ---- 2. our code reads everything and writes it back
    {
        let st = open(&store_dir);
        assert_eq!(st.secret(), &secret[..]);
        let accounts = st.names(Group::Accounts).unwrap();
        assert_eq!(accounts.len(), 1, "{accounts:?}");
        let id = &accounts[0];
        assert!(id.starts_with("ACME-127.0.0.1-"), "{id}");
        let acct = st.load_account(Group::Accounts, id).unwrap().unwrap();
        assert!(acct.is_valid() && acct.url.starts_with("https://127.0.0.1:"));
        let akey = st
            .load_pkey(Group::Accounts, id, files::ACCOUNT_KEY)
            .unwrap()
            .expect("account key decrypts with the store secret");
        assert!(akey.rsa().is_ok(), "mod_md account keys are RSA");
        st.save_pkey(Group::Accounts, id, files::ACCOUNT_KEY, &akey)
            .unwrap();
        st.save_account(Group::Accounts, id, &acct).unwrap();

        for (i, m) in [A1, A2].iter().enumerate() {
            let rec = st.load_md(Group::Domains, m).unwrap().unwrap();
            assert_eq!(rec.state, MdState::Complete);
            assert_eq!(rec.ca_account.as_deref(), Some(id.as_str()));
            let want = if *m == A1 { 2 } else { 1 };
            assert_eq!(rec.md.private_keys.len(), want, "{m}");
            for spec in &rec.md.private_keys {
                let (key, chain) = st
                    .load_cert_and_key(Group::Domains, m, spec)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{m} {spec} key+cert"));
                assert!(chain.len() >= 2, "chain includes the issuer");
                st.save_cert_and_key(Group::Domains, m, spec, &key, &chain)
                    .unwrap();
            }
            let job = st.load_job(Group::Domains, m).unwrap().unwrap();
            assert!(job.finished);
            st.save_job(Group::Domains, m, &job).unwrap();
            st.save_md(Group::Domains, &rec).unwrap();
            assert_eq!(
                String::from_utf8(read(&store_dir, &format!("domains/{m}/md.json"))).unwrap(),
                String::from_utf8(md_json[i].clone()).unwrap(),
                "md.json byte-identical after our rewrite"
            );
            assert_eq!(
                String::from_utf8(read(&store_dir, &format!("domains/{m}/job.json"))).unwrap(),
                String::from_utf8(job_json[i].clone()).unwrap(),
                "job.json byte-identical after our rewrite"
            );
        }
        // a sync with the MDs as configured changes nothing
        let reg = Registry::new(st);
        let mds: Vec<_> = [A1, A2]
            .iter()
            .map(|m| reg.get(m).unwrap().unwrap().md)
            .collect();
        let rep = reg.sync(&mds).unwrap();
        assert!(
            rep.new.is_empty() && rep.changed.is_empty() && rep.renamed.is_empty(),
            "{rep:?}"
        );
    }

    // ---- 3. the C module runs on the store we wrote; a3 is new
    httpd.start(&pebble, &[(A1, TWO_KEYS), (A2, ""), (A3, "")]);
    wait_for(120, "C module staged a3", || {
        staged_finished(&store_dir, A3)
    });
    for (rel, pem) in &before {
        assert_eq!(&read(&store_dir, rel), pem, "{rel} unchanged");
    }
    assert!(
        !store_dir.join("staging").join(A1).exists(),
        "no new order for a1"
    );
    assert!(
        !store_dir.join("staging").join(A2).exists(),
        "no new order for a2"
    );
    let accounts: Vec<_> = fs::read_dir(store_dir.join("accounts")).unwrap().collect();
    assert_eq!(
        accounts.len(),
        1,
        "C module reused the account we re-encrypted"
    );
    assert!(
        !store_dir
            .join("staging")
            .join(A3)
            .join("account.json")
            .exists(),
        "no new account staged"
    );
    let served_a2 = fp_pem(httpd.served_cert(A2).as_bytes());
    assert_eq!(
        served_a2,
        fp_pem(&read(&store_dir, "domains/a2.test/pubcert.pem"))
    );
    let served_a1 = fp_pem(httpd.served_cert(A1).as_bytes());
    let a1_fps = [
        fp_pem(&read(&store_dir, "domains/a1.test/pubcert.pem")),
        fp_pem(&read(&store_dir, "domains/a1.test/pubcert.secp256r1.pem")),
    ];
    assert!(
        a1_fps.contains(&served_a1),
        "a1 serves one of its certificates"
    );
    httpd.stop();
    assert!(
        !httpd.error_log().contains("AH10069"),
        "no failed activation"
    );

    // ---- 4. we activate the C module's staged a3; the C module serves it
    {
        let reg = Registry::new(open(&store_dir));
        let res = reg.load_stagings([A3]);
        assert_eq!(res.len(), 1);
        match &res[0].1 {
            Ok(Activation::Activated { .. }) => {}
            other => panic!("activation of C-staged a3: {other:?}"),
        }
        let st = reg.store();
        assert!(!st.exists(Group::Staging, A3, files::MD));
        let rec = st.load_md(Group::Domains, A3).unwrap().unwrap();
        assert_eq!(rec.state, MdState::Complete);
        assert!(rec.ca_url.is_some());
        let spec = &rec.md.private_keys[0];
        st.load_cert_and_key(Group::Domains, A3, spec)
            .unwrap()
            .unwrap();
    }
    let a3_cert = read(&store_dir, "domains/a3.test/pubcert.pem");
    httpd.start(&pebble, &[(A1, TWO_KEYS), (A2, ""), (A3, "")]);
    let served_a3 = fp_pem(httpd.served_cert(A3).as_bytes());
    assert_eq!(
        served_a3,
        fp_pem(&a3_cert),
        "C module serves the set we activated"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    for m in [A1, A2, A3] {
        assert!(
            !store_dir.join("staging").join(m).exists(),
            "no renewal of {m}"
        );
    }
    httpd.stop();
}

/// Names in a group directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Rename detection (SPEC 4.4) side by side: an MD's first name changes, its names stay. The
/// C module and our sync must both move the store entry to the new name and keep the
/// certificate; the C module then serves it from the store our sync renamed.
#[test]
fn rename_detection_matches_the_c_module() {
    let tmp = TempDir::new("md-store-rename");
    let (hp, tp) = (free_port(), free_port());
    let pebble = Pebble::start(tmp.path(), hp, tp);
    let mut httpd = Httpd::new(tmp.path(), hp, tp);
    let ours = httpd.store();
    httpd.start(&pebble, &[("r1.test r2.test", "")]);
    wait_for(120, "C module staged r1.test", || {
        staged_finished(&ours, "r1.test")
    });
    httpd.graceful();
    wait_for(60, "C module activated r1.test", || {
        ours.join("domains/r1.test/pubcert.pem").exists() && !ours.join("staging/r1.test").exists()
    });
    httpd.stop();
    let cert = read(&ours, "domains/r1.test/pubcert.pem");

    // a copy of the store for the C module to rename
    let theirs = tmp.path().join("md-c");
    cmod::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&ours)
            .arg(&theirs),
    );

    // ours: sync with the renamed MD
    {
        let reg = Registry::new(open(&ours));
        let mut m = reg.get("r1.test").unwrap().unwrap().md;
        m.name = "r2.test".into();
        m.domains = vec!["r2.test".into(), "r1.test".into()];
        let rep = reg.sync(&[m]).unwrap();
        assert_eq!(
            rep.renamed,
            vec![("r1.test".into(), "r2.test".into())],
            "{rep:?}"
        );
        assert!(rep.new.is_empty() && rep.removed.is_empty(), "{rep:?}");
    }

    // theirs: the C module starts with the renamed MD on its copy
    fs::rename(&ours, tmp.path().join("md-ours")).unwrap();
    fs::rename(&theirs, &ours).unwrap();
    httpd.start(&pebble, &[("r2.test r1.test", "")]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    httpd.stop();
    fs::rename(&ours, &theirs).unwrap();
    fs::rename(tmp.path().join("md-ours"), &ours).unwrap();

    for st in [&ours, &theirs] {
        assert_eq!(
            listing(&st.join("domains")),
            vec!["r2.test"],
            "{}",
            st.display()
        );
        assert_eq!(
            read(st, "domains/r2.test/pubcert.pem"),
            cert,
            "certificate kept"
        );
        assert!(!st.join("staging/r2.test").exists(), "no new order");
    }
    let md_of = |st: &Path| -> serde_json::Value {
        serde_json::from_slice(&read(st, "domains/r2.test/md.json")).unwrap()
    };
    let (a, b) = (md_of(&ours), md_of(&theirs));
    for k in ["state", "ca", "privkey", "transitive"] {
        assert_eq!(a[k], b[k], "md.json '{k}' after rename");
    }
    let set = |v: &serde_json::Value| {
        let mut d: Vec<String> = serde_json::from_value(v["domains"].clone()).unwrap();
        d.sort();
        d
    };
    assert_eq!(set(&a), set(&b));
    // Deliberate difference: the C module only moves the directory and leaves md.json as it
    // was (old `name`, old order of names); ours rewrites it from the configuration so that
    // directory and content agree. The C module is fine with ours (checked below).
    assert_eq!(b["name"], "r1.test", "C module behaviour changed?");
    assert_eq!(a["name"], "r2.test");
    assert_eq!(a["domains"], serde_json::json!(["r2.test", "r1.test"]));

    // the C module serves the certificate from the store our sync renamed
    httpd.start(&pebble, &[("r2.test r1.test", "")]);
    let served = fp_pem(httpd.served_cert("r2.test").as_bytes());
    assert_eq!(served, fp_pem(&cert));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!ours.join("staging/r2.test").exists(), "no new order");
    httpd.stop();
}
