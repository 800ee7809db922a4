//! [`FsStore`]: the [`Store`] on a directory, in the C module's layout and permissions.

use std::fs;
use std::path::{Path, PathBuf};

use super::meta::{HttpdReachability, StoreMeta, STORE_VERSION};
use super::vfs::{parent_dir, Chown, FaultPlan, Vfs};
use super::{files, FileKind, Group, MdLock, OpenError, Store, StoreError};

const STORE_JSON: &str = "md_store.json";
const HTTPD_JSON: &str = "httpd.json";
/// Prefix of a complete activation set in tmp/ ('@' cannot occur in a DNS name or MD name).
const READY: &str = "@ready@";
/// Suffix of the new half of a key/certificate pair being written.
const NEW: &str = ".new";
/// Suffix of the commit marker of a pair write (`pubcert.pem.pair` holds the key file name).
const PAIR: &str = ".pair";
/// Directory in staging/ holding the per-MD renewal locks (a dot name is never an MD name).
const LOCKS: &str = ".locks";
/// Highest archive number tried (C module: 1..999).
const MAX_ARCHIVE: u32 = 999;

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// uid/gid of the child user: staging/, challenges/, ocsp/ and what is written there are
    /// chowned to it. Set only when running as root (httpd parent).
    pub child_owner: Option<(u32, u32)>,
    /// Open without creating or fixing up anything at the top level and without crash
    /// recovery (a process that does not own the store, e.g. a2md run by a normal user).
    /// md_store.json must exist and be readable: httpd's children cannot read it (0600 root),
    /// so the module opens the store in the parent and keeps the `FsStore` (which holds the
    /// secret) across the fork, as the C module keeps the key in memory.
    pub as_child: bool,
    /// Fault injection for crash tests.
    pub faults: Option<FaultPlan>,
}

/// The file-system store.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    meta: StoreMeta,
    vfs: Vfs,
}

fn valid_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.starts_with(READY)
    {
        return Err(StoreError::InvalidName(name.to_string()));
    }
    Ok(())
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Who a file of `kind` written in `group` belongs to.
fn chown_for(group: Group, kind: FileKind) -> Chown {
    if group.child_owned() {
        Chown::Child
    } else if kind.secret_for_child_group(group) {
        Chown::ChildGroup
    } else {
        Chown::No
    }
}

impl FsStore {
    /// Open (creating if needed) the store at `root`: md_store.json, version check and
    /// migration, group directories, httpd.json repair, crash recovery.
    pub fn open(root: impl AsRef<Path>, opts: StoreOptions) -> Result<FsStore, OpenError> {
        let root = root.as_ref().to_path_buf();
        let vfs = Vfs {
            faults: opts.faults.clone(),
            owner: opts.child_owner,
            root: Some(root.clone()),
        };
        if !opts.as_child && !root.is_dir() {
            // created private, opened up once it exists (C module does the same)
            vfs.mkdir(&root, 0o700, false)?;
            vfs.set_mode(&root, 0o755, false)?;
        }
        let meta_path = root.join(STORE_JSON);
        let mut text = vfs.read(&meta_path)?;
        if text.is_none() && !opts.as_child {
            let m = StoreMeta::generate().map_err(|detail| StoreError::Crypto {
                path: meta_path.display().to_string(),
                detail,
            })?;
            // if another server created it in the meantime, theirs is the one
            vfs.write_new(&meta_path, &m.to_json(), 0o600)?;
            text = vfs.read(&meta_path)?;
        }
        let Some(text) = text else {
            return Err(StoreError::Io {
                op: "read",
                path: meta_path,
                source: std::io::ErrorKind::NotFound.into(),
            }
            .into());
        };
        let meta = StoreMeta::parse(&text).map_err(|detail| OpenError::CorruptMeta {
            path: meta_path.clone(),
            detail,
        })?;
        if meta.version > STORE_VERSION {
            return Err(OpenError::NewerVersion {
                path: meta_path,
                found: meta.version,
                supported: STORE_VERSION,
            });
        }
        let mut store = FsStore { root, meta, vfs };
        if opts.as_child {
            return Ok(store);
        }
        for g in Group::ALL {
            let p = store.group_dir(g);
            let chowned = g.child_owned();
            if !p.is_dir() {
                store.vfs.mkdir(&p, g.top_mode(), chowned)?;
            } else if chowned && store.vfs.owner.is_some() {
                store.vfs.set_mode(&p, g.top_mode(), true)?;
            }
        }
        if store.vfs.owner.is_some() {
            store.open_accounts_to_child()?;
        }
        if store.meta.version < STORE_VERSION {
            store.migrate()?;
        }
        // an unreadable httpd.json only costs a recomputation: drop it quietly (2.5.1)
        if let Some(text) = store.vfs.read(&store.root.join(HTTPD_JSON))? {
            if HttpdReachability::parse(&text).is_none() {
                store.vfs.remove_file(&store.root.join(HTTPD_JSON))?;
            }
        }
        store.recover()?;
        Ok(store)
    }

    /// The child picks its ACME account in accounts/ (keys are encrypted there). The C module
    /// creates account dirs 0750 and may leave them so: open those (never tighten, never
    /// follow a link), else the child registers a new account for every renewal. The one
    /// exception is an account.json holding an EAB hmac in the clear (the C module and our
    /// earlier versions wrote it 0644): it becomes 0640 with the child's group.
    fn open_accounts_to_child(&self) -> Result<(), StoreError> {
        let top = self.group_dir(Group::Accounts);
        let mut dirs = vec![top.clone()];
        dirs.extend(
            self.list_dir(&top)?
                .into_iter()
                .filter(|(_, d)| *d)
                .map(|(n, _)| top.join(n)),
        );
        for d in dirs {
            let Ok(meta) = fs::symlink_metadata(&d) else {
                continue;
            };
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            if meta.is_dir() && mode & 0o005 != 0o005 {
                self.vfs.set_mode(&d, mode | 0o055, false)?;
            }
            for (f, is_dir) in self.list_dir(&d)? {
                let p = d.join(&f);
                match fs::symlink_metadata(&p) {
                    Ok(m) if !is_dir && m.is_file() => {
                        let fm = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777;
                        if d != top && f == files::ACCOUNT && self.holds_eab(&p) {
                            let mode = FileKind::Secret.mode(Group::Accounts);
                            let gid = std::os::unix::fs::MetadataExt::gid(&m);
                            // (open_accounts_to_child runs only with a child owner)
                            let other_group = self.vfs.owner.is_some_and(|(_, g)| g != gid);
                            if fm != mode || other_group {
                                self.vfs.set_mode(&p, mode, Chown::ChildGroup)?;
                            }
                        } else if fm & 0o004 == 0 {
                            self.vfs.set_mode(&p, fm | 0o044, false)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// True if the account.json at `path` carries an EAB (its hmac is in the clear).
    fn holds_eab(&self, path: &Path) -> bool {
        matches!(self.vfs.read(path), Ok(Some(text))
            if super::AccountRecord::parse(&text).is_ok_and(|a| a.eab.is_some()))
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Store format version as found on open (3 after migration).
    pub fn version(&self) -> f64 {
        self.meta.version
    }

    fn group_dir(&self, g: Group) -> PathBuf {
        self.root.join(g.dir())
    }

    fn dir(&self, g: Group, name: &str) -> Result<PathBuf, StoreError> {
        valid_name(name)?;
        Ok(self.group_dir(g).join(name))
    }

    fn file(&self, g: Group, name: &str, file: &str) -> Result<PathBuf, StoreError> {
        valid_name(file)?;
        Ok(self.dir(g, name)?.join(file))
    }

    fn ensure_dir(&self, g: Group, name: &str) -> Result<PathBuf, StoreError> {
        let d = self.dir(g, name)?;
        self.vfs.mkdir(&d, g.dir_mode(), g.child_owned())?;
        Ok(d)
    }

    /// v1 (pre-0.8) -> v3: `pkey.pem` -> `privkey.pem`, `cert.pem` + `chain.pem` ->
    /// `pubcert.pem`; v2 only drops its top-level `version`. Idempotent: the version is
    /// rewritten last, so a crash mid-way repeats the (harmless) steps.
    fn migrate(&mut self) -> Result<(), StoreError> {
        for g in [Group::Domains, Group::Staging, Group::Archive] {
            for name in self.names(g)? {
                let d = self.dir(g, &name)?;
                let old_key = d.join("pkey.pem");
                if old_key.exists() && !d.join("privkey.pem").exists() {
                    self.vfs.rename(&old_key, &d.join("privkey.pem"))?;
                }
                if let Some(cert) = self.vfs.read(&d.join("cert.pem"))? {
                    let mut pem = cert;
                    if let Some(chain) = self.vfs.read(&d.join("chain.pem"))? {
                        if !pem.ends_with(b"\n") {
                            pem.push(b'\n');
                        }
                        pem.extend(chain);
                    }
                    let mode = FileKind::Cert.mode(g);
                    self.vfs
                        .write_atomic(&d.join("pubcert.pem"), &pem, mode, g.child_owned())?;
                    self.vfs.remove_file(&d.join("cert.pem"))?;
                    self.vfs.remove_file(&d.join("chain.pem"))?;
                }
            }
        }
        self.meta.version = STORE_VERSION;
        self.vfs.write_atomic(
            &self.root.join(STORE_JSON),
            &self.meta.to_json(),
            0o600,
            false,
        )
    }

    /// Complete a committed pair write: drop the old certificate, move the new key in, then
    /// the new certificate, then the marker. Every step is skipped if already done, so this
    /// is also the crash recovery. No state along the way has a key next to a certificate
    /// that does not belong to it.
    fn finish_pair(&self, marker: &Path) -> Result<(), StoreError> {
        let dir = parent_dir(marker);
        let marker_data = self.vfs.read(marker)?.ok_or_else(|| StoreError::Io {
            op: "read",
            path: marker.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        let key_file = String::from_utf8_lossy(&marker_data).into_owned();
        valid_name(&key_file)?;
        let cert_name = marker
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(PAIR))
            .ok_or_else(|| StoreError::InvalidName(marker.display().to_string()))?;
        let (kp, cp) = (dir.join(&key_file), dir.join(cert_name));
        let (kn, cn) = (suffixed(&kp, NEW), suffixed(&cp, NEW));
        if kn.exists() {
            self.vfs.remove_file(&cp)?;
            self.vfs.rename(&kn, &kp)?;
        }
        if cn.exists() {
            self.vfs.rename(&cn, &cp)?;
        }
        self.vfs.remove_file(marker)
    }

    /// `tmp/@ready@<name>` -> `domains/<name>`, archiving the current one first.
    fn roll_forward(&self, name: &str) -> Result<Option<String>, StoreError> {
        let ready = self.group_dir(Group::Tmp).join(format!("{READY}{name}"));
        let active = self.dir(Group::Domains, name)?;
        let mut archived = None;
        if active.exists() {
            let n = (1..=MAX_ARCHIVE)
                .find(|n| {
                    !self
                        .group_dir(Group::Archive)
                        .join(format!("{name}.{n}"))
                        .exists()
                })
                .ok_or_else(|| StoreError::Io {
                    op: "archive",
                    path: self.group_dir(Group::Archive),
                    source: std::io::Error::other("all archive slots 1..999 in use"),
                })?;
            let an = format!("{name}.{n}");
            self.vfs
                .rename(&active, &self.group_dir(Group::Archive).join(&an))?;
            archived = Some(an);
        }
        self.vfs.rename(&ready, &active)?;
        Ok(archived)
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<(String, bool)>, StoreError> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "list",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str() {
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                out.push((n.to_string(), is_dir));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl Store for FsStore {
    fn secret(&self) -> &[u8] {
        &self.meta.secret
    }

    fn load(&self, group: Group, name: &str, file: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.vfs.read(&self.file(group, name, file)?)
    }

    fn save(
        &self,
        group: Group,
        name: &str,
        file: &str,
        data: &[u8],
        kind: FileKind,
    ) -> Result<(), StoreError> {
        let path = self.file(group, name, file)?;
        self.ensure_dir(group, name)?;
        self.vfs
            .write_atomic(&path, data, kind.mode(group), chown_for(group, kind))
    }

    fn save_existing(
        &self,
        group: Group,
        name: &str,
        file: &str,
        data: &[u8],
        kind: FileKind,
    ) -> Result<bool, StoreError> {
        let path = self.file(group, name, file)?;
        // The temp file is created in the directory itself: if the dir is gone, that fails
        // with NotFound, and nothing brings it back.
        match self
            .vfs
            .write_atomic(&path, data, kind.mode(group), chown_for(group, kind))
        {
            Ok(()) => Ok(true),
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && !self.dir(group, name)?.is_dir() =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn lock_md(&self, name: &str, create: bool) -> Result<Option<MdLock>, StoreError> {
        use rustix::fs::{flock, FlockOperation};
        valid_name(name)?;
        let dir = self.group_dir(Group::Staging).join(LOCKS);
        let path = dir.join(name);
        if create {
            self.vfs.mkdir(&dir, 0o755, true)?;
        }
        // The dir belongs to the child's user: root follows no link there, and NONBLOCK keeps
        // a FIFO planted there from blocking the parent's open.
        let file = match self.vfs.open_lock(&path, create) {
            Ok(f) => f,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(MdLock { _file: None }))
            }
            // .locks replaced by a link or a file: not a lock we made, count it as held
            Err(_) if !create => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "lock",
                    path,
                    source,
                })
            }
        };
        // Anything but a regular file is not a lock we made: count it as held, so the MD is
        // left alone (and never fails the store's open).
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(None);
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(MdLock { _file: Some(file) })),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
            Err(e) => Err(StoreError::Io {
                op: "lock",
                path,
                source: e.into(),
            }),
        }
    }

    fn recover_dir(&self, group: Group, name: &str) -> Result<(), StoreError> {
        let d = self.dir(group, name)?;
        for (f, _) in self
            .list_dir(&d)?
            .iter()
            .filter(|(f, d)| !d && f.ends_with(PAIR))
        {
            self.finish_pair(&d.join(f))?;
        }
        for (f, is_dir) in self.list_dir(&d)? {
            if !is_dir && (f.ends_with(".tmp") || f.ends_with(NEW)) {
                self.vfs.remove_file(&d.join(f))?;
            }
        }
        Ok(())
    }

    fn remove(&self, group: Group, name: &str, file: &str) -> Result<(), StoreError> {
        self.vfs.remove_file(&self.file(group, name, file)?)
    }

    fn exists(&self, group: Group, name: &str, file: &str) -> bool {
        self.file(group, name, file).is_ok_and(|p| p.exists())
    }

    fn names(&self, group: Group) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_dir(&self.group_dir(group))?
            .into_iter()
            .filter(|(n, d)| *d && !n.starts_with('.') && valid_name(n).is_ok())
            .map(|(n, _)| n)
            .collect())
    }

    fn files(&self, group: Group, name: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_dir(&self.dir(group, name)?)?
            .into_iter()
            .filter(|(n, d)| !*d && !n.ends_with(".tmp") && !n.ends_with(NEW) && !n.ends_with(PAIR))
            .map(|(n, _)| n)
            .collect())
    }

    fn purge(&self, group: Group, name: &str) -> Result<(), StoreError> {
        // md.json first: a half-removed directory must not look like a complete MD/staging set
        self.vfs
            .remove_dir_all(&self.dir(group, name)?, &[files::MD, files::JOB])
    }

    fn rename(&self, group: Group, from: &str, to: &str) -> Result<(), StoreError> {
        let (a, b) = (self.dir(group, from)?, self.dir(group, to)?);
        if b.exists() {
            return Err(StoreError::Io {
                op: "rename",
                path: b,
                source: std::io::ErrorKind::AlreadyExists.into(),
            });
        }
        self.vfs.rename(&a, &b)
    }

    fn save_pair(
        &self,
        group: Group,
        name: &str,
        key_file: &str,
        key_pem: &[u8],
        cert_file: &str,
        cert_pem: &[u8],
    ) -> Result<(), StoreError> {
        let (kp, cp) = (
            self.file(group, name, key_file)?,
            self.file(group, name, cert_file)?,
        );
        self.ensure_dir(group, name)?;
        let own = group.child_owned();
        let (kn, cn) = (suffixed(&kp, NEW), suffixed(&cp, NEW));
        self.vfs
            .write_tmp(&kn, key_pem, FileKind::PrivateKey.mode(group), own)?;
        if let Err(e) = self
            .vfs
            .write_tmp(&cn, cert_pem, FileKind::Cert.mode(group), own)
        {
            self.vfs.discard(&kn);
            return Err(e);
        }
        // Commit point: the marker names the key that belongs to the certificate. Before it
        // exists recovery drops the .new files; after it, recovery completes the swap.
        let marker = suffixed(&cp, PAIR);
        if let Err(e) = self
            .vfs
            .write_atomic(&marker, key_file.as_bytes(), 0o600, own)
        {
            if !self.vfs.is_crashed() {
                self.vfs.discard(&kn);
                self.vfs.discard(&cn);
            }
            return Err(e);
        }
        self.finish_pair(&marker)
    }

    fn activate_set(
        &self,
        name: &str,
        files: &[(String, Vec<u8>, FileKind)],
    ) -> Result<Option<String>, StoreError> {
        valid_name(name)?;
        let ready = self.group_dir(Group::Tmp).join(format!("{READY}{name}"));
        // a ready set left by a crash is older than the one we are about to write
        self.vfs.remove_dir_all(&ready, &[])?;
        self.purge(Group::Tmp, name)?;
        let work = self.ensure_dir(Group::Tmp, name)?;
        for (f, data, kind) in files {
            valid_name(f)?;
            let mode = kind.mode(Group::Domains);
            if let Err(e) = self.vfs.write_atomic(&work.join(f), data, mode, false) {
                let _ = self.purge(Group::Tmp, name);
                return Err(e);
            }
        }
        // commit point: from here on recovery completes the activation
        self.vfs.rename(&work, &ready)?;
        self.roll_forward(name)
    }

    fn recover(&self) -> Result<(), StoreError> {
        for (n, is_dir) in self.list_dir(&self.group_dir(Group::Tmp))? {
            if let Some(name) = n.strip_prefix(READY) {
                if is_dir {
                    self.roll_forward(name)?;
                }
            } else if is_dir {
                // an activation that never reached its commit point
                self.vfs
                    .remove_dir_all(&self.group_dir(Group::Tmp).join(&n), &[])?;
            }
        }
        // Pair writes past their commit point are completed; other temp files are dropped.
        // Not in challenges/ (a live child of the previous generation may be writing there;
        // a stale temp file there is never served) nor in a staging dir whose MD lock a child
        // holds: that child recovers its own dir when it takes the lock.
        for g in [
            Group::Domains,
            Group::Staging,
            Group::Accounts,
            Group::Archive,
        ] {
            for name in self.names(g)? {
                let _lock = match g {
                    Group::Staging => match self.lock_md(&name, false)? {
                        Some(l) => Some(l),
                        None => continue,
                    },
                    _ => None,
                };
                self.recover_dir(g, &name)?;
            }
        }
        Ok(())
    }

    fn path(&self, group: Group, name: &str, file: &str) -> Option<PathBuf> {
        self.file(group, name, file).ok()
    }

    fn load_reachability(&self) -> Result<Option<HttpdReachability>, StoreError> {
        Ok(self
            .vfs
            .read(&self.root.join(HTTPD_JSON))?
            .and_then(|t| HttpdReachability::parse(&t)))
    }

    fn save_reachability(&self, r: HttpdReachability) -> Result<(), StoreError> {
        let p = self.root.join(HTTPD_JSON);
        if r == HttpdReachability::default() {
            return self.vfs.remove_file(&p);
        }
        self.vfs.write_atomic(&p, &r.to_json(), 0o600, false)
    }
}
