//! Work of httpd's parent process that may start threads runs on a short-lived thread of its
//! own, not on httpd's main thread.
//!
//! glibc does not unmap a shared object at dlclose while a live thread holds a thread-local
//! destructor registered from it, and starting a Rust thread registers one on the starting
//! thread (std's spawn hooks). httpd's main thread lives as long as the server, so a thread
//! started from it kept the module mapped for good: a graceful restart after an upgrade went
//! on running the old code (FFI-NOTES "Does httpd really unload the DSO?";
//! test/test_reload.py). The helper thread ends before the hook returns, and with it what it
//! registered.

use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

struct Job<F, R> {
    f: Option<F>,
    out: Option<std::thread::Result<R>>,
}

extern "C" fn run<F: FnOnce() -> R, R>(job: *mut c_void) -> *mut c_void {
    // SAFETY: `job` is the Job that off_main_thread keeps alive until it has joined us.
    let job = unsafe { &mut *(job as *mut Job<F, R>) };
    if let Some(f) = job.f.take() {
        job.out = Some(catch_unwind(AssertUnwindSafe(f)));
    }
    std::ptr::null_mut()
}

/// Run `f` on a new thread and wait for it; a panic in `f` continues on the caller's thread.
/// If no thread can be made, `f` runs here (the work is done; the module may then stay
/// mapped until the server stops).
///
/// # Safety
/// The caller is blocked while `f` runs, so `f` may use what the caller's thread uses
/// (httpd's pools, the server_rec), but it must not take over values tied to the calling
/// thread (lock guards, references to the caller's thread-locals).
pub(crate) unsafe fn off_main_thread<F: FnOnce() -> R, R>(f: F) -> R {
    let mut job = Job {
        f: Some(f),
        out: None,
    };
    let mut tid: libc::pthread_t = 0;
    let arg = &mut job as *mut Job<F, R> as *mut c_void;
    // SAFETY: `job` outlives the thread: it is joined below before `job` goes out of scope.
    let started = unsafe { libc::pthread_create(&mut tid, std::ptr::null(), run::<F, R>, arg) };
    if started != 0 {
        if let Some(f) = job.f.take() {
            return f();
        }
    } else {
        // SAFETY: tid is the thread just started, joined once.
        unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
    }
    match job.out.take() {
        Some(Ok(r)) => r,
        Some(Err(p)) => resume_unwind(p),
        None => unreachable!("the thread ran the job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_elsewhere_returns_and_passes_panics_on() {
        let here = std::thread::current().id();
        // SAFETY: the closure takes over nothing tied to this thread.
        let there = unsafe { off_main_thread(|| std::thread::current().id()) };
        assert_ne!(here, there);
        let v = String::from("abc");
        // SAFETY: as above.
        assert_eq!(unsafe { off_main_thread(|| v.len()) }, 3);
        // SAFETY: as above.
        let r = catch_unwind(|| unsafe { off_main_thread(|| panic!("boom")) });
        assert!(r.is_err());
    }
}
