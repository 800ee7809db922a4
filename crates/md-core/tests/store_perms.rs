//! Permissions and ownership (SPEC 3.1), run as root with www-data as the child user, and a
//! full file system (a 64k tmpfs) on which every write fails cleanly with old data intact.

#[path = "common/cmod.rs"]
mod cmod;
#[path = "common/storefix.rs"]
mod storefix;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cmod::{as_www_data, assert_root, run, www_data, TempDir};
use md_core::config::values::Eab;
use md_core::md::KeySpec;
use md_core::reg::{ActivateError, Registry};
use md_core::store::{files, FileKind, FsStore, Group, JobRecord, Store, StoreExt, StoreOptions};
use storefix::{md, put_active, put_staged, CertSet};

fn mode_owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid())
}

#[test]
fn modes_and_owners_follow_the_c_module() {
    assert_root();
    let t = TempDir::new("md-perms");
    let dir = t.path().join("md");
    let (uid, gid) = www_data();
    let st = FsStore::open(
        &dir,
        StoreOptions {
            child_owner: Some((uid, gid)),
            ..Default::default()
        },
    )
    .unwrap();
    let specs = [KeySpec::Default];
    let a = md("a.org", &["a.org"], &specs);
    put_active(&st, &a, &CertSet::new(&specs, &["a.org"], 1));
    put_staged(&st, &a, &CertSet::new(&specs, &["a.org"], 2), true);
    st.save(Group::Ocsp, "a.org", "job.json", b"{}", FileKind::Json)
        .unwrap();
    let p = |r: &str| -> PathBuf { dir.join(r) };
    let expect = [
        ("", 0o755, 0),
        ("md_store.json", 0o600, 0),
        ("domains", 0o700, 0),
        ("domains/a.org", 0o700, 0),
        ("domains/a.org/md.json", 0o600, 0),
        ("domains/a.org/privkey.pem", 0o600, 0),
        ("domains/a.org/pubcert.pem", 0o600, 0),
        ("archive", 0o700, 0),
        ("tmp", 0o700, 0),
        ("accounts", 0o755, 0),
        ("staging", 0o755, uid),
        ("staging/a.org", 0o755, uid),
        ("staging/a.org/md.json", 0o644, uid),
        ("staging/a.org/privkey.pem", 0o644, uid),
        ("staging/a.org/account.pem", 0o644, uid),
        ("challenges", 0o755, uid),
        ("challenges/a.org", 0o755, uid),
        ("challenges/a.org/acme-http-01.txt", 0o644, uid),
        ("ocsp", 0o750, uid),
        ("ocsp/a.org/job.json", 0o644, uid),
    ];
    for (rel, mode, owner) in expect {
        assert_eq!(mode_owner(&p(rel)), (mode, owner), "{rel}");
    }
    let staged_key = fs::read_to_string(p("staging/a.org/privkey.pem")).unwrap();
    assert!(staged_key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));

    // the child user can work in staging/ and challenges/ but not read domains/
    assert!(as_www_data(
        &dir,
        "echo x > staging/a.org/x && rm staging/a.org/x"
    ));
    assert!(as_www_data(&dir, "cat staging/a.org/job.json >/dev/null"));
    assert!(as_www_data(
        &dir,
        "echo t > challenges/a.org/acme-http-01.txt"
    ));
    assert!(!as_www_data(
        &dir,
        "cat domains/a.org/privkey.pem 2>/dev/null"
    ));
    assert!(!as_www_data(&dir, "ls domains/ 2>/dev/null"));
    assert!(!as_www_data(&dir, "cat md_store.json 2>/dev/null"));
    assert!(
        as_www_data(&dir, "ls accounts/ >/dev/null"),
        "child finds accounts"
    );

    // activation (as root) keeps domains/ root-only; the promoted account is readable
    let reg = Registry::new(st);
    for (_, r) in reg.load_stagings(["a.org"]) {
        r.unwrap();
    }
    assert_eq!(mode_owner(&p("domains/a.org")), (0o700, 0));
    assert_eq!(mode_owner(&p("domains/a.org/privkey.pem")), (0o600, 0));
    assert_eq!(mode_owner(&p("archive/a.org.1")), (0o700, 0));
    let acct = reg.store().names(Group::Accounts).unwrap()[0].clone();
    assert_eq!(mode_owner(&p(&format!("accounts/{acct}"))), (0o755, 0));
    assert_eq!(
        mode_owner(&p(&format!("accounts/{acct}/account.pem"))),
        (0o644, 0)
    );
}

/// The EAB hmac (MDExternalAccountBinding) is a credential: every file holding it is
/// unreadable by others (the C module leaves staging md.json/account.json and the promoted
/// accounts/<id>/account.json 0644), while the child user still reads what it needs.
#[test]
fn eab_hmac_is_not_readable_by_others() {
    assert_root();
    let t = TempDir::new("md-perms-eab");
    let dir = t.path().join("md");
    let (uid, gid) = www_data();
    let opts = || StoreOptions {
        child_owner: Some((uid, gid)),
        ..Default::default()
    };
    let st = FsStore::open(&dir, opts()).unwrap();
    let specs = [KeySpec::Default];
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let mut a = md("a.org", &["a.org"], &specs);
    a.eab = Some(Eab::Key {
        kid: "kid-1".into(),
        hmac: hmac.into(),
    });
    put_staged(&st, &a, &CertSet::new(&specs, &["a.org"], 1), true);
    let mut acct = st.load_account(Group::Staging, "a.org").unwrap().unwrap();
    acct.eab = Some(serde_json::json!({"kid": "kid-1", "hmac": hmac}));
    st.save_account(Group::Staging, "a.org", &acct).unwrap();
    // an MD without EAB keeps the C module's modes
    let b = md("b.org", &["b.org"], &specs);
    put_staged(&st, &b, &CertSet::new(&specs, &["b.org"], 2), true);
    // a proxy URL with a password is a credential too
    let mut c = md("c.org", &["c.org"], &specs);
    c.env_own.proxy_url = Some("http://user:pw@127.0.0.1:3128".into());
    put_staged(&st, &c, &CertSet::new(&specs, &["c.org"], 3), false);
    let p = |r: &str| -> PathBuf { dir.join(r) };
    assert_eq!(mode_owner(&p("staging/c.org/md.json")), (0o600, uid));
    assert!(fs::read_to_string(p("staging/a.org/md.json"))
        .unwrap()
        .contains(hmac));
    assert_eq!(mode_owner(&p("staging/a.org/md.json")), (0o600, uid));
    assert_eq!(mode_owner(&p("staging/a.org/account.json")), (0o600, uid));
    assert_eq!(mode_owner(&p("staging/b.org/md.json")), (0o644, uid));
    assert_eq!(mode_owner(&p("staging/b.org/account.json")), (0o644, uid));
    // the child (and the request handlers, same user) still read their staging files
    assert!(as_www_data(&dir, "cat staging/a.org/md.json >/dev/null"));

    // activation as root: the promoted account is root's, readable by the child's group only
    let reg = Registry::new(st);
    for (_, r) in reg.load_stagings(["a.org"]) {
        r.unwrap();
    }
    let ids = reg.store().names(Group::Accounts).unwrap();
    let id = ids
        .iter()
        .find(|id| {
            let a = reg.store().load_account(Group::Accounts, id).unwrap();
            a.is_some_and(|a| a.eab.is_some())
        })
        .expect("promoted EAB account");
    let acct_json = p(&format!("accounts/{id}/account.json"));
    assert!(fs::read_to_string(&acct_json).unwrap().contains(hmac));
    let m = fs::metadata(&acct_json).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, gid));
    assert!(as_www_data(
        &dir,
        &format!("cat accounts/{id}/account.json >/dev/null")
    ));
    assert!(!Command::new("runuser")
        .args(["-u", "nobody", "--", "cat"])
        .arg(&acct_json)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success());
    assert_eq!(mode_owner(&p("domains/a.org/md.json")), (0o600, 0));

    // an account.json with an hmac left 0644 (by the C module or an earlier version) is
    // made 0640 with the child's group when the parent opens the store
    drop(reg);
    fs::set_permissions(&acct_json, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&acct_json, Some(0), Some(0)).unwrap();
    let st = FsStore::open(&dir, opts()).unwrap();
    let m = fs::metadata(&acct_json).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, gid));
    drop(st);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fill the file system until a write fails.
fn fill(dir: &Path) {
    let mut i = 0;
    loop {
        let r = fs::write(dir.join(format!("filler{i}")), vec![0u8; 4096]);
        if r.is_err() {
            let _ = fs::write(dir.join(format!("filler{i}")), b"");
            break;
        }
        i += 1;
        assert!(i < 100_000, "file system never filled up");
    }
}

#[test]
fn full_disk_fails_cleanly_with_old_data_intact() {
    assert_root();
    let t = TempDir::new("md-full");
    let mnt = t.path().join("mnt");
    let _fs = Tmpfs::mount(&mnt, "64k");
    let dir = mnt.join("md");
    let st = FsStore::open(&dir, StoreOptions::default()).unwrap();
    let specs = [KeySpec::Ec {
        curve: "secp256r1".into(),
    }];
    let a = md("a.org", &["a.org"], &specs);
    let old = CertSet::new(&specs, &["a.org"], 1);
    let new = CertSet::new(&specs, &["a.org"], 2);
    put_active(&st, &a, &old);
    put_staged(&st, &a, &new, false);
    let job = JobRecord {
        name: "a.org".into(),
        errors: 1,
        ..Default::default()
    };
    st.save_job(Group::Domains, "a.org", &job).unwrap();
    let snapshot = |st: &FsStore| -> Vec<(String, Option<Vec<u8>>)> {
        let mut v = Vec::new();
        for g in [Group::Domains, Group::Staging] {
            for f in st.files(g, "a.org").unwrap() {
                v.push((format!("{}/{f}", g.dir()), st.load(g, "a.org", &f).unwrap()));
            }
        }
        v
    };
    let before = snapshot(&st);
    fill(&mnt);

    // every kind of write fails with an error, never a panic or a partial file
    let mut big = job.clone();
    big.log = Some(serde_json::json!({"entries": vec!["x".repeat(200); 200]}));
    assert!(st.save_job(Group::Domains, "a.org", &big).is_err());
    let (s, k, c) = &new.pairs[0];
    assert!(st
        .save_cert_and_key(Group::Domains, "a.org", s, k, std::slice::from_ref(c))
        .is_err());
    assert!(st
        .save(
            Group::Staging,
            "b.org",
            files::MD,
            &[b'x'; 8192],
            FileKind::Json
        )
        .is_err());
    let reg = Registry::new(st);
    let r = reg.load_stagings(["a.org"]);
    assert!(matches!(r[0].1, Err(ActivateError::Store { .. })), "{r:?}");
    let st = reg.store();
    assert!(
        st.exists(Group::Staging, "a.org", files::MD),
        "disk full is no reason to purge"
    );
    assert_eq!(snapshot(st), before, "old data intact");
    let leftovers = run(Command::new("find").arg(&dir).args([
        "-name", "*.tmp", "-o", "-name", "*.new", "-o", "-name", "*.pair",
    ]));
    assert!(leftovers.trim().is_empty(), "{leftovers}");
    assert!(st.names(Group::Tmp).unwrap().is_empty());

    // after space is freed, the same activation succeeds
    for e in fs::read_dir(&mnt).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("filler") {
            fs::remove_file(e.path()).unwrap();
        }
    }
    drop(reg);
    let reg = Registry::new(FsStore::open(&dir, StoreOptions::default()).unwrap());
    for (_, r) in reg.load_stagings(["a.org"]) {
        r.unwrap();
    }
    let (_, chain) = reg
        .store()
        .load_cert_and_key(Group::Domains, "a.org", s)
        .unwrap()
        .unwrap();
    assert_eq!(
        md_core::store::keys::fingerprint_sha256(&chain[0]),
        new.fingerprints()[0]
    );
}
