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

use conn::Pool;
pub use conn::Target;
pub use schema::VERSION as SCHEMA_VERSION;

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
}

impl Inner {
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
            }),
            snapshot: Mutex::new(HashMap::new()),
            unfit: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
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
        let rows = self.inner.with(|c| {
            // challenges of orders long done (a node that died mid-order leaves them)
            c.execute(
                "DELETE FROM md_rs_challenge WHERE created < now() - interval '1 day'",
                &[],
            )?;
            c.query("SELECT md, fence, valid_from FROM md_rs_cert", &[])
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
        let (head, files) = self.inner.with(|c| {
            let mut tx = c.build_transaction().read_only(true).start()?;
            let head = tx.query_opt(
                "SELECT fence, owner, ca_url FROM md_rs_cert WHERE md = $1",
                &[&md],
            )?;
            let files = tx.query(
                "SELECT file, data FROM md_rs_cert_file WHERE md = $1 ORDER BY file",
                &[&md],
            )?;
            tx.commit()?;
            Ok((head, files))
        })?;
        let Some(head) = head else {
            return Ok(None);
        };
        let key = &self.inner.settings.key;
        let files = files
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let data: Vec<u8> = r.get(1);
                decrypt(key, &name, &data).map(|d| (name, d))
            })
            .collect::<Result<Vec<_>, String>>()?;
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
        let got = self.inner.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO md_rs_lease (md, owner, fence, expires) \
                 VALUES ($1, '', 0, '-infinity') ON CONFLICT (md) DO NOTHING",
                &[&md],
            )?;
            let live: bool = tx
                .query_one(
                    "SELECT expires > now() FROM md_rs_lease WHERE md = $1 FOR UPDATE",
                    &[&md],
                )?
                .get(0);
            if live {
                return Ok(Err(false));
            }
            let published: Option<i64> = tx
                .query_opt("SELECT fence FROM md_rs_cert WHERE md = $1", &[&md])?
                .map(|r| r.get(0));
            if published != seen {
                return Ok(Err(true));
            }
            let fence: i64 = tx
                .query_one(
                    "UPDATE md_rs_lease SET owner = $2, fence = nextval('md_rs_fence'), \
                     expires = now() + make_interval(secs => $3) WHERE md = $1 RETURNING fence",
                    &[&md, owner, &secs],
                )?
                .get(0);
            tx.commit()?;
            Ok(Ok(fence))
        })?;
        Ok(match got {
            Ok(fence) => Acquire::Held(Box::new(lease::PgLease::start(
                self.inner.clone(),
                md,
                fence,
                taken_at,
            ))),
            Err(false) => Acquire::Busy,
            Err(true) => Acquire::Newer,
        })
    }

    fn share_challenge(&self, domain: &str, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        let rows = files
            .iter()
            .map(|(f, d)| self.encrypt(f, d).map(|d| (f.clone(), d)))
            .collect::<Result<Vec<_>, String>>()?;
        self.inner.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM md_rs_challenge WHERE domain = $1", &[&domain])?;
            for (f, d) in &rows {
                tx.execute(
                    "INSERT INTO md_rs_challenge (domain, file, data) VALUES ($1, $2, $3)",
                    &[&domain, f, d],
                )?;
            }
            tx.commit()
        })
    }

    fn publish(&self, lease: &dyn Lease, md: &str, set: &SharedSet) -> Result<(), String> {
        let mut valid_from = None;
        let mut rows = Vec::new();
        for (f, d) in &set.files {
            if f.starts_with("pubcert") {
                let leaf = keys::leaf_from_pem(d).map_err(|e| format!("{f}: {e}"))?;
                let from = md_core::crypt::Certificate::from_x509(leaf).not_before();
                valid_from = valid_from.max(Some(from));
            }
            rows.push((f.clone(), self.encrypt(f, d)?));
        }
        let valid_from = valid_from.ok_or("no certificate to publish")?;
        let fence = lease.fence();
        let published = self.inner.with(|c| {
            let mut tx = c.transaction()?;
            let ours = tx.query_opt(
                "SELECT 1 FROM md_rs_lease WHERE md = $1 AND fence = $2 AND expires > now() \
                 FOR UPDATE",
                &[&md, &fence],
            )?;
            if ours.is_none() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO md_rs_cert (md, fence, owner, ca_url, valid_from, updated) \
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (md) DO UPDATE SET \
                 fence = $2, owner = $3, ca_url = $4, valid_from = $5, updated = now() \
                 WHERE md_rs_cert.fence < $2",
                &[&md, &fence, &set.owner, &set.ca_url, &valid_from],
            )?;
            tx.execute("DELETE FROM md_rs_cert_file WHERE md = $1", &[&md])?;
            for (f, d) in &rows {
                tx.execute(
                    "INSERT INTO md_rs_cert_file (md, file, data) VALUES ($1, $2, $3)",
                    &[&md, f, d],
                )?;
            }
            tx.execute(
                "UPDATE md_rs_lease SET expires = now() WHERE md = $1 AND fence = $2",
                &[&md, &fence],
            )?;
            tx.commit()?;
            Ok(true)
        })?;
        if !published {
            return Err(format!(
                "the lease (fence {fence}) expired or another node took it over"
            ));
        }
        if let Some(l) = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(md)
        {
            l.fence = fence;
            l.valid_from = valid_from;
        }
        let _ = lease; // ended by the publish: the drop finds it expired
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
            c.query_opt(
                "SELECT data FROM md_rs_challenge WHERE domain = $1 AND file = $2",
                &[&domain, &file],
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
