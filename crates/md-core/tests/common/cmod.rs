//! Test harness for running Debian's C mod_md in a throw-away httpd against a local pebble.
//! Everything listens on 127.0.0.1, on ports picked at run time; every process started here is
//! stopped by PID when its handle is dropped. A missing tool fails the test (never skips).
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound to 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// A free UDP+TCP port (DNS).
pub fn free_dns_port() -> u16 {
    loop {
        let p = free_port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Run a command to completion, panicking with its output on failure or when it is missing.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temp directory removed on drop (mode 0755 so that www-data can traverse it).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Make `/tmp/<prefix>.<pid>.<n>`.
    pub fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "{prefix}.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A started process, stopped (TERM, then KILL) by PID on drop.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (is it installed?): {e}"));
        Proc { name, child }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn signal(&self, sig: &str) {
        run(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string()));
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// TERM and wait up to 15 s, then KILL.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Poll `f` every 100 ms until it is true; panic with `what` after `secs`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timeout: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True once a DNS A query for `name` is answered on 127.0.0.1:`port`.
fn dns_answers(port: u16, name: &str) -> bool {
    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    if s.send_to(&q, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(s.recv(&mut buf), Ok(n) if n > 12 && buf[7] > 0)
}

/// pebble + pebble-challtestsrv (DNS only) with a throw-away TLS CA.
pub struct Pebble {
    pub port: u16,
    pub ca_file: PathBuf,
    _chall: Proc,
    _pebble: Proc,
}

impl Pebble {
    /// Start pebble with validation ports `http_port`/`tls_port` (httpd's).
    pub fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        let d = dir.join("pebble-tls");
        fs::create_dir_all(&d).unwrap();
        let p = |f: &str| d.join(f).to_string_lossy().into_owned();
        run(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "30",
            "-subj",
            "/CN=md-core test pebble CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
        run(Command::new("openssl").args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("cert.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ]));
        fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            &p("cert.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("cert.pem"),
            "-days",
            "30",
            "-extfile",
            &p("ext.cnf"),
        ]));
        let (port, mgmt, dns, chall_mgmt) =
            (free_port(), free_port(), free_dns_port(), free_port());
        let conf = dir.join("pebble.json");
        fs::write(
            &conf,
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{port}",
  "managementListenAddress": "127.0.0.1:{mgmt}", "certificate": "{}", "privateKey": "{}",
  "httpPort": {http_port}, "tlsPort": {tls_port}, "ocspResponderURL": "",
  "externalAccountBindingRequired": false}}}}"#,
                p("cert.pem"),
                p("key.pem")
            ),
        )
        .unwrap();
        let log = |n: &str| fs::File::create(dir.join(n)).unwrap();
        let chall = Proc::spawn(
            "pebble-challtestsrv",
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err")),
        );
        let pebble = Proc::spawn(
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(&conf)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(log("pebble.log"))
                .stderr(log("pebble.err")),
        );
        let ca_file = d.join("ca.pem");
        wait_for(20, "pebble directory", || {
            Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--cacert"])
                .arg(&ca_file)
                .arg(format!("https://127.0.0.1:{port}/dir"))
                .status()
                .expect("curl is required")
                .success()
        });
        wait_for(20, "challtestsrv DNS", || dns_answers(dns, "a1.test"));
        Pebble {
            port,
            ca_file,
            _chall: chall,
            _pebble: pebble,
        }
    }
}

/// An httpd (Debian's apache2) with the C mod_md.
pub struct Httpd {
    pub dir: PathBuf,
    pub http_port: u16,
    pub tls_port: u16,
    pub proc: Option<Proc>,
}

impl Httpd {
    /// Prepare dirs; `start` writes the config and launches.
    pub fn new(dir: &Path, http_port: u16, tls_port: u16) -> Httpd {
        for d in ["logs", "run", "htdocs"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        Httpd {
            dir: dir.to_path_buf(),
            http_port,
            tls_port,
            proc: None,
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join("md")
    }

    /// Write httpd.conf for `mds` (name, extra lines inside `<MDomain>`) and start in the
    /// foreground. Waits until the http port answers.
    pub fn start(&mut self, pebble: &Pebble, mds: &[(&str, &str)]) {
        let dir = self.dir.display();
        let (hp, tp, pp) = (self.http_port, self.tls_port, pebble.port);
        let mut conf = format!(
            r#"ServerRoot "{dir}"
DefaultRuntimeDir "{dir}/run"
PidFile "{dir}/run/httpd.pid"
ServerName localhost
Listen 127.0.0.1:{hp}
Listen 127.0.0.1:{tp}
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
LoadModule md_module /usr/lib/apache2/modules/mod_md.so
User www-data
Group www-data
StartServers 1
ErrorLog "{dir}/logs/error.log"
LogLevel warn md:debug
DocumentRoot "{dir}/htdocs"
<Directory />
    Require all granted
</Directory>
SSLSessionCache shmcb:{dir}/run/ssl_scache(512000)
MDCertificateAuthority https://127.0.0.1:{pp}/dir
MDCertificateAgreement accepted
MDCACertificateFile "{ca}"
MDStoreDir "{dir}/md"
MDPortMap http:{hp} https:{tp}
MDCAChallenges http-01
MDContactEmail admin@store-test.example
MDRetryDelay 1s
<VirtualHost 127.0.0.1:{hp}>
    ServerName localhost
</VirtualHost>
"#,
            ca = pebble.ca_file.display()
        );
        // `name` may list several names: the first is the ServerName, the others aliases
        for (names, extra) in mds {
            let mut it = names.split_whitespace();
            let server_name = it.next().expect("an MD name");
            let aliases: Vec<&str> = it.collect();
            let alias = if aliases.is_empty() {
                String::new()
            } else {
                format!("    ServerAlias {}\n", aliases.join(" "))
            };
            conf.push_str(&format!(
                "<MDomain {names}>\n{extra}\n</MDomain>\n<VirtualHost 127.0.0.1:{tp}>\n    \
                 ServerName {server_name}\n{alias}    SSLEngine on\n</VirtualHost>\n"
            ));
        }
        let cf = self.dir.join("httpd.conf");
        fs::write(&cf, conf).unwrap();
        let out = fs::File::create(self.dir.join("logs/stdout.log")).unwrap();
        self.proc = Some(Proc::spawn(
            "apache2",
            Command::new("/usr/sbin/apache2")
                .arg("-d")
                .arg(&self.dir)
                .arg("-f")
                .arg(&cf)
                .args(["-D", "FOREGROUND"])
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        ));
        let port = self.http_port;
        let p = self.proc.as_mut().unwrap();
        wait_for(60, "httpd answering", || {
            assert!(p.alive(), "httpd exited, see {}/logs/error.log", dir);
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    pub fn graceful(&self) {
        self.proc.as_ref().expect("running").signal("USR1");
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    pub fn error_log(&self) -> String {
        let mut s = String::new();
        let _ = fs::File::open(self.dir.join("logs/error.log"))
            .and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// PEM of the leaf certificate served for SNI `name`.
    pub fn served_cert(&self, name: &str) -> String {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", self.tls_port),
            ])
            .args(["-servername", name])
            .stdin(Stdio::null())
            .output()
            .expect("openssl is required");
        let s = String::from_utf8_lossy(&out.stdout);
        let b = s
            .find("-----BEGIN CERTIFICATE-----")
            .expect("no certificate served");
        let e = s.find("-----END CERTIFICATE-----").unwrap() + 25;
        s[b..e].to_string()
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// uid/gid of www-data, from /etc/passwd.
pub fn www_data() -> (u32, u32) {
    let pw = fs::read_to_string("/etc/passwd").unwrap();
    let l = pw
        .lines()
        .find(|l| l.starts_with("www-data:"))
        .expect("user www-data must exist");
    let f: Vec<&str> = l.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// job.json in staging/<md> says finished with status 0.
pub fn staged_finished(store: &Path, md: &str) -> bool {
    let Ok(t) = fs::read(store.join("staging").join(md).join("job.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&t) else {
        return false;
    };
    v["finished"] == true && v["last"]["status"].as_i64().unwrap_or(0) == 0
}

/// Fail unless running as root (tests that chown, mount or act as www-data).
pub fn assert_root() {
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(uid.trim(), "0", "this test must run as root");
}

/// Run `sh -c script` as www-data in `dir`; true on exit 0.
pub fn as_www_data(dir: &Path, script: &str) -> bool {
    Command::new("runuser")
        .args(["-u", "www-data", "--", "sh", "-c", script])
        .current_dir(dir)
        .status()
        .expect("runuser is required")
        .success()
}
