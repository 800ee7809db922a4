//! The few file-system primitives the store is built from, each durable (fsync of file and
//! directory) and each a possible crash point for fault injection.
//!
//! Crash safety is argued step by step: every mutation is one of `write_atomic`, `mkdir`,
//! `rename`, `remove_file`, `remove_dir_all`. A [`FaultPlan`] makes the n-th step (counted across
//! all of them) fail as if the process died there, and every later step fail too; a torn write
//! leaves a half-written temp file, as a real crash would.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{chown, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::StoreError;

/// Simulated crash after a number of steps (tests). Cheap to clone; shared by clones.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    inner: Arc<FaultInner>,
}

#[derive(Debug, Default)]
struct FaultInner {
    crash_at: AtomicUsize, // 0 = never
    steps: AtomicUsize,
    crashed: AtomicBool,
}

impl FaultPlan {
    /// A plan whose `n`-th step (1-based) and all later ones fail.
    pub fn crash_at(n: usize) -> FaultPlan {
        let p = FaultPlan::default();
        p.inner.crash_at.store(n, Ordering::SeqCst);
        p
    }

    /// Number of steps taken so far (use with a plan that never crashes to count them).
    pub fn steps(&self) -> usize {
        self.inner.steps.load(Ordering::SeqCst)
    }

    /// True once the simulated crash has happened.
    pub fn crashed(&self) -> bool {
        self.inner.crashed.load(Ordering::SeqCst)
    }

    fn step(&self) -> io::Result<()> {
        if self.crashed() {
            return Err(io::Error::other("simulated crash (process is dead)"));
        }
        let n = self.inner.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.inner.crash_at.load(Ordering::SeqCst);
        if at != 0 && n >= at {
            self.inner.crashed.store(true, Ordering::SeqCst);
            return Err(io::Error::other("simulated crash"));
        }
        Ok(())
    }
}

/// Durable file operations with ownership and mode handling.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vfs {
    pub(crate) faults: Option<FaultPlan>,
    /// uid/gid for files in child-owned groups.
    pub(crate) owner: Option<(u32, u32)>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

impl Vfs {
    fn step(&self, op: &'static str, path: &Path) -> Result<(), StoreError> {
        match &self.faults {
            Some(f) => f.step().map_err(io_err(op, path)),
            None => Ok(()),
        }
    }

    fn maybe_chown(&self, path: &Path, chowned: bool) -> Result<(), StoreError> {
        if let (true, Some((uid, gid))) = (chowned, self.owner) {
            chown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))?;
        }
        Ok(())
    }

    /// fsync a directory so that renames and creations in it survive a power loss.
    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", dir))
    }

    /// Write `data` to `path` via `<path>.tmp`: write, fsync, chmod/chown, rename, fsync dir.
    /// Readers see the old content or the new one, never a mix.
    pub(crate) fn write_atomic(
        &self,
        path: &Path,
        data: &[u8],
        mode: u32,
        chowned: bool,
    ) -> Result<(), StoreError> {
        let tmp = tmp_name(path);
        self.write_tmp(&tmp, data, mode, chowned)?;
        self.rename(&tmp, path)
    }

    /// Create `path` with `data` only if it does not exist yet (atomically, via a hard link
    /// of a complete temp file). Returns false when another writer was first: two servers
    /// sharing a new store must not each create their own secret.
    pub(crate) fn write_new(
        &self,
        path: &Path,
        data: &[u8],
        mode: u32,
    ) -> Result<bool, StoreError> {
        let tmp = tmp_name(path);
        self.write_tmp(&tmp, data, mode, false)?;
        self.step("link", path)?;
        let r = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match r {
            Ok(()) => {
                self.sync_dir(parent_dir(path))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("link", path)(e)),
        }
    }

    /// First half of [`Vfs::write_atomic`]: a durable temp file, not yet visible.
    pub(crate) fn write_tmp(
        &self,
        tmp: &Path,
        data: &[u8],
        mode: u32,
        chowned: bool,
    ) -> Result<(), StoreError> {
        let result = (|| {
            self.step("create", tmp)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(tmp)
                .map_err(io_err("create", tmp))?;
            // A pre-existing temp file keeps its old mode: set it explicitly.
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", tmp))?;
            if let Err(e) = self.step("write", tmp) {
                // torn write: what a crash in the middle of write(2) leaves behind
                let _ = f.write_all(&data[..data.len() / 2]);
                return Err(e);
            }
            f.write_all(data).map_err(io_err("write", tmp))?;
            self.step("fsync", tmp)?;
            f.sync_all().map_err(io_err("fsync", tmp))?;
            self.maybe_chown(tmp, chowned)
        })();
        if result.is_err() && !self.is_crashed() {
            // a real error (ENOSPC, EACCES): leave nothing behind
            let _ = fs::remove_file(tmp);
        }
        result
    }

    pub(crate) fn is_crashed(&self) -> bool {
        self.faults.as_ref().is_some_and(FaultPlan::crashed)
    }

    /// Rename and make it durable (fsync of both parent directories).
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<(), StoreError> {
        self.step("rename", from)?;
        fs::rename(from, to).map_err(io_err("rename", from))?;
        self.step("fsync directory", to)?;
        self.sync_dir(parent_dir(to))?;
        if parent_dir(from) != parent_dir(to) {
            self.sync_dir(parent_dir(from))?;
        }
        Ok(())
    }

    /// Create a directory (parents must exist) with `mode`; ok if it exists.
    pub(crate) fn mkdir(&self, path: &Path, mode: u32, chowned: bool) -> Result<(), StoreError> {
        if path.is_dir() {
            return Ok(());
        }
        self.step("mkdir", path)?;
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(io_err("mkdir", path)(e)),
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", path))?;
        self.maybe_chown(path, chowned)?;
        self.sync_dir(parent_dir(path))
    }

    /// Remove a file; ok if it does not exist.
    pub(crate) fn remove_file(&self, path: &Path) -> Result<(), StoreError> {
        self.step("unlink", path)?;
        match fs::remove_file(path) {
            Ok(()) => self.sync_dir(parent_dir(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("unlink", path)(e)),
        }
    }

    /// Remove a directory tree; ok if it does not exist. `first` names files removed before the
    /// rest, so that a crash mid-way leaves a directory that no longer looks complete.
    pub(crate) fn remove_dir_all(&self, path: &Path, first: &[&str]) -> Result<(), StoreError> {
        if !path.exists() {
            return Ok(());
        }
        for f in first {
            self.remove_file(&path.join(f))?;
        }
        self.step("rmdir", path)?;
        match fs::remove_dir_all(path) {
            Ok(()) => self.sync_dir(parent_dir(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// chmod + chown of an existing path (startup fix-ups).
    pub(crate) fn set_mode(&self, path: &Path, mode: u32, chowned: bool) -> Result<(), StoreError> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", path))?;
        self.maybe_chown(path, chowned)
    }
}

/// `<file>.<pid>-<n>.tmp`: like the C module's `<file>.tmp`, but unique per writer, so that
/// two processes (or threads) writing the same file never share (and clobber) a temp file.
/// Leftovers end in `.tmp` and are removed by recovery.
pub(crate) fn tmp_name(path: &Path) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut s = path.as_os_str().to_owned();
    s.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    PathBuf::from(s)
}

/// Read a whole file, `Ok(None)` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}
