//! A held lease: renewed in the background while the renewal runs, released on drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use md_core::drive::cluster::Lease;
use postgres::types::Type;

use crate::Inner;

/// The lease of one MD with its heartbeat thread.
pub struct PgLease {
    shared: Arc<LeaseState>,
    stop: Option<Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

struct LeaseState {
    inner: Arc<Inner>,
    md: String,
    fence: i64,
    /// Until when it is surely ours: the start of the last successful extension plus the
    /// lease time (the database counts from later, so this is on the safe side).
    valid_until: Mutex<Instant>,
    /// Lost for good (taken over, or extended too late).
    lost: AtomicBool,
    /// No release on drop: [`Lease::keep_until`] or a publish ended it.
    settled: AtomicBool,
}

impl PgLease {
    pub(crate) fn start(inner: Arc<Inner>, md: &str, fence: i64, taken_at: Instant) -> PgLease {
        let lease = inner.settings.lease;
        let shared = Arc::new(LeaseState {
            inner,
            md: md.to_string(),
            fence,
            valid_until: Mutex::new(taken_at + lease),
            lost: AtomicBool::new(false),
            settled: AtomicBool::new(false),
        });
        let (tx, rx) = channel::<()>();
        let st = shared.clone();
        let every = (lease / 3).max(Duration::from_millis(500));
        let heartbeat = std::thread::Builder::new()
            .name("md-lease".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => st.extend(),
                    _ => return,
                }
            })
            .ok();
        PgLease {
            shared,
            stop: Some(tx),
            heartbeat,
        }
    }
}

impl LeaseState {
    fn extend(&self) {
        if self.lost.load(Ordering::SeqCst) || self.settled.load(Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        let secs = self.inner.settings.lease.as_secs_f64();
        let r = self.inner.pool.with(|c| {
            // greatest(): an extension never shortens the lease. Without it, an extension
            // that was already waiting for the row when keep_until() set a later expiry
            // overwrote it with now() + lease, and other nodes retried before the backoff
            // was over (found by tests/pg.rs, keep_until vs. heartbeat).
            c.execute_typed(
                "UPDATE md_rs_lease SET expires = greatest(expires, now() + \
                 make_interval(secs => $3)) WHERE md = $1 AND fence = $2 AND expires > now()",
                &[
                    (&self.md, Type::TEXT),
                    (&self.fence, Type::INT8),
                    (&secs, Type::FLOAT8),
                ],
            )
        });
        match r {
            Ok(1) => {
                *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    started + self.inner.settings.lease
            }
            // expired and maybe taken: never ours again
            Ok(_) => self.lost.store(true, Ordering::SeqCst),
            // the database is away: ours until the last extension runs out
            Err(_) => {}
        }
    }
}

impl Lease for PgLease {
    fn fence(&self) -> i64 {
        self.shared.fence
    }

    fn held(&self) -> bool {
        let s = &self.shared;
        // a second of margin for the clocks of this node and the database to differ in rate
        !s.lost.load(Ordering::SeqCst)
            && Instant::now() + Duration::from_secs(1)
                < *s.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keep_until(&self, until: DateTime<Utc>) {
        let s = &self.shared;
        let r = s.inner.pool.with(|c| {
            c.execute_typed(
                "UPDATE md_rs_lease SET expires = $3 WHERE md = $1 AND fence = $2 \
                 AND expires > now()",
                &[
                    (&s.md, Type::TEXT),
                    (&s.fence, Type::INT8),
                    (&until, Type::TIMESTAMPTZ),
                ],
            )
        });
        if matches!(r, Ok(1)) {
            s.settled.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let s = &self.shared;
        if s.inner.take_settled(&s.md, s.fence)
            || s.settled.load(Ordering::SeqCst)
            || s.lost.load(Ordering::SeqCst)
        {
            return;
        }
        // Released: another node may take over at once (a failure keeps it, see keep_until).
        let _ = s.inner.pool.with(|c| {
            c.execute_typed(
                "UPDATE md_rs_lease SET expires = now() WHERE md = $1 AND fence = $2 \
                 AND expires > now()",
                &[(&s.md, Type::TEXT), (&s.fence, Type::INT8)],
            )
        });
    }
}
