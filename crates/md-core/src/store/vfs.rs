//! The few file-system primitives the store is built from, each durable (fsync of file and
//! directory) and each a possible crash point for fault injection.
//!
//! Crash safety is argued step by step: every mutation is one of `write_atomic`, `mkdir`,
//! `rename`, `remove_file`, `remove_dir_all`. A [`FaultPlan`] makes the n-th step (counted across
//! all of them) fail as if the process died there, and every later step fail too; a torn write
//! leaves a half-written temp file, as a real crash would.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    linkat, mkdirat, openat, renameat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, CWD,
};
use rustix::io::Errno;
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

/// Who a file or directory is chowned to when the store runs as root with a child user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chown {
    /// Left as created (the writer's).
    No,
    /// The child user and group: it writes there.
    Child,
    /// Only the child's group, the owner stays: root's file the child must read, others not.
    ChildGroup,
}

impl From<bool> for Chown {
    fn from(chowned: bool) -> Chown {
        if chowned {
            Chown::Child
        } else {
            Chown::No
        }
    }
}

/// Durable file operations with ownership and mode handling.
///
/// The parent runs as root and writes into directories that the child's user owns
/// (staging/, challenges/, ocsp/): whatever that user planted there (a symlink at a temp
/// name, a directory swapped for a link to /etc, a FIFO) must not make root write, chown,
/// remove or block outside the store. So below a group directory nothing is resolved by
/// path: every directory is opened component by component without following links, files
/// are created exclusively in that open directory, modes and owners are set on the open
/// descriptor, and renames and removals name an entry of an open directory (the `*at` calls).
/// The store root and the group directories themselves live in root-owned directories and
/// may be links an admin made; they are followed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vfs {
    pub(crate) faults: Option<FaultPlan>,
    /// uid/gid for files in child-owned groups.
    pub(crate) owner: Option<(u32, u32)>,
    /// The store root: links are followed up to `<root>/<group>` and never below.
    pub(crate) root: Option<PathBuf>,
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

/// Largest store file read: store files are a few KiB; a planted /dev/zero link or a huge
/// file must not exhaust the parent's memory.
const MAX_READ: u64 = 16 << 20;

/// Deepest tree [`Vfs::remove_dir_all`] descends into (store trees are 1 level deep).
const MAX_DEPTH: usize = 16;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

fn file_name(path: &Path) -> io::Result<&OsStr> {
    path.file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))
}

/// Create `name` in `dir` exclusively, never through a link. A name already there (a temp
/// file left by a crash, or something planted) is unlinked first (which removes a link
/// itself, never its target) and the create is tried once more.
fn create_exclusive(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let m = Mode::from_raw_mode(mode & 0o777);
    match openat(dir, name, flags, m) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::EXIST) => {
            unlinkat(dir, name, AtFlags::empty()).map_err(errno)?;
            Ok(File::from(openat(dir, name, flags, m).map_err(errno)?))
        }
        Err(e) => Err(errno(e)),
    }
}

/// Remove `name` in `dir` and, if it is a directory, everything in it, without following
/// any link (a link is removed itself). Missing is fine.
fn remove_tree_at(dir: &OwnedFd, name: &OsStr, depth: usize) -> io::Result<()> {
    let sub = match openat(dir, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        // a file or a link where a directory was: remove that entry only
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            return match unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(errno(e)),
            }
        }
        Err(e) => return Err(errno(e)),
    };
    if depth >= MAX_DEPTH {
        return Err(io::Error::other("directory tree too deep"));
    }
    for entry in Dir::read_from(&sub).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        let n = OsStr::from_bytes(entry.file_name().to_bytes());
        if n == "." || n == ".." {
            continue;
        }
        if entry.file_type() == FileType::Directory {
            remove_tree_at(&sub, n, depth + 1)?;
        } else {
            match unlinkat(&sub, n, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                // d_type may be unknown on some file systems
                Err(Errno::ISDIR) => remove_tree_at(&sub, n, depth + 1)?,
                Err(e) => return Err(errno(e)),
            }
        }
    }
    match unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

impl Vfs {
    fn step(&self, op: &'static str, path: &Path) -> Result<(), StoreError> {
        match &self.faults {
            Some(f) => f.step().map_err(io_err(op, path)),
            None => Ok(()),
        }
    }

    /// Components of `path` below the store root, or None if it is not below it.
    fn below_root<'p>(&self, path: &'p Path) -> Option<&'p Path> {
        self.root.as_deref().and_then(|r| path.strip_prefix(r).ok())
    }

    /// `NOFOLLOW` for an entry below a group directory; none for the root or a group dir.
    fn nofollow(&self, path: &Path) -> OFlags {
        match self.below_root(path) {
            Some(rel) if rel.components().count() > 1 => OFlags::NOFOLLOW,
            _ => OFlags::empty(),
        }
    }

    /// Open directory `dir`: the root and group dirs as named, every component below them
    /// without following a link.
    fn open_dir(&self, dir: &Path) -> io::Result<OwnedFd> {
        let (Some(root), Some(rel)) = (self.root.as_deref(), self.below_root(dir)) else {
            return openat(CWD, dir, DIR_FLAGS, Mode::empty()).map_err(errno);
        };
        let mut fd = openat(CWD, root, DIR_FLAGS, Mode::empty()).map_err(errno)?;
        for (i, c) in rel.components().enumerate() {
            let Component::Normal(n) = c else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unexpected component in a store path",
                ));
            };
            let flags = if i == 0 {
                DIR_FLAGS
            } else {
                DIR_FLAGS | OFlags::NOFOLLOW
            };
            fd = openat(&fd, n, flags, Mode::empty()).map_err(errno)?;
        }
        Ok(fd)
    }

    /// The open parent directory of `path`, and the name of `path` in it.
    fn open_parent<'p>(&self, path: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
        let name = file_name(path)?;
        Ok((self.open_dir(parent_dir(path))?, name))
    }

    fn fchown(&self, f: &File, chowned: impl Into<Chown>) -> io::Result<()> {
        match (chowned.into(), self.owner) {
            (Chown::Child, Some((uid, gid))) => std::os::unix::fs::fchown(f, Some(uid), Some(gid)),
            (Chown::ChildGroup, Some((_, gid))) => std::os::unix::fs::fchown(f, None, Some(gid)),
            _ => Ok(()),
        }
    }

    /// Write `data` to `path` via a temp file: write, fsync, chmod/chown, rename, fsync dir.
    /// Readers see the old content or the new one, never a mix.
    pub(crate) fn write_atomic(
        &self,
        path: &Path,
        data: &[u8],
        mode: u32,
        chowned: impl Into<Chown>,
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
        let (dir, name) = self.open_parent(path).map_err(io_err("link", path))?;
        let tmp_n = file_name(&tmp).map_err(io_err("link", path))?;
        let r = linkat(&dir, tmp_n, &dir, name, AtFlags::empty());
        let _ = unlinkat(&dir, tmp_n, AtFlags::empty());
        match r {
            Ok(()) => {
                File::from(dir)
                    .sync_all()
                    .map_err(io_err("fsync directory", path))?;
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(io_err("link", path)(errno(e))),
        }
    }

    /// First half of [`Vfs::write_atomic`]: a durable temp file, not yet visible.
    pub(crate) fn write_tmp(
        &self,
        tmp: &Path,
        data: &[u8],
        mode: u32,
        chowned: impl Into<Chown>,
    ) -> Result<(), StoreError> {
        let chowned = chowned.into();
        self.step("create", tmp)?;
        let (dir, name) = self.open_parent(tmp).map_err(io_err("create", tmp))?;
        let result = (|| {
            let mut f = create_exclusive(&dir, name, mode).map_err(io_err("create", tmp))?;
            // the create mode went through the umask: set it on the descriptor
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
            self.fchown(&f, chowned).map_err(io_err("chown", tmp))
        })();
        if result.is_err() && !self.is_crashed() {
            // a real error (ENOSPC, EACCES): leave nothing behind
            let _ = unlinkat(&dir, name, AtFlags::empty());
        }
        result
    }

    pub(crate) fn is_crashed(&self) -> bool {
        self.faults.as_ref().is_some_and(FaultPlan::crashed)
    }

    /// Rename and make it durable (fsync of both parent directories). Renames the entries
    /// themselves: a link is moved, never followed.
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<(), StoreError> {
        self.step("rename", from)?;
        let (fd, fname) = self.open_parent(from).map_err(io_err("rename", from))?;
        let (td, tname) = self.open_parent(to).map_err(io_err("rename", to))?;
        renameat(&fd, fname, &td, tname).map_err(|e| io_err("rename", from)(errno(e)))?;
        self.step("fsync directory", to)?;
        File::from(td)
            .sync_all()
            .map_err(io_err("fsync directory", to))?;
        if parent_dir(from) != parent_dir(to) {
            File::from(fd)
                .sync_all()
                .map_err(io_err("fsync directory", from))?;
        }
        Ok(())
    }

    /// Create a directory (parents must exist) with `mode`; ok if it exists (as a directory:
    /// a link or file in its place is an error).
    pub(crate) fn mkdir(&self, path: &Path, mode: u32, chowned: bool) -> Result<(), StoreError> {
        let (parent, name) = self.open_parent(path).map_err(io_err("mkdir", path))?;
        let open = || {
            openat(
                &parent,
                name,
                DIR_FLAGS | self.nofollow(path),
                Mode::empty(),
            )
        };
        match open() {
            Ok(_) => return Ok(()),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io_err("mkdir", path)(errno(e))),
        }
        self.step("mkdir", path)?;
        // private until mode and owner are set on the open directory
        match mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                return open()
                    .map(drop)
                    .map_err(|e| io_err("mkdir", path)(errno(e)))
            }
            Err(e) => return Err(io_err("mkdir", path)(errno(e))),
        }
        let d = File::from(open().map_err(|e| io_err("mkdir", path)(errno(e)))?);
        d.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", path))?;
        self.fchown(&d, chowned).map_err(io_err("chown", path))?;
        File::from(parent)
            .sync_all()
            .map_err(io_err("fsync directory", path))
    }

    /// Remove a file (or a link, never its target); ok if it does not exist.
    pub(crate) fn remove_file(&self, path: &Path) -> Result<(), StoreError> {
        self.step("unlink", path)?;
        let (dir, name) = match self.open_parent(path) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("unlink", path)(e)),
        };
        match unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => File::from(dir)
                .sync_all()
                .map_err(io_err("fsync directory", path)),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err("unlink", path)(errno(e))),
        }
    }

    /// Remove a file without a crash step (clean-up after a failed write).
    pub(crate) fn discard(&self, path: &Path) {
        if let Ok((dir, name)) = self.open_parent(path) {
            let _ = unlinkat(&dir, name, AtFlags::empty());
        }
    }

    /// Remove a directory tree; ok if it does not exist. `first` names files removed before the
    /// rest, so that a crash mid-way leaves a directory that no longer looks complete. Never
    /// follows a link: one in place of the directory (or inside it) is removed itself.
    pub(crate) fn remove_dir_all(&self, path: &Path, first: &[&str]) -> Result<(), StoreError> {
        if fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            for f in first {
                self.remove_file(&path.join(f))?;
            }
        }
        self.step("rmdir", path)?;
        let (dir, name) = match self.open_parent(path) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove", path)(e)),
        };
        remove_tree_at(&dir, name, 0).map_err(io_err("remove", path))?;
        File::from(dir)
            .sync_all()
            .map_err(io_err("fsync directory", path))
    }

    /// chmod + chown of an existing path (startup fix-ups), on the open file: a link below
    /// a group dir is an error, never followed.
    pub(crate) fn set_mode(
        &self,
        path: &Path,
        mode: u32,
        chowned: impl Into<Chown>,
    ) -> Result<(), StoreError> {
        let f = self
            .open_file(path, OFlags::RDONLY)
            .map_err(io_err("chmod", path))?;
        // Only what differs is changed: a store that is already right needs no write (and so
        // opens on a read-only file system).
        let meta = f.metadata().map_err(io_err("chmod", path))?;
        if meta.permissions().mode() & 0o7777 != mode {
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", path))?;
        }
        let chowned = chowned.into();
        let right = match (chowned, self.owner) {
            (Chown::Child, Some(owner)) => (meta.uid(), meta.gid()) == owner,
            (Chown::ChildGroup, Some((_, gid))) => meta.gid() == gid,
            _ => true,
        };
        if right {
            return Ok(());
        }
        self.fchown(&f, chowned).map_err(io_err("chown", path))
    }

    /// Open an existing file or directory with `flags`, never following a link below a group
    /// dir and never blocking (a FIFO planted in its place).
    fn open_file(&self, path: &Path, flags: OFlags) -> io::Result<File> {
        let flags = flags | OFlags::NONBLOCK | OFlags::CLOEXEC | self.nofollow(path);
        let fd = match self.below_root(path) {
            Some(rel) if rel.as_os_str().is_empty() => openat(CWD, path, flags, Mode::empty()),
            _ => {
                let (dir, name) = self.open_parent(path)?;
                openat(&dir, name, flags, Mode::empty())
            }
        };
        Ok(File::from(fd.map_err(errno)?))
    }

    /// Open (creating it if `create`) the lock file `path`. The caller checks that it is a
    /// regular file.
    pub(crate) fn open_lock(&self, path: &Path, create: bool) -> io::Result<File> {
        let (dir, name) = self.open_parent(path)?;
        let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if create {
            flags = OFlags::RDWR
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::CLOEXEC;
        }
        Ok(File::from(
            openat(&dir, name, flags, Mode::from_raw_mode(0o644)).map_err(errno)?,
        ))
    }

    /// Read a whole file, `Ok(None)` when it does not exist. Below a group dir a link is an
    /// error; anything but a regular file (FIFO, device) is refused without blocking.
    pub(crate) fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let f = match self.open_file(path, OFlags::RDONLY) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", path)(e)),
        };
        let meta = f.metadata().map_err(io_err("read", path))?;
        if !meta.is_file() {
            return Err(io_err("read", path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            )));
        }
        let mut data = Vec::with_capacity(meta.len().min(MAX_READ) as usize);
        f.take(MAX_READ + 1)
            .read_to_end(&mut data)
            .map_err(io_err("read", path))?;
        if data.len() as u64 > MAX_READ {
            return Err(io_err("read", path)(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {MAX_READ} bytes"),
            )));
        }
        Ok(Some(data))
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
