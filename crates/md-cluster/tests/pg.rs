//! md-cluster against a real, throw-away PostgreSQL 15 (Debian's binaries; env MDRS_PG_BIN
//! overrides /usr/lib/postgresql/15/bin).
//!
//! One server for the whole file, in one test function that runs the sub-cases in sequence
//! (each in a database of its own; a failing sub-case does not hide the others): the server is
//! a child of this process, owned by a guard whose `Drop` stops it by PID, also when a
//! sub-case panics. The last sub-case stops and restarts it (the database away).
//!
//! The server runs as the `postgres` user (initdb and postgres refuse root) in a temporary
//! directory, listens on 127.0.0.1 only, on a port chosen at run time, with TLS (a CA made
//! here) and this pg_hba.conf:
//!   - `md`: scram-sha-256 over TCP, with or without TLS (`host`);
//!   - `md_tls`: scram-sha-256, TLS only (`hostssl`);
//!   - `md_cert`: TLS with a client certificate of the CA (`hostssl ... cert`);
//!   - `postgres` (superuser): only on the private unix socket, for the test's own SQL.
//!
//! Missing binaries, a missing `postgres` user or not being root FAIL the test (never a skip).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use md_cluster::{ChallengeReader, ClusterSettings, PgCluster, Target, SCHEMA_VERSION};
use md_core::drive::cluster::{Acquire, Cluster, Lease, SharedSet};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

const PG_USER: &str = "postgres";
/// The cluster key of the nodes (MDClusterKeyFile content).
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
/// MDClusterLease of the test nodes.
const LEASE: Duration = Duration::from_secs(2);

// ---- the server ----------------------------------------------------------------------------

fn pg_bin() -> PathBuf {
    PathBuf::from(
        std::env::var("MDRS_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    )
}

/// uid and gid of `name` (via id(1): std has no getpwnam).
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(name).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// The environment of the server's tools: none of the caller's PG* variables.
fn tool_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LANG", "C").env("LC_ALL", "C")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0 to find a free port")
        .port()
}

/// TLS material made for the server (all PEM files readable by this process).
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

struct Server {
    port: u16,
    uid: u32,
    gid: u32,
    /// Owned by `postgres`, mode 0700: data/, sock/, postgres.log.
    pgdir: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    pki: Pki,
    md_password: String,
    tls_password: String,
    postmaster: Option<Child>,
    /// Files of the test (conninfo files, ...), owned by root.
    files: PathBuf,
    // last: removed after the server is stopped (fields drop after `Drop::drop`)
    _tmp: tempfile::TempDir,
}

impl Server {
    /// initdb, TLS, pg_hba, start, roles. Panics (the test fails) when anything is missing.
    fn new() -> Server {
        let bin = pg_bin();
        for tool in ["initdb", "postgres"] {
            assert!(
                bin.join(tool).is_file(),
                "{} not found: these tests need Debian's postgresql-15 (scripts/deps.sh \
                 installs it) or MDRS_PG_BIN pointing at PostgreSQL's bin directory",
                bin.join(tool).display()
            );
        }
        let (uid, gid) = user_ids(PG_USER).unwrap_or_else(|| {
            panic!("no user '{PG_USER}' (Debian's postgresql package makes it): needed to run the server")
        });
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "these tests run as root: the server runs as '{PG_USER}' (initdb refuses root)"
        );

        let tmp = tempfile::Builder::new()
            .prefix("md-cluster-pg-")
            .tempdir()
            .expect("temporary directory");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let pgdir = tmp.path().join("pg");
        fs::create_dir(&pgdir).unwrap();
        fs::set_permissions(&pgdir, fs::Permissions::from_mode(0o700)).unwrap();
        chown(&pgdir, Some(uid), Some(gid)).unwrap();
        let files = tmp.path().join("files");
        fs::create_dir(&files).unwrap();
        let data = pgdir.join("data");
        let sock = pgdir.join("sock");
        let log = pgdir.join("postgres.log");

        let out = tool_env(Command::new("runuser").args(["-u", PG_USER, "--"]))
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .current_dir(&pgdir)
            .stdin(Stdio::null())
            .output()
            .expect("running initdb through runuser");
        assert!(
            out.status.success(),
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::create_dir(&sock).unwrap();
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o700)).unwrap();
        chown(&sock, Some(uid), Some(gid)).unwrap();

        // TLS: a CA, the server's certificate for 127.0.0.1, a client certificate, and a
        // second CA that signed none of them
        let (ca_key, ca) = make_ca("md-cluster test CA");
        let (_, other_ca) = make_ca("md-cluster other CA");
        let server_key = ec_key(Nid::X9_62_PRIME256V1);
        let server = certificate(
            "127.0.0.1",
            &server_key,
            Some((&ca, &ca_key)),
            Use::Server,
            now_unix() - 3600,
        );
        let client_key = ec_key(Nid::X9_62_PRIME256V1);
        let client = certificate(
            "md_cert",
            &client_key,
            Some((&ca, &ca_key)),
            Use::Client,
            now_unix() - 3600,
        );
        let postgres_file = |name: &str, pem: &[u8], mode: u32| {
            let p = data.join(name);
            fs::write(&p, pem).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            chown(&p, Some(uid), Some(gid)).unwrap();
        };
        postgres_file("server.crt", &server.to_pem().unwrap(), 0o644);
        postgres_file(
            "server.key",
            &server_key.private_key_to_pem_pkcs8().unwrap(),
            0o600,
        );
        postgres_file("root.crt", &ca.to_pem().unwrap(), 0o644);
        let pki = Pki {
            ca: files.join("ca.pem"),
            other_ca: files.join("other-ca.pem"),
            client_cert: files.join("client.pem"),
            client_key: files.join("client.key"),
        };
        fs::write(&pki.ca, ca.to_pem().unwrap()).unwrap();
        fs::write(&pki.other_ca, other_ca.to_pem().unwrap()).unwrap();
        fs::write(&pki.client_cert, client.to_pem().unwrap()).unwrap();
        fs::write(
            &pki.client_key,
            client_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();

        let port = free_port();
        let conf = format!(
            "\n# md-cluster tests/pg.rs\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             unix_socket_permissions = 0700\n\
             password_encryption = 'scram-sha-256'\n\
             ssl = on\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n\
             ssl_ca_file = 'root.crt'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             max_connections = 60\n",
            sock = sock.display()
        );
        let mut pgconf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pgconf.push_str(&conf);
        fs::write(data.join("postgresql.conf"), pgconf).unwrap();
        fs::write(
            data.join("pg_hba.conf"),
            format!(
                "# md-cluster tests/pg.rs\n\
                 local all {PG_USER} trust\n\
                 hostssl all md_tls 127.0.0.1/32 scram-sha-256\n\
                 hostssl all md_cert 127.0.0.1/32 cert\n\
                 host all md 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();

        let mut s = Server {
            port,
            uid,
            gid,
            pgdir,
            data,
            sock,
            log,
            pki,
            md_password: hex(&rand_bytes(12)),
            tls_password: hex(&rand_bytes(12)),
            postmaster: None,
            files,
            _tmp: tmp,
        };
        s.start();
        let mut admin = s.admin("postgres");
        admin
            .batch_execute(&format!(
                "CREATE ROLE md LOGIN PASSWORD '{}';\
                 CREATE ROLE md_tls LOGIN PASSWORD '{}';\
                 CREATE ROLE md_cert LOGIN;",
                s.md_password, s.tls_password
            ))
            .expect("creating the roles");
        s
    }

    /// Start the postmaster as our child (not pg_ctl, which detaches it) and wait until it
    /// accepts connections.
    fn start(&mut self) {
        assert!(self.postmaster.is_none(), "already started");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(pg_bin().join("postgres"));
        tool_env(&mut cmd)
            .arg("-D")
            .arg(&self.data)
            .uid(self.uid)
            .gid(self.gid)
            .process_group(0)
            .current_dir(&self.pgdir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. A safety net only (the guard stops it): if this
        // test thread dies without unwinding (the process is killed), the postmaster gets
        // SIGQUIT (immediate shutdown) instead of running on. It runs after the setuid.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting postgres");
        self.postmaster = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_admin("postgres").is_ok() {
                return;
            }
            let exited = self
                .postmaster
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.stop();
                panic!(
                    "postgres did not start ({}): {}",
                    exited.map_or("timeout".into(), |s| s.to_string()),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the postmaster by PID: SIGINT (fast shutdown: clients are disconnected), then
    /// SIGQUIT (immediate), then SIGKILL to its process group; always reaped.
    fn stop(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        for (sig, wait) in [(libc::SIGINT, 15), (libc::SIGQUIT, 5)] {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            // SAFETY: kill with our own child's PID (not yet reaped, so not reused).
            unsafe { libc::kill(pid, sig) };
            let until = Instant::now() + Duration::from_secs(wait);
            while Instant::now() < until && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: the process group of our child (it is its leader, not yet reaped).
            unsafe { libc::killpg(pid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&log[log.len().saturating_sub(3000)..]).into_owned()
    }

    fn try_admin(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.sock)
            .port(self.port)
            .user(PG_USER)
            .dbname(db)
            .connect_timeout(Duration::from_secs(2))
            .connect(postgres::NoTls)
    }

    /// The superuser on the private socket: the test's own SQL (inspecting, simulating).
    fn admin(&self, db: &str) -> postgres::Client {
        self.try_admin(db)
            .unwrap_or_else(|e| panic!("superuser connection to {db}: {e}"))
    }

    /// A fresh database owned by `owner`.
    fn database(&self, name: &str, owner: &str) -> String {
        self.admin("postgres")
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {owner}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        name.to_string()
    }

    /// The connection string of role `md` (TLS as the server offers it: sslmode prefer).
    fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={db} user=md password={}",
            self.port, self.md_password
        )
    }

    fn settings(&self, db: &str, node: &str, key: &[u8], lease: Duration) -> ClusterSettings {
        ClusterSettings {
            conninfo: self.conninfo(db),
            key: key.to_vec(),
            node: node.into(),
            lease,
            // zero: every refresh reads the database (a node refreshes at most once per
            // MDClusterPoll, which would hide what these tests look at)
            poll: Duration::ZERO,
        }
    }

    fn cluster(&self, db: &str, node: &str, lease: Duration) -> PgCluster {
        PgCluster::new(self.settings(db, node, KEY, lease)).expect("PgCluster::new")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- certificates ----------------------------------------------------------------------------

fn now_unix() -> i64 {
    Utc::now().timestamp()
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn ec_key(curve: Nid) -> PKey<Private> {
    let group = EcGroup::from_curve_name(curve).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

enum Use {
    Ca,
    Server,
    Client,
    /// A self-signed certificate for a DNS name, as an MD's (in `pubcert.pem`).
    Domain,
}

/// A certificate for `cn` with `key`, signed by `issuer` (self-signed without), valid from
/// `not_before` (Unix seconds) for 30 days.
fn certificate(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    usage: Use,
    not_before: i64,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(not_before).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(ski).unwrap();
    match usage {
        Use::Ca => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Use::Server | Use::Client | Use::Domain => {
            let ctx = b.x509v3_context(issuer.map(|(c, _)| &**c), None);
            let san = match usage {
                Use::Server => SubjectAlternativeName::new().ip(cn).build(&ctx),
                Use::Client => SubjectAlternativeName::new().email("md@test").build(&ctx),
                _ => SubjectAlternativeName::new().dns(cn).build(&ctx),
            }
            .unwrap();
            let aki = issuer.map(|_| {
                AuthorityKeyIdentifier::new()
                    .keyid(false)
                    .build(&ctx)
                    .unwrap()
            });
            b.append_extension(san).unwrap();
            if let Some(aki) = aki {
                b.append_extension(aki).unwrap();
            }
            let mut eku = ExtendedKeyUsage::new();
            match usage {
                Use::Client => eku.client_auth(),
                _ => eku.server_auth(),
            };
            b.append_extension(eku.build().unwrap()).unwrap();
        }
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    b.build()
}

fn make_ca(cn: &str) -> (PKey<Private>, X509) {
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let ca = certificate(cn, &key, None, Use::Ca, now_unix() - 3600);
    (key, ca)
}

/// An MD's set as the store has it: `privkey.pem` + `pubcert.pem` (P-256), and a second
/// pair `privkey.secp384r1.pem` + `pubcert.secp384r1.pem` whose certificate is newer.
/// Returns the set, the keys, and the newest notBefore.
fn md_set(domain: &str, owner: &str, fence: i64) -> (SharedSet, Vec<PKey<Private>>, DateTime<Utc>) {
    let nb1 = now_unix() - 7200;
    let nb2 = now_unix() - 60;
    let k1 = ec_key(Nid::X9_62_PRIME256V1);
    let k2 = ec_key(Nid::SECP384R1);
    let c1 = certificate(domain, &k1, None, Use::Domain, nb1);
    let c2 = certificate(domain, &k2, None, Use::Domain, nb2);
    let set = SharedSet {
        ca_url: "https://acme.test/directory".into(),
        owner: owner.into(),
        fence,
        files: vec![
            ("privkey.pem".into(), k1.private_key_to_pem_pkcs8().unwrap()),
            (
                "privkey.secp384r1.pem".into(),
                k2.private_key_to_pem_pkcs8().unwrap(),
            ),
            ("pubcert.pem".into(), c1.to_pem().unwrap()),
            ("pubcert.secp384r1.pem".into(), c2.to_pem().unwrap()),
        ],
    };
    (set, vec![k1, k2], DateTime::from_timestamp(nb2, 0).unwrap())
}

// ---- helpers -----------------------------------------------------------------------------------

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn kind(a: &Acquire<'_>) -> &'static str {
    match a {
        Acquire::Held(_) => "Held",
        Acquire::Busy => "Busy",
        Acquire::Newer => "Newer",
    }
}

fn expect_held<'c>(a: Result<Acquire<'c>, String>, what: &str) -> Box<dyn Lease + 'c> {
    match a {
        Ok(Acquire::Held(l)) => l,
        Ok(other) => panic!("{what}: expected Held, got {}", kind(&other)),
        Err(e) => panic!("{what}: acquire failed: {e}"),
    }
}

fn expect_acquire(a: Result<Acquire<'_>, String>, want: &str, what: &str) {
    match a {
        Ok(a) => assert_eq!(kind(&a), want, "{what}"),
        Err(e) => panic!("{what}: expected {want}, acquire failed: {e}"),
    }
}

/// Poll `f` every 50 ms until it is true; the time it took, or `None` after `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if f() {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The numbers in a text (to check that a message names both versions, whatever its words).
fn numbers(s: &str) -> Vec<i64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn lease_row(admin: &mut postgres::Client, md: &str) -> (String, i64, DateTime<Utc>) {
    let r = admin
        .query_one(
            "SELECT owner, fence, expires FROM md_rs_lease WHERE md = $1",
            &[&md],
        )
        .unwrap_or_else(|e| panic!("lease row of {md}: {e}"));
    (r.get(0), r.get(1), r.get(2))
}

// ---- the sub-cases -----------------------------------------------------------------------------

/// 1. The schema: created at first use (also by two nodes at once), a newer one refused, a
///    node with another cluster key refused; ClusterSettings::load reads the files.
fn schema(pg: &Server) {
    let db = pg.database("schema", "md");
    // two nodes starting at once on an empty database: the migration lock serializes them
    let a = pg.cluster(&db, "a", LEASE);
    let b = pg.cluster(&db, "b", LEASE);
    std::thread::scope(|s| {
        let ha = s.spawn(|| a.refresh());
        let hb = s.spawn(|| b.refresh());
        ha.join()
            .unwrap()
            .expect("node a: first use of an empty database");
        hb.join()
            .unwrap()
            .expect("node b: first use of an empty database, at the same time as a");
    });
    let mut admin = pg.admin(&db);
    let versions: Vec<i32> = admin
        .query("SELECT version FROM md_rs_schema", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        vec![SCHEMA_VERSION],
        "md_rs_schema after first use: one row with this module's version"
    );
    for table in [
        "md_rs_meta",
        "md_rs_lease",
        "md_rs_cert",
        "md_rs_cert_file",
        "md_rs_challenge",
    ] {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename = $1",
                &[&table],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "table {table} created at first use");
    }

    // settings from the files, as httpd's parent reads them
    let dbfile = pg.files.join("schema.conninfo");
    let keyfile = pg.files.join("schema.key");
    fs::write(
        &dbfile,
        format!("# the cluster database\n\n  {}  \n", pg.conninfo(&db)),
    )
    .unwrap();
    fs::write(&keyfile, [KEY, b"\n"].concat()).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let loaded = ClusterSettings::load(
        &path(&dbfile),
        &path(&keyfile),
        "c".into(),
        LEASE,
        Duration::from_secs(1),
    )
    .expect("ClusterSettings::load of a conninfo file with a comment");
    assert_eq!(
        loaded.conninfo,
        pg.conninfo(&db),
        "conninfo read from the file"
    );
    assert_eq!(loaded.key, KEY, "key read from the file (newline trimmed)");
    PgCluster::new(loaded)
        .unwrap()
        .refresh()
        .expect("a third node with the same key uses the existing schema");
    fs::write(&keyfile, b"too short\n").unwrap();
    let e = ClusterSettings::load(&path(&dbfile), &path(&keyfile), "c".into(), LEASE, LEASE)
        .expect_err("a short MDClusterKeyFile is refused");
    assert!(
        e.contains("MDClusterKeyFile") && e.contains("at least"),
        "short key message: {e}"
    );

    // another cluster key
    let other = PgCluster::new(pg.settings(&db, "x", OTHER_KEY, LEASE)).unwrap();
    let e = other
        .refresh()
        .expect_err("a node with another MDClusterKeyFile must be refused");
    assert!(
        e.contains("MDClusterKeyFile differs"),
        "the other-key refusal says what is wrong: {e}"
    );
    let e = PgCluster::new(pg.settings(&db, "x", OTHER_KEY, LEASE))
        .unwrap()
        .acquire("m", None)
        .err()
        .expect("no lease for a node with another MDClusterKeyFile");
    assert!(e.contains("MDClusterKeyFile differs"), "{e}");

    // a newer schema (a node runs a newer module)
    let newer = SCHEMA_VERSION + 1;
    admin
        .execute("INSERT INTO md_rs_schema (version) VALUES ($1)", &[&newer])
        .unwrap();
    let c = pg.cluster(&db, "d", LEASE);
    let e = c
        .refresh()
        .expect_err("a schema version newer than this module's must be refused");
    let n = numbers(&e);
    assert!(
        n.contains(&(newer as i64)) && n.contains(&(SCHEMA_VERSION as i64)),
        "the refusal names both versions ({newer} and {SCHEMA_VERSION}): {e}"
    );
    // nor does a node write under it
    let e = pg
        .cluster(&db, "e", LEASE)
        .acquire("m", None)
        .err()
        .expect("no lease under a newer schema");
    assert!(e.contains("newer"), "{e}");
}

/// A published set for `md` under a fresh lease of `c` (for the lease cases).
fn publish_new(c: &PgCluster, md: &str, seen: Option<i64>) -> i64 {
    let lease = expect_held(c.acquire(md, seen), &format!("{}: acquire {md}", c.node()));
    let (set, _, _) = md_set(&format!("{md}.test"), c.node(), lease.fence());
    c.publish(&*lease, md, &set)
        .unwrap_or_else(|e| panic!("{}: publish {md}: {e}", c.node()));
    lease.fence()
}

/// 2. Leases and fencing with two nodes.
fn leases(pg: &Server) {
    let db = pg.database("leases", "md");
    let a = pg.cluster(&db, "a", LEASE);
    let b = pg.cluster(&db, "b", LEASE);
    a.refresh().unwrap();
    b.refresh().unwrap();
    let mut admin = pg.admin(&db);

    // A holds, B is busy; A releases (drop), B takes it with a bigger fence
    let la = expect_held(a.acquire("m1", None), "A acquires a free MD");
    assert!(la.held(), "A's fresh lease is held");
    let (owner, fence, _) = lease_row(&mut admin, "m1");
    assert_eq!(fence, la.fence(), "the lease row has A's fence");
    assert!(
        owner.starts_with("a:"),
        "the lease row names node a: {owner}"
    );
    expect_acquire(b.acquire("m1", None), "Busy", "B while A holds m1");
    // A keeps it past the lease time: the heartbeat extends it
    std::thread::sleep(LEASE + Duration::from_millis(200));
    assert!(
        la.held(),
        "A's lease is still held after more than MDClusterLease"
    );
    expect_acquire(
        b.acquire("m1", None),
        "Busy",
        "B after more than MDClusterLease while A's heartbeat runs",
    );
    let fa = la.fence();
    drop(la);
    let lb = expect_held(b.acquire("m1", None), "B after A dropped its lease");
    assert!(
        lb.fence() > fa,
        "B's fence {} must be bigger than A's {fa}",
        lb.fence()
    );
    let fb = lb.fence();
    drop(lb);

    // Newer: A publishes m2 after B's refresh; B (seen: nothing) is told to take that one
    b.refresh().unwrap();
    assert_eq!(b.published("m2"), None, "nothing published for m2 yet");
    let fp = publish_new(&a, "m2", None);
    assert!(fp > fb, "fences grow across MDs too ({fp} > {fb})");
    expect_acquire(
        b.acquire("m2", b.published("m2").map(|p| p.fence)),
        "Newer",
        "B with a stale view of m2 (A published after B's refresh)",
    );
    b.refresh().unwrap();
    let seen = b.published("m2").expect("m2 published, after B's refresh");
    assert_eq!(seen.fence, fp, "B's refresh shows A's publish fence");
    expect_acquire(
        b.acquire("m2", Some(fp - 1)),
        "Newer",
        "B claiming to have seen another fence",
    );
    let lb = expect_held(b.acquire("m2", Some(fp)), "B with the current view of m2");
    assert!(
        lb.fence() > fp,
        "B's new lease fence is bigger than the published one"
    );
    drop(lb);

    // Partition: A (lease 4.5 s, heartbeat every 1.5 s) holds m3; its row expires behind
    // its back (as when its heartbeat cannot reach the database); B takes over and publishes.
    let a_slow = pg.cluster(&db, "a", Duration::from_millis(4500));
    let acquired = Instant::now();
    let la = expect_held(a_slow.acquire("m3", None), "A acquires m3");
    let (set_a, _, _) = md_set("m3.test", "a", la.fence());
    admin
        .execute(
            "UPDATE md_rs_lease SET expires = now() - interval '1s' WHERE md = 'm3'",
            &[],
        )
        .unwrap();
    let lb = expect_held(b.acquire("m3", None), "B after A's lease of m3 expired");
    assert!(
        lb.fence() > la.fence(),
        "B's fence is bigger than the expired one"
    );
    let (set_b, _, _) = md_set("m3.test", "b", lb.fence());
    b.publish(&*lb, "m3", &set_b)
        .expect("B publishes m3 under its lease");
    let e = a_slow
        .publish(&*la, "m3", &set_a)
        .expect_err("A's publish under an expired, taken-over lease must fail");
    assert!(
        e.contains("lease"),
        "A's publish error mentions the lease: {e}"
    );
    let row = admin
        .query_one("SELECT fence, owner FROM md_rs_cert WHERE md = 'm3'", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, String>(1)),
        (lb.fence(), "b".to_string()),
        "the published row of m3 stays B's"
    );
    let stored: Vec<u8> = admin
        .query_one(
            "SELECT data FROM md_rs_cert_file WHERE md = 'm3' AND file = 'pubcert.pem'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        stored, set_b.files[2].1,
        "the certificate files of m3 stay B's"
    );
    // A notices at its first heartbeat (1.5 s after the acquire): its own clock would
    // keep it held until 3.5 s (4.5 s lease, 1 s margin)
    wait_until(Duration::from_secs(5), || !la.held())
        .expect("A's held() must turn false once its lease was taken over");
    let since = acquired.elapsed();
    assert!(
        since < Duration::from_secs(3),
        "held() turned false {since:?} after the acquire: the heartbeat (every 1.5 s) \
         should have found the lease lost before the lease time ran out"
    );
    drop(la); // no release of B's lease by A's drop
    let (owner, fence, _) = lease_row(&mut admin, "m3");
    assert_eq!(fence, lb.fence(), "A's drop did not touch the lease row");
    assert!(
        owner.starts_with("b:"),
        "the lease row of m3 is B's: {owner}"
    );
    drop(lb);

    // keep_until: B failed and backs off until t: A is Busy until then, Held after
    let lb = expect_held(b.acquire("m4", None), "B acquires m4");
    let until = Utc::now() + chrono::Duration::milliseconds(1500);
    lb.keep_until(until);
    drop(lb); // must not release
    let (_, _, expires) = lease_row(&mut admin, "m4");
    assert!(
        (expires - until).num_milliseconds().abs() <= 1,
        "keep_until sets the expiry ({expires} vs {until}), and the drop keeps it"
    );
    expect_acquire(a.acquire("m4", None), "Busy", "A while B keeps m4");
    let mut got = None;
    let waited = wait_until(Duration::from_secs(5), || match a.acquire("m4", None) {
        Ok(Acquire::Held(l)) => {
            got = Some((Utc::now(), l.fence()));
            true
        }
        Ok(_) => false,
        Err(e) => panic!("A acquires m4: {e}"),
    });
    assert!(waited.is_some(), "A gets m4 after the keep_until time");
    let (when, _) = got.unwrap();
    assert!(
        when >= until,
        "A got m4 at {when}, before B's keep_until {until}"
    );
}

/// keep_until while a heartbeat extension is in flight (both wait for the row; keep_until
/// first): the extension must not shorten the expiry keep_until set.
fn keep_until_vs_heartbeat(pg: &Server) {
    let db = pg.database("keepuntil", "md");
    let b = pg.cluster(&db, "b", LEASE);
    b.refresh().unwrap();
    let mut admin = pg.admin(&db);
    let mut watch = pg.admin(&db);
    // what the statement whose text has `what` waits for, if it waits for a lock
    let mut waiting = |what: &str| -> Option<String> {
        watch
            .query_opt(
                "SELECT wait_event FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND datname = current_database() AND query LIKE $1",
                &[&format!("%{what}%")],
            )
            .unwrap()
            .map(|r| r.get(0))
    };
    for attempt in 1..=3 {
        let md = format!("k{attempt}");
        let lb = expect_held(b.acquire(&md, None), "B acquires");
        let until = Utc::now() + chrono::Duration::seconds(30);
        let mut tx = admin.transaction().unwrap();
        tx.execute("SELECT 1 FROM md_rs_lease WHERE md = $1 FOR UPDATE", &[&md])
            .unwrap();
        let first = std::thread::scope(|s| {
            let h = s.spawn(|| lb.keep_until(until));
            // keep_until's UPDATE waits for the row ...
            let kept = wait_until(Duration::from_secs(3), || {
                waiting("SET expires = $3").is_some()
            });
            assert!(
                kept.is_some(),
                "keep_until's UPDATE waits for the locked row"
            );
            // ... and then the heartbeat's extension (every LEASE/3) queues behind it
            let ext = wait_until(Duration::from_secs(3), || {
                waiting("make_interval").is_some()
            });
            assert!(
                ext.is_some(),
                "the heartbeat's UPDATE waits for the locked row"
            );
            // the first waiter waits for our transaction, the second for the tuple
            let first = waiting("SET expires = $3").as_deref() == Some("transactionid");
            tx.commit().unwrap();
            h.join().unwrap();
            first
        });
        // the extension finishes right after keep_until
        wait_until(Duration::from_secs(3), || {
            waiting("make_interval").is_none()
        });
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, expires) = lease_row(&mut admin, &md);
        drop(lb);
        if !first {
            eprintln!("   attempt {attempt}: the heartbeat queued first, again");
            continue;
        }
        assert!(
            (expires - until).num_milliseconds().abs() <= 1,
            "a heartbeat extension that waited behind keep_until shortened the expiry to \
             {expires} (keep_until: {until})"
        );
        return;
    }
    panic!("could not get keep_until to wait before the heartbeat in 3 attempts");
}

/// 3. Publish + fetch: keys encrypted at rest, decrypted by fetch; refresh shows the set.
fn publish_fetch(pg: &Server) {
    let db = pg.database("roundtrip", "md");
    let a = pg.cluster(&db, "a", LEASE);
    let b = pg.cluster(&db, "b", LEASE);
    a.refresh().unwrap();
    b.refresh().unwrap();
    assert_eq!(
        b.fetch("rt").expect("fetch of nothing"),
        None,
        "nothing yet"
    );
    let lease = expect_held(a.acquire("rt", None), "A acquires rt");
    let fence = lease.fence();
    let (set, keys, valid_from) = md_set("rt.test", "a", fence);
    let no_cert = SharedSet {
        files: set.files[..2].to_vec(),
        ..set.clone()
    };
    let e = a
        .publish(&*lease, "rt", &no_cert)
        .expect_err("a set without certificate is refused");
    assert!(e.contains("certificate"), "{e}");
    assert!(lease.held(), "the refused publish left the lease alone");
    a.publish(&*lease, "rt", &set).expect("A publishes rt");
    drop(lease);
    expect_held(
        b.acquire("rt", Some(fence)),
        "the publish released the lease",
    );

    let mut admin = pg.admin(&db);
    let rows = admin
        .query(
            "SELECT file, data FROM md_rs_cert_file WHERE md = 'rt' ORDER BY file",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 4, "all four files stored");
    for r in &rows {
        let file: String = r.get(0);
        let data: Vec<u8> = r.get(1);
        if file.starts_with("privkey") {
            assert!(
                !contains(&data, "BEGIN PRIVATE KEY") && !contains(&data, "BEGIN EC PRIVATE"),
                "{file} is stored in the clear"
            );
            assert!(
                contains(&data, "BEGIN ENCRYPTED PRIVATE KEY"),
                "{file} is stored as an encrypted PKCS#8 key"
            );
        } else {
            let orig = &set.files.iter().find(|(f, _)| *f == file).unwrap().1;
            assert_eq!(&data, orig, "{file} is stored as it was");
        }
    }

    let got = b
        .fetch("rt")
        .expect("B fetches rt")
        .expect("rt is published");
    assert_eq!(got.fence, fence, "fetched fence");
    assert_eq!(got.owner, "a", "fetched owner");
    assert_eq!(got.ca_url, set.ca_url, "fetched ca_url");
    let names: Vec<&str> = got.files.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "privkey.pem",
            "privkey.secp384r1.pem",
            "pubcert.pem",
            "pubcert.secp384r1.pem"
        ],
        "fetched file names (sorted)"
    );
    for (i, key) in keys.iter().enumerate() {
        let (name, pem) = &got.files[i];
        assert!(
            contains(pem, "BEGIN PRIVATE KEY"),
            "{name} is fetched as a plain PEM key"
        );
        let k = PKey::private_key_from_pem(pem)
            .unwrap_or_else(|e| panic!("fetched {name} parses: {e}"));
        assert!(k.public_eq(key), "fetched {name} is the published key");
    }
    assert_eq!(got.files[2].1, set.files[2].1, "fetched pubcert.pem");
    assert_eq!(
        got.files[3].1, set.files[3].1,
        "fetched pubcert.secp384r1.pem"
    );

    // refresh/published
    b.refresh().unwrap();
    let p = b.published("rt").expect("rt in B's refreshed view");
    assert_eq!(p.fence, fence, "published fence");
    assert_eq!(
        p.valid_from, valid_from,
        "published valid_from = the newest notBefore of the certificates"
    );
    assert!(!p.unfit);
    b.set_unfit("rt", fence);
    assert!(b.published("rt").unwrap().unfit, "set_unfit marks it");
    b.refresh().unwrap();
    assert!(
        b.published("rt").unwrap().unfit,
        "unfit survives a refresh (same fence)"
    );
    assert_eq!(b.published("nothing"), None);

    // a newer publish of the same MD replaces the files (no old ones left)
    let lease = expect_held(b.acquire("rt", Some(fence)), "B acquires rt");
    let (mut set2, _, _) = md_set("rt.test", "b", lease.fence());
    set2.files.retain(|(f, _)| !f.contains("secp384r1"));
    b.publish(&*lease, "rt", &set2).expect("B publishes rt");
    let got = b.fetch("rt").unwrap().unwrap();
    assert_eq!(got.fence, lease.fence());
    assert_eq!(got.owner, "b");
    assert_eq!(got.files.len(), 2, "the older set's extra files are gone");
    b.refresh().unwrap();
    let p = b.published("rt").unwrap();
    assert!(!p.unfit, "a new fence is not unfit");
}

/// 4. Challenges: shared by one node, read by any request process.
fn challenges(pg: &Server) {
    let db = pg.database("challenges", "md");
    let a = pg.cluster(&db, "a", LEASE);
    a.refresh().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let key_pem = key.private_key_to_pem_pkcs8().unwrap();
    let cert = certificate("c.test", &key, None, Use::Domain, now_unix());
    a.share_challenge(
        "c.test",
        &[
            ("acme-http-01.txt".into(), b"token.thumbprint".to_vec()),
            ("acme-tls-alpn-01-privkey.pem".into(), key_pem.clone()),
            (
                "acme-tls-alpn-01-pubcert.pem".into(),
                cert.to_pem().unwrap(),
            ),
        ],
    )
    .expect("share_challenge");
    let mut admin = pg.admin(&db);
    let stored: Vec<u8> = admin
        .query_one(
            "SELECT data FROM md_rs_challenge WHERE domain = 'c.test' \
             AND file = 'acme-tls-alpn-01-privkey.pem'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        !contains(&stored, "BEGIN PRIVATE KEY") && contains(&stored, "BEGIN ENCRYPTED PRIVATE KEY"),
        "the tls-alpn-01 key is encrypted at rest"
    );

    let reader = ChallengeReader::new(&pg.settings(&db, "r", KEY, LEASE)).unwrap();
    assert_eq!(
        reader.lookup("c.test", "acme-http-01.txt").unwrap(),
        Some(b"token.thumbprint".to_vec()),
        "the http-01 body"
    );
    let pem = reader
        .lookup("c.test", "acme-tls-alpn-01-privkey.pem")
        .unwrap()
        .expect("the tls-alpn-01 key");
    let k = PKey::private_key_from_pem(&pem).expect("lookup returns a plain PEM key");
    assert!(k.public_eq(&key), "lookup decrypts the shared key");
    assert_eq!(
        reader
            .lookup("c.test", "acme-tls-alpn-01-pubcert.pem")
            .unwrap(),
        Some(cert.to_pem().unwrap()),
        "the tls-alpn-01 certificate"
    );
    assert_eq!(
        reader.lookup("c.test", "nothing.txt").unwrap(),
        None,
        "unknown file"
    );
    assert_eq!(
        reader.lookup("unknown.test", "acme-http-01.txt").unwrap(),
        None,
        "unknown domain"
    );
    let other = ChallengeReader::new(&pg.settings(&db, "r", OTHER_KEY, LEASE)).unwrap();
    assert!(
        other
            .lookup("c.test", "acme-tls-alpn-01-privkey.pem")
            .is_err(),
        "a reader with another key cannot decrypt the shared key"
    );

    // sharing again replaces the domain's files
    a.share_challenge(
        "c.test",
        &[("acme-http-01.txt".into(), b"second.token".to_vec())],
    )
    .unwrap();
    assert_eq!(
        reader.lookup("c.test", "acme-http-01.txt").unwrap(),
        Some(b"second.token".to_vec())
    );
    assert_eq!(
        reader
            .lookup("c.test", "acme-tls-alpn-01-privkey.pem")
            .unwrap(),
        None,
        "files of the earlier share are gone"
    );

    // challenges older than a day are removed by a node's first refresh (then hourly)
    a.share_challenge("old.test", &[("acme-http-01.txt".into(), b"old".to_vec())])
        .unwrap();
    admin
        .execute(
            "UPDATE md_rs_challenge SET created = now() - interval '2 days' \
             WHERE domain = 'old.test'",
            &[],
        )
        .unwrap();
    a.refresh().unwrap();
    assert_eq!(
        reader.lookup("old.test", "acme-http-01.txt").unwrap(),
        Some(b"old".to_vec()),
        "a node purges at most hourly"
    );
    pg.cluster(&db, "node-c", LEASE).refresh().unwrap();
    assert_eq!(
        reader.lookup("old.test", "acme-http-01.txt").unwrap(),
        None,
        "a day-old challenge is gone after a refresh"
    );
    assert!(
        reader
            .lookup("c.test", "acme-http-01.txt")
            .unwrap()
            .is_some(),
        "a recent challenge stays"
    );
}

/// 5. TLS: verify-full with the right and a wrong root, a TLS-only role without TLS, require
///    without a root, a client certificate.
fn tls(pg: &Server) {
    let db = pg.database("tls", "md_tls");
    let base = |user: &str| {
        format!(
            "host=127.0.0.1 port={} dbname={db} user={user} password={}",
            pg.port, pg.tls_password
        )
    };
    let connect =
        |conninfo: &str| -> Result<postgres::Client, String> { Target::parse(conninfo)?.connect() };
    let ssl_in_use = |c: &mut postgres::Client| -> bool {
        c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let ca = pg.pki.ca.display();
    let other = pg.pki.other_ca.display();

    // verify-full, the right root, host 127.0.0.1 (an IP SAN)
    let full = format!("{} sslmode=verify-full sslrootcert={ca}", base("md_tls"));
    let mut c = connect(&full)
        .unwrap_or_else(|e| panic!("verify-full with the server's CA must connect: {e}"));
    assert!(ssl_in_use(&mut c), "verify-full: the connection uses TLS");
    drop(c);
    // and a whole node works over it
    let settings = ClusterSettings {
        conninfo: full.clone(),
        ..pg.settings(&db, "t", KEY, LEASE)
    };
    let node = PgCluster::new(settings.clone()).unwrap();
    node.refresh()
        .expect("a node over verify-full (TLS-only role) creates the schema");
    let l = expect_held(node.acquire("tls", None), "acquire over verify-full");
    drop(l);
    node.share_challenge("t.test", &[("acme-http-01.txt".into(), b"t".to_vec())])
        .unwrap();
    let reader = ChallengeReader::new(&settings).unwrap();
    assert_eq!(
        reader.lookup("t.test", "acme-http-01.txt").unwrap(),
        Some(b"t".to_vec()),
        "a reader over verify-full"
    );

    // the same as a URL (the root's path percent-encoded)
    let url = format!(
        "postgresql://md_tls:{}@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={}",
        pg.tls_password,
        pg.port,
        pg.pki.ca.display().to_string().replace('/', "%2F")
    );
    connect(&url).unwrap_or_else(|e| panic!("verify-full as a URL must connect: {e}"));

    // verify-full with a root that did not sign the server's certificate
    let e = connect(&format!(
        "{} sslmode=verify-full sslrootcert={other}",
        base("md_tls")
    ))
    .err()
    .expect("verify-full with a wrong root must be refused");
    let low = e.to_lowercase();
    assert!(
        low.contains("certificate") || low.contains("verify"),
        "the wrong-root error mentions the certificate or its verification: {e}"
    );
    // verify-ca too
    connect(&format!(
        "{} sslmode=verify-ca sslrootcert={other}",
        base("md_tls")
    ))
    .err()
    .expect("verify-ca with a wrong root must be refused");

    // verify-full checks the name: "localhost" is not in the certificate (IP 127.0.0.1 is);
    // verify-ca does not check it
    let by_name = |mode: &str| {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} dbname={db} user=md_tls password={} \
             sslmode={mode} sslrootcert={ca}",
            pg.port, pg.tls_password
        )
    };
    let e = connect(&by_name("verify-full"))
        .err()
        .expect("verify-full for a name the certificate does not have must be refused");
    assert!(
        e.to_lowercase().contains("certificate") || e.to_lowercase().contains("verify"),
        "the name mismatch error: {e}"
    );
    connect(&by_name("verify-ca"))
        .unwrap_or_else(|e| panic!("verify-ca ignores the name, must connect: {e}"));

    // the TLS-only role without TLS
    let e = connect(&format!("{} sslmode=disable", base("md_tls")))
        .err()
        .expect("sslmode=disable for a hostssl-only role must be refused");
    assert!(
        e.contains("pg_hba.conf") || e.contains("no encryption"),
        "the refusal is pg_hba's: {e}"
    );

    // require: encrypted, not authenticated (no root needed)
    let mut c = connect(&format!("{} sslmode=require", base("md_tls")))
        .unwrap_or_else(|e| panic!("sslmode=require without a root must connect: {e}"));
    assert!(ssl_in_use(&mut c), "require: TLS in use");
    // the default (prefer) takes TLS when the server offers it
    let mut c = connect(&pg.conninfo("postgres"))
        .unwrap_or_else(|e| panic!("the md role with the default sslmode: {e}"));
    assert!(
        ssl_in_use(&mut c),
        "sslmode prefer (the default): TLS in use"
    );
    let mut c = connect(&format!("{} sslmode=disable", pg.conninfo("postgres")))
        .unwrap_or_else(|e| panic!("the md role without TLS (a host line): {e}"));
    assert!(!ssl_in_use(&mut c), "sslmode=disable: no TLS");

    // a client certificate (pg_hba `cert`: no password)
    let cert_conn = format!(
        "host=127.0.0.1 port={} dbname={db} user=md_cert sslmode=verify-full \
         sslrootcert={ca} sslcert={} sslkey={}",
        pg.port,
        pg.pki.client_cert.display(),
        pg.pki.client_key.display()
    );
    connect(&cert_conn).unwrap_or_else(|e| panic!("a client certificate must connect: {e}"));
    let e = connect(&format!(
        "host=127.0.0.1 port={} dbname={db} user=md_cert sslmode=verify-full sslrootcert={ca}",
        pg.port
    ))
    .err()
    .expect("the cert role without a client certificate must be refused");
    assert!(!e.is_empty());
}

/// The database goes away (last: it stops the server) and comes back.
fn database_down(pg: &mut Server) {
    let db = pg.database("down", "md");
    let a = pg.cluster(&db, "a", LEASE);
    a.refresh().unwrap();
    publish_new(&a, "d1", None);
    a.share_challenge("d.test", &[("acme-http-01.txt".into(), b"d".to_vec())])
        .unwrap();
    let reader = ChallengeReader::new(&pg.settings(&db, "r", KEY, LEASE)).unwrap();
    // connected before the outage, unused during it
    let idle_reader = ChallengeReader::new(&pg.settings(&db, "r", KEY, LEASE)).unwrap();
    assert!(reader
        .lookup("d.test", "acme-http-01.txt")
        .unwrap()
        .is_some());
    assert!(idle_reader
        .lookup("d.test", "acme-http-01.txt")
        .unwrap()
        .is_some());
    let idle_node = pg.cluster(&db, "i", LEASE);
    idle_node.refresh().unwrap();

    pg.stop();
    let t = Instant::now();
    let e = reader
        .lookup("d.test", "acme-http-01.txt")
        .expect_err("lookup with the database stopped");
    let first = t.elapsed();
    assert!(!e.is_empty());
    let t = Instant::now();
    let e = reader
        .lookup("d.test", "acme-http-01.txt")
        .expect_err("the second lookup with the database stopped");
    let second = t.elapsed();
    assert!(
        second < Duration::from_secs(1),
        "the second lookup must not wait for the database (backoff): {second:?}"
    );
    assert!(
        e.contains("unavailable"),
        "the backoff says the database was unavailable: {e}"
    );
    eprintln!("   lookups with the database down: first {first:?}, second {second:?}");

    let t = Instant::now();
    a.refresh().expect_err("refresh with the database stopped");
    let e = a
        .acquire("d1", None)
        .err()
        .expect("acquire after a failed refresh must fail");
    assert!(
        e.contains("did not answer"),
        "acquire after a failed refresh fails at once: {e}"
    );
    a.fetch("d1")
        .expect_err("fetch after a failed refresh must fail");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a refused connection fails fast: {:?}",
        t.elapsed()
    );

    // back: a fresh reader and the nodes work again
    pg.start();
    let fresh = ChallengeReader::new(&pg.settings(&db, "r", KEY, LEASE)).unwrap();
    assert_eq!(
        fresh.lookup("d.test", "acme-http-01.txt").unwrap(),
        Some(b"d".to_vec()),
        "a new reader after the restart"
    );
    assert!(
        reader.lookup("d.test", "acme-http-01.txt").is_err(),
        "the reader that failed keeps its backoff"
    );
    assert_eq!(
        idle_reader
            .lookup("d.test", "acme-http-01.txt")
            .unwrap_or_else(|e| panic!(
                "a reader connected before the restart must reconnect, not fail: {e}"
            )),
        Some(b"d".to_vec())
    );
    idle_node
        .refresh()
        .unwrap_or_else(|e| panic!("a node whose pooled connection predates the restart: {e}"));
    a.refresh()
        .unwrap_or_else(|e| panic!("the node that saw the outage, after the restart: {e}"));
    expect_held(
        a.acquire("d1", a.published("d1").map(|p| p.fence)),
        "after the restart",
    );
}

// ---- the test ------------------------------------------------------------------------------------

#[test]
fn postgres_backend() {
    let started = Instant::now();
    let mut pg = Server::new();
    eprintln!(
        "postgres up on 127.0.0.1:{} in {:?}",
        pg.port,
        started.elapsed()
    );
    let mut failed: Vec<String> = Vec::new();
    let mut case = |name: &str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        eprintln!("-- {name}");
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => eprintln!("   ok ({:?})", t.elapsed()),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("   FAILED ({:?})", t.elapsed());
                failed.push(format!("{name}: {msg}"));
            }
        }
    };
    case("schema", &mut || schema(&pg));
    case("leases and fencing", &mut || leases(&pg));
    case("keep_until vs. heartbeat", &mut || {
        keep_until_vs_heartbeat(&pg)
    });
    case("publish and fetch", &mut || publish_fetch(&pg));
    case("challenges", &mut || challenges(&pg));
    case("tls", &mut || tls(&pg));
    case("database down", &mut || database_down(&mut pg));
    let log = pg.log_tail();
    drop(pg);
    eprintln!("total {:?}", started.elapsed());
    assert!(
        failed.is_empty(),
        "{} sub-case(s) failed:\n{}\n--- postgres.log (tail):\n{log}",
        failed.len(),
        failed.join("\n")
    );
}
