//! MDStoreLocks: a global lock on `store.lock` so that several httpd instances sharing one store
//! (e.g. on NFS) do not sync or activate at the same time.
//!
//! POSIX record locks (`fcntl(F_SETLK)`), as APR's `apr_file_lock` takes them for the C module,
//! so a C mod_md and this code exclude each other on the same store. Such locks belong to the
//! process: they do not exclude threads of one process (httpd's parent is single-threaded here).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{fcntl_lock, FlockOperation};
use rustix::io::Errno;

/// File name of the lock, in the store root.
pub const LOCK_FILE: &str = "store.lock";

/// Errors of taking the store lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Lock file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Someone else held the lock for the whole wait.
    #[error("store lock {path} still held by another process after {waited:?}")]
    Timeout {
        /// Lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

/// A held store lock; released on drop (closing the file releases a POSIX lock).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Take the exclusive lock on `<root>/store.lock`, waiting at most `wait`.
    pub fn acquire(root: &Path, wait: Duration) -> Result<StoreLock, LockError> {
        let path = root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(|source| LockError::Open {
                path: path.clone(),
                source,
            })?;
        let start = Instant::now();
        loop {
            match fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(e) if e == Errno::AGAIN || e == Errno::ACCESS => {}
                Err(e) => {
                    return Err(LockError::Open {
                        path,
                        source: e.into(),
                    })
                }
            }
            if start.elapsed() >= wait {
                return Err(LockError::Timeout {
                    path,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
