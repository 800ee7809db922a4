//! Cluster mode of mod_md-rs: several httpd nodes share their MDs through PostgreSQL
//! (`MDClusterDatabase`). One node at a time renews an MD (a lease per MD with a fencing
//! number), every node answers the challenges (they are in the database) and every node takes
//! the published certificates into its own store. Private keys are encrypted in the database
//! with the nodes' `MDClusterKeyFile`.
//!
//! Connections are opened lazily in the processes that use them (the renewal child, and a
//! request child that gets a challenge it does not have), never in httpd's parent.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod lease;
mod schema;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use md_core::drive::cluster::{Acquire, Cluster, Lease, Published, SharedSet};
use md_core::store::keys;
use postgres::types::Type;

use conn::Pool;
pub use conn::Target;
pub use schema::VERSION as SCHEMA_VERSION;

/// How often challenges left by dead orders are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Connections of one renewal process: the renewals running at once and their heartbeats.
const POOL_SIZE: usize = 4;

/// What the directives say, read by httpd's parent (the files may be root-only).
#[derive(Clone)]
pub struct ClusterSettings {
    /// The libpq connection string (from the MDClusterDatabase file; holds the password).
    pub conninfo: String,
    /// The key that encrypts private keys in the database (MDClusterKeyFile).
    pub key: Vec<u8>,
    /// This node's name (MDClusterNode).
    pub node: String,
    /// MDClusterLease.
    pub lease: Duration,
    /// MDClusterPoll.
    pub poll: Duration,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node", &self.node)
            .field("lease", &self.lease)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// Shortest MDClusterKeyFile content.
pub const MIN_KEY_LEN: usize = 32;

impl ClusterSettings {
    /// Read the connection string and key files; errors say which file and what is wrong.
    pub fn load(
        database_file: &str,
        key_file: &str,
        node: String,
        lease: Duration,
        poll: Duration,
    ) -> Result<ClusterSettings, String> {
        let conninfo = std::fs::read_to_string(database_file)
            .map_err(|e| format!("MDClusterDatabase {database_file}: {e}"))?;
        let conninfo = conninfo
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| {
                format!("MDClusterDatabase {database_file}: no connection string in it")
            })?
            .to_string();
        Target::parse(&conninfo).map_err(|e| format!("MDClusterDatabase {database_file}: {e}"))?;
        let key =
            std::fs::read(key_file).map_err(|e| format!("MDClusterKeyFile {key_file}: {e}"))?;
        let key = key.trim_ascii().to_vec();
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "MDClusterKeyFile {key_file}: {} bytes, at least {MIN_KEY_LEN} are needed \
                 (e.g. `openssl rand -hex 32`)",
                key.len()
            ));
        }
        Ok(ClusterSettings {
            conninfo,
            key,
            node,
            lease,
            poll,
        })
    }

    /// The check value of the key stored in the database.
    fn key_check(&self) -> String {
        let pkey = openssl::pkey::PKey::hmac(&self.key).expect("HMAC key");
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey)
            .expect("HMAC");
        let mac = signer
            .sign_oneshot_to_vec(b"mod_md-rs cluster key check")
            .expect("HMAC");
        mac.iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub(crate) struct Inner {
    settings: ClusterSettings,
    pool: Pool,
    owner: String,
    /// Schema checked in this process.
    ready: OnceLock<()>,
    /// Leases a publish ended: their drop has nothing to release.
    settled: Mutex<std::collections::HashSet<(String, i64)>>,
}

impl Inner {
    /// The publish under lease `fence` of `md` ended it.
    fn settled(&self, md: &str, fence: i64) {
        self.settled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((md.to_string(), fence));
    }

    /// Was the lease `fence` of `md` ended by a publish? (forgets it)
    fn take_settled(&self, md: &str, fence: i64) -> bool {
        self.settled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(md.to_string(), fence))
    }

    /// Run `f` on a connection of a database whose schema is ready.
    fn with<T>(
        &self,
        f: impl FnMut(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, String> {
        if self.ready.get().is_none() {
            let check = self.settings.key_check();
            self.pool.with_plain(|c| schema::migrate(c, &check))?;
            let _ = self.ready.set(());
        }
        self.pool.with(f)
    }
}

/// The cluster of the renewal process (one per renewal child, created there).
pub struct PgCluster {
    inner: Arc<Inner>,
    snapshot: Mutex<HashMap<String, Published>>,
    unfit: Mutex<HashMap<String, i64>>,
    /// The last refresh failed: until the next one succeeds nothing else tries (each try
    /// would wait for a connect timeout).
    down: AtomicBool,
    /// When the snapshot was last read or tried (at most once per MDClusterPoll).
    refreshed: Mutex<Option<Instant>>,
    /// When old challenges were last purged.
    purged: Mutex<Option<Instant>>,
}

impl PgCluster {
    /// The cluster as `settings` say; connects on first use.
    pub fn new(settings: ClusterSettings) -> Result<PgCluster, String> {
        let target = Target::parse(&settings.conninfo)?;
        let owner = format!("{}:{}", settings.node, std::process::id());
        Ok(PgCluster {
            inner: Arc::new(Inner {
                settings,
                pool: Pool::new(target, POOL_SIZE),
                owner,
                ready: OnceLock::new(),
                settled: Mutex::default(),
            }),
            snapshot: Mutex::new(HashMap::new()),
            unfit: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            refreshed: Mutex::new(None),
            purged: Mutex::new(None),
        })
    }

    fn up(&self) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("the database did not answer at the start of this pass".into());
        }
        Ok(())
    }

    fn encrypt(&self, file: &str, data: &[u8]) -> Result<Vec<u8>, String> {
        if !is_key_file(file) {
            return Ok(data.to_vec());
        }
        let key = keys::key_from_pem(data, None).map_err(|e| format!("{file}: {e}"))?;
        keys::key_to_pem(&key, Some(&self.inner.settings.key)).map_err(|e| format!("{file}: {e}"))
    }
}

/// Private keys are encrypted in the database; certificates and tokens are not secret.
fn is_key_file(file: &str) -> bool {
    file.contains("privkey")
}

fn decrypt(key: &[u8], file: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    if !is_key_file(file) {
        return Ok(data.to_vec());
    }
    let k = keys::key_from_pem(data, Some(key)).map_err(|e| format!("{file}: {e}"))?;
    keys::key_to_pem(&k, None).map_err(|e| format!("{file}: {e}"))
}

impl Cluster for PgCluster {
    fn node(&self) -> &str {
        &self.inner.settings.node
    }

    fn poll(&self) -> Duration {
        self.inner.settings.poll
    }

    fn refresh(&self) -> Result<(), String> {
        {
            // At most one attempt per MDClusterPoll, also while the database is away (each
            // attempt may wait for a connect timeout): passes and MDs come faster, and the
            // lease's own check catches a set published since.
            let mut last = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.inner.settings.poll) {
                return match self.down.load(Ordering::SeqCst) {
                    true => Err("the database did not answer a moment ago".into()),
                    false => Ok(()),
                };
            }
            *last = Some(Instant::now());
        }
        let purge = {
            let mut p = self.purged.lock().unwrap_or_else(|p| p.into_inner());
            let due = p.map_or(true, |t| t.elapsed() > PURGE_EVERY);
            if due {
                *p = Some(Instant::now());
            }
            due
        };
        let rows = self.inner.with(|c| {
            if purge {
                // challenges of orders long done (a node that died mid-order leaves them)
                c.execute_typed(
                    "DELETE FROM md_rs_challenge WHERE created < now() - interval '1 day'",
                    &[],
                )?;
            }
            c.query_typed("SELECT md, fence, valid_from FROM md_rs_cert", &[])
        });
        self.down.store(rows.is_err(), Ordering::SeqCst);
        let rows = rows?;
        let unfit = self.unfit.lock().unwrap_or_else(|p| p.into_inner());
        let map = rows
            .iter()
            .map(|r| {
                let md: String = r.get(0);
                let fence: i64 = r.get(1);
                let p = Published {
                    fence,
                    valid_from: r.get(2),
                    unfit: unfit.get(&md) == Some(&fence),
                };
                (md, p)
            })
            .collect();
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    fn published(&self, md: &str) -> Option<Published> {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(md)
            .copied()
    }

    fn set_unfit(&self, md: &str, fence: i64) {
        self.unfit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(md.to_string(), fence);
        if let Some(p) = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(md)
            .filter(|p| p.fence == fence)
        {
            p.unfit = true;
        }
    }

    fn fetch(&self, md: &str) -> Result<Option<SharedSet>, String> {
        self.up()?;
        // one statement: one snapshot, one round trip
        let rows = self.inner.with(|c| {
            c.query_typed(
                "SELECT c.fence, c.owner, c.ca_url, f.file, f.data FROM md_rs_cert c \
                 LEFT JOIN md_rs_cert_file f ON f.md = c.md WHERE c.md = $1 ORDER BY f.file",
                &[(&md, Type::TEXT)],
            )
        })?;
        let Some(head) = rows.first() else {
            return Ok(None);
        };
        let key = &self.inner.settings.key;
        let mut files = Vec::new();
        for r in &rows {
            let (Some(name), Some(data)) = (
                r.get::<_, Option<String>>(3),
                r.get::<_, Option<Vec<u8>>>(4),
            ) else {
                continue;
            };
            let data = decrypt(key, &name, &data)?;
            files.push((name, data));
        }
        Ok(Some(SharedSet {
            fence: head.get(0),
            owner: head.get(1),
            ca_url: head.get(2),
            files,
        }))
    }

    fn acquire(&self, md: &str, seen: Option<i64>) -> Result<Acquire<'_>, String> {
        self.up()?;
        let taken_at = Instant::now();
        let secs = self.inner.settings.lease.as_secs_f64();
        let owner = &self.inner.owner;
        // One statement: the lease is taken only when it is free and no set other than
        // `seen` was published (the publish records its fence in the lease row, so both are
        // checked on the row's newest version under its lock).
        let got = self.inner.with(|c| {
            let fence = c.query_typed_opt(
                "INSERT INTO md_rs_lease AS l (md, owner, fence, expires) \
                 VALUES ($1, $2, nextval('md_rs_fence'), now() + make_interval(secs => $3)) \
                 ON CONFLICT (md) DO UPDATE SET owner = EXCLUDED.owner, \
                 fence = EXCLUDED.fence, expires = EXCLUDED.expires \
                 WHERE l.expires <= now() AND l.published IS NOT DISTINCT FROM $4 \
                 RETURNING fence",
                &[
                    (&md, Type::TEXT),
                    (owner, Type::TEXT),
                    (&secs, Type::FLOAT8),
                    (&seen, Type::INT8),
                ],
            )?;
            if let Some(row) = fence {
                return Ok(Ok(row.get::<_, i64>(0)));
            }
            let live: Option<bool> = c
                .query_typed_opt(
                    "SELECT expires > now() FROM md_rs_lease WHERE md = $1",
                    &[(&md, Type::TEXT)],
                )?
                .map(|r| r.get(0));
            Ok(Err(live.unwrap_or(false)))
        })?;
        Ok(match got {
            Ok(fence) => Acquire::Held(Box::new(lease::PgLease::start(
                self.inner.clone(),
                md,
                fence,
                taken_at,
            ))),
            Err(true) => Acquire::Busy,
            Err(false) => {
                // the next pass reads the new set, whatever MDClusterPoll says
                *self.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Acquire::Newer
            }
        })
    }

    fn share_challenge(&self, domain: &str, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        let data = files
            .iter()
            .map(|(f, d)| self.encrypt(f, d))
            .collect::<Result<Vec<_>, String>>()?;
        self.inner.with(|c| {
            c.execute_typed(
                "WITH d AS (DELETE FROM md_rs_challenge WHERE domain = $1 \
                   AND file <> ALL($2::text[])) \
                 INSERT INTO md_rs_challenge (domain, file, data, created) \
                 SELECT $1, u.file, u.data, now() FROM unnest($2::text[], $3::bytea[]) \
                 AS u(file, data) ON CONFLICT (domain, file) DO UPDATE \
                 SET data = EXCLUDED.data, created = now()",
                &[
                    (&domain, Type::TEXT),
                    (&names, Type::TEXT_ARRAY),
                    (&data, Type::BYTEA_ARRAY),
                ],
            )
        })?;
        Ok(())
    }

    fn publish(&self, lease: &dyn Lease, md: &str, set: &SharedSet) -> Result<(), String> {
        let mut valid_from = None;
        let mut names = Vec::new();
        let mut data = Vec::new();
        for (f, d) in &set.files {
            if f.starts_with("pubcert") {
                let leaf = keys::leaf_from_pem(d).map_err(|e| format!("{f}: {e}"))?;
                let from = md_core::crypt::Certificate::from_x509(leaf).not_before();
                valid_from = valid_from.max(Some(from));
            }
            names.push(f.as_str());
            data.push(self.encrypt(f, d)?);
        }
        let valid_from = valid_from.ok_or("no certificate to publish")?;
        let fence = lease.fence();
        // One statement, so one transaction and one round trip: everything is written only
        // if the lease (this fence, not expired) is still ours, and ends it.
        let published: i64 = self.inner.with(|c| {
            c.query_typed_one(
                "WITH l AS (UPDATE md_rs_lease SET expires = now(), published = $2 \
                   WHERE md = $1 AND fence = $2 AND expires > now() RETURNING md), \
                 c AS (INSERT INTO md_rs_cert (md, fence, owner, ca_url, valid_from, updated) \
                   SELECT md, $2, $3, $4, $5, now() FROM l \
                   ON CONFLICT (md) DO UPDATE SET fence = EXCLUDED.fence, \
                   owner = EXCLUDED.owner, ca_url = EXCLUDED.ca_url, \
                   valid_from = EXCLUDED.valid_from, updated = now() RETURNING md), \
                 d AS (DELETE FROM md_rs_cert_file WHERE md IN (SELECT md FROM l) \
                   AND file <> ALL($6::text[])), \
                 f AS (INSERT INTO md_rs_cert_file (md, file, data) \
                   SELECT c.md, u.file, u.data FROM c, unnest($6::text[], $7::bytea[]) \
                   AS u(file, data) ON CONFLICT (md, file) DO UPDATE SET data = EXCLUDED.data) \
                 SELECT count(*) FROM l",
                &[
                    (&md, Type::TEXT),
                    (&fence, Type::INT8),
                    (&set.owner, Type::TEXT),
                    (&set.ca_url, Type::TEXT),
                    (&valid_from, Type::TIMESTAMPTZ),
                    (&names, Type::TEXT_ARRAY),
                    (&data, Type::BYTEA_ARRAY),
                ],
            )
            .map(|r| r.get(0))
        })?;
        if published != 1 {
            return Err(format!(
                "the lease (fence {fence}) expired or another node took it over"
            ));
        }
        self.inner.settled(md, fence);
        if let Some(l) = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(md)
        {
            l.fence = fence;
            l.valid_from = valid_from;
        }
        Ok(())
    }
}

/// Challenge lookups of a request child: one connection, opened at its first miss.
pub struct ChallengeReader {
    target: Target,
    key: Vec<u8>,
    client: Mutex<Option<postgres::Client>>,
    /// After a failure, no new attempt before this: a database that is away must not make
    /// every challenge request wait for a connect timeout.
    quiet_until: Mutex<Option<Instant>>,
}

/// Pause after a failed lookup.
const READER_BACKOFF: Duration = Duration::from_secs(5);

impl ChallengeReader {
    /// A reader for `settings` (no connection yet).
    pub fn new(settings: &ClusterSettings) -> Result<ChallengeReader, String> {
        Ok(ChallengeReader {
            target: Target::parse(&settings.conninfo)?,
            key: settings.key.clone(),
            client: Mutex::new(None),
            quiet_until: Mutex::new(None),
        })
    }

    /// The file `file` of `domain`'s challenge, if a node shared it (keys decrypted).
    pub fn lookup(&self, domain: &str, file: &str) -> Result<Option<Vec<u8>>, String> {
        {
            let q = self.quiet_until.lock().unwrap_or_else(|p| p.into_inner());
            if q.is_some_and(|t| Instant::now() < t) {
                return Err("the cluster database was unavailable a moment ago".into());
            }
        }
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let query = |c: &mut postgres::Client| {
            c.query_typed_opt(
                "SELECT data FROM md_rs_challenge WHERE domain = $1 AND file = $2",
                &[(&domain, Type::TEXT), (&file, Type::TEXT)],
            )
        };
        let r = (|| {
            let kept = slot.as_ref().is_some_and(|c| !c.is_closed());
            if !kept {
                *slot = Some(self.target.connect()?);
            }
            let c = slot.as_mut().expect("connected");
            match query(c) {
                // The kept connection's server went away meanwhile (a restart, a failover):
                // it shows only now. Once more on a new connection. Before (found by
                // tests/pg.rs, database down), the first lookup after a database restart
                // failed and started the backoff: every challenge request of this child
                // failed for READER_BACKOFF, a CA's validation among them.
                Err(_) if kept && c.is_closed() => {
                    let c = slot.insert(self.target.connect()?);
                    query(c).map_err(conn::db_err)
                }
                r => r.map_err(conn::db_err),
            }
        })();
        match r {
            Ok(row) => {
                let data = row.map(|r| r.get::<_, Vec<u8>>(0));
                data.map(|d| decrypt(&self.key, file, &d)).transpose()
            }
            Err(e) => {
                *slot = None;
                *self.quiet_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + READER_BACKOFF);
                Err(e)
            }
        }
    }
}
