//! Hostile content planted by the child's user (www-data) in the directories it owns
//! (staging/, challenges/, staging/.locks): links at the names root writes, a directory swapped
//! for a link to a root-owned directory, FIFOs and devices where files are read. Root (this
//! test process, as the httpd parent) must write, chown, truncate and remove nothing outside
//! the store, and must not block. Run as root; www-data plants through `runuser`.

#[path = "common/cmod.rs"]
mod cmod;
#[path = "common/storefix.rs"]
mod storefix;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cmod::{as_www_data, assert_root, www_data, TempDir};
use md_core::md::KeySpec;
use md_core::reg::Registry;
use md_core::store::{files, FileKind, FsStore, Group, Store, StoreExt, StoreOptions};
use storefix::{md, put_staged, CertSet};

/// Run `sh -c script` as www-data in `dir`, which must succeed (the planting is the premise).
fn plant(dir: &Path, script: &str) {
    assert!(
        as_www_data(dir, script),
        "www-data could not plant: {script}"
    );
}

/// A root-owned directory outside the store, with a few root-only files: the victim.
fn victim_dir(t: &TempDir) -> PathBuf {
    let v = t.path().join("victim");
    fs::create_dir(&v).unwrap();
    fs::set_permissions(&v, fs::Permissions::from_mode(0o755)).unwrap();
    for f in [
        "secret",
        "md.json",
        "job.json",
        "x.tmp",
        "privkey.pem.new",
        "pubcert.pem.new",
    ] {
        fs::write(v.join(f), format!("root's {f}\n")).unwrap();
        fs::set_permissions(v.join(f), fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::write(v.join("pubcert.pem.pair"), "privkey.pem").unwrap();
    v
}

/// name -> (content, mode, uid) of every entry of `dir`, and of `dir` itself under "".
/// name -> (content, mode, uid).
type Snapshot = BTreeMap<String, (Vec<u8>, u32, u32)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let m = fs::symlink_metadata(dir).unwrap();
    out.insert(String::new(), (Vec::new(), m.mode(), m.uid()));
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let data = if m.is_file() {
            fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            (data, m.mode(), m.uid()),
        );
    }
    out
}

fn open_store(dir: &Path) -> FsStore {
    FsStore::open(
        dir,
        StoreOptions {
            child_owner: Some(www_data()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// As root: a victim directory (and its snapshot), and a store in `<tmp>/md` opened with
/// www-data as the child user, holding a finished staged set for a.org.
fn staged_store(prefix: &str) -> (TempDir, PathBuf, Snapshot, PathBuf, FsStore) {
    assert_root();
    let t = TempDir::new(prefix);
    let victim = victim_dir(&t);
    let before = snapshot(&victim);
    let dir = t.path().join("md");
    let st = open_store(&dir);
    let specs = [KeySpec::Default];
    let a = md("a.org", &["a.org"], &specs);
    put_staged(&st, &a, &CertSet::new(&specs, &["a.org"], 1), true);
    (t, victim, before, dir, st)
}

#[test]
fn links_at_the_names_root_writes_are_replaced_not_followed() {
    let (_t, victim, before, dir, st) = staged_store("md-links-tmp");

    // Every temp name this process will use next is predictable (<file>.<pid>-<n>.tmp), and
    // so are the pair names (<file>.new, <cert>.pair): www-data plants links at all of them.
    let pid = std::process::id();
    let mut script = String::from("cd staging/a.org && ");
    for f in ["job.json", "md.json", "pubcert.pem.pair", "x"] {
        script += &format!(
            "for n in $(seq 0 300); do ln -s {v}/secret {f}.{pid}-$n.tmp; done; ",
            v = victim.display()
        );
    }
    script += &format!(
        "ln -s {v}/secret privkey.pem.new; ln -s {v}/secret pubcert.pem.new",
        v = victim.display()
    );
    plant(&dir, &script);

    st.save(
        Group::Staging,
        "a.org",
        files::JOB,
        b"{\"v\": 1}",
        FileKind::Json,
    )
    .unwrap();
    st.save(Group::Staging, "a.org", "x", b"data", FileKind::Text)
        .unwrap();
    let set = CertSet::new(&[KeySpec::Default], &["a.org"], 2);
    let (s, k, c) = &set.pairs[0];
    st.save_cert_and_key(Group::Staging, "a.org", s, k, std::slice::from_ref(c))
        .unwrap();

    assert_eq!(snapshot(&victim), before, "root wrote outside the store");
    let job = dir.join("staging/a.org/job.json");
    let m = fs::symlink_metadata(&job).unwrap();
    assert!(m.is_file() && m.uid() == www_data().0, "job.json: {m:?}");
    assert_eq!(fs::read(&job).unwrap(), b"{\"v\": 1}");
    let cert = fs::symlink_metadata(dir.join("staging/a.org/pubcert.pem")).unwrap();
    assert!(cert.is_file(), "the pair was written as files");
}

#[test]
fn a_staging_dir_swapped_for_a_link_is_never_entered() {
    let (_t, victim, before, dir, st) = staged_store("md-links-dir");
    st.lock_md("a.org", true).unwrap();
    drop(st);
    // staging/a.org, challenges/a.org and staging/.locks become links to the victim
    let v = victim.display();
    plant(
        &dir,
        &format!(
            "mv staging/a.org staging/a.old && ln -s {v} staging/a.org && \
             rm -rf challenges/a.org && ln -s {v} challenges/a.org && \
             rm -rf staging/.locks && ln -s {v} staging/.locks"
        ),
    );

    // the parent's start: open with crash recovery (finishes pairs, drops .tmp/.new files)
    let st = open_store(&dir);
    assert_eq!(snapshot(&victim), before, "recovery followed the link");
    // writes into the MD's staging dir fail instead of landing in the victim
    assert!(st
        .save(Group::Staging, "a.org", files::JOB, b"{}", FileKind::Json)
        .is_err());
    assert!(st.lock_md("a.org", true).is_err());
    assert!(st.lock_md("b.org", true).is_err());
    assert_eq!(snapshot(&victim), before, "a write followed the link");
    // a registry activation attempt and the clean-up of challenges remove the links only
    let reg = Registry::new(st);
    for (_, r) in reg.load_stagings(["a.org"]) {
        let _ = r;
    }
    reg.store().purge(Group::Staging, "a.org").unwrap();
    reg.store().purge(Group::Challenges, "a.org").unwrap();
    assert_eq!(snapshot(&victim), before, "a purge followed the link");
    assert!(fs::symlink_metadata(dir.join("staging/a.org")).is_err());
    assert!(fs::symlink_metadata(dir.join("challenges/a.org")).is_err());
    // and the MD's staging dir can be made again, as a real directory
    reg.store()
        .save(Group::Staging, "a.org", files::JOB, b"{}", FileKind::Json)
        .unwrap();
    assert!(fs::symlink_metadata(dir.join("staging/a.org"))
        .unwrap()
        .is_dir());
}

#[test]
fn fifos_devices_and_huge_files_are_refused_without_blocking() {
    let (_t, _, _, dir, st) = staged_store("md-links-fifo");
    plant(
        &dir,
        "cd staging/a.org && rm -f job.json md.json && mkfifo job.json && \
         ln -s /dev/zero md.json && truncate -s 17M x.txt",
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = [files::JOB, files::MD, "x.txt"].map(|f| {
            st.load(Group::Staging, "a.org", f)
                .map(|d| d.map(|d| d.len()))
        });
        let _ = tx.send(r.map(|r| r.map_err(|e| e.to_string())));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a read blocked on a FIFO or device");
    for (r, what) in got
        .iter()
        .zip(["a FIFO", "a link to /dev/zero", "a 17 MiB file"])
    {
        let e = r.as_ref().expect_err(what);
        assert!(e.contains("staging/a.org"), "error names the file: {e}");
    }
}
