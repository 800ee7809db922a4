//! Test harness: real pebble + pebble-challtestsrv on loopback with run-time ports, and
//! challenge responders (http-01 server, tls-alpn-01 acceptor, dns-01 via challtestsrv).
//!
//! Shared by the integration tests of md-core (ACME client now; store and renewal driver
//! later). Everything started here is stopped in `Drop`, by PID.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md_core::acme::{ChallengeMaterial, ChallengeResponder, ChallengeSetup, SetupError};
use md_core::crypt::{Certificate, EcCurve, KeyType, PrivateKey};
use md_core::http::{HttpClient, HttpConfig, HttpRequest, ReqwestClient};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::ssl::{AlpnError, NameType, SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

pub const PEBBLE: &str = "/usr/bin/pebble";
pub const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

/// A free loopback port (bind port 0, read it, release it). The small race with other
/// processes is handled by retrying the start with new ports.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings for one pebble instance.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `PEBBLE_WFE_NONCEREJECT`; `None` keeps pebble's default (5 %).
    pub nonce_reject: Option<u32>,
    /// `externalAccountBindingRequired` with these kid → hmac keys.
    pub eab_keys: Vec<(String, String)>,
    /// `domainBlocklist`.
    pub blocklist: Vec<String>,
    /// `PEBBLE_ALTERNATE_ROOTS`.
    pub alternate_roots: u32,
}

/// A child process killed (by PID) on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Running pebble + challtestsrv + responders.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub directory_url: String,
    pub mgmt_url: String,
    pub challtestsrv_url: String,
    /// PEM of the CA that signed pebble's listener certificate (MDCACertificateFile).
    pub ca_file: PathBuf,
    pub http01: HttpResponder,
    pub tlsalpn01: TlsAlpnResponder,
    // Field order: pebble is dropped (killed) before challtestsrv.
    pebble: ChildGuard,
    challtestsrv: ChildGuard,
}

fn make_name(cn: &str) -> openssl::x509::X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

fn random_serial() -> Asn1Integer {
    let mut s = BigNum::new().unwrap();
    s.rand(63, MsbOption::MAYBE_ZERO, false).unwrap();
    s.to_asn1_integer().unwrap()
}

/// Write a throw-away CA and a server certificate (IP SAN 127.0.0.1) for pebble's listener.
fn write_listener_certs(dir: &Path) -> PathBuf {
    let ca_key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&random_serial()).unwrap();
    let ca_name = make_name("md-core test CA");
    b.set_subject_name(&ca_name).unwrap();
    b.set_issuer_name(&ca_name).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.set_pubkey(ca_key.pkey()).unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.sign(ca_key.pkey(), MessageDigest::sha256()).unwrap();
    let ca = b.build();

    let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&random_serial()).unwrap();
    b.set_subject_name(&make_name("127.0.0.1")).unwrap();
    b.set_issuer_name(&ca_name).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.set_pubkey(key.pkey()).unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .dns("localhost")
        .build(&b.x509v3_context(Some(&ca), None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(ca_key.pkey(), MessageDigest::sha256()).unwrap();
    let cert = b.build();

    std::fs::write(dir.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("key.pem"), key.to_pem().unwrap()).unwrap();
    dir.join("ca.pem")
}

fn wait_until(deadline: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Pebble {
    /// Start pebble with default options.
    pub fn start() -> Pebble {
        Pebble::start_with(PebbleOptions::default())
    }

    /// Start challtestsrv, pebble and the responders. Panics (fails the test) when pebble is
    /// not installed or does not come up.
    pub fn start_with(opts: PebbleOptions) -> Pebble {
        assert!(
            Path::new(PEBBLE).exists() && Path::new(CHALLTESTSRV).exists(),
            "pebble is not installed (apt-get install pebble): these tests need it"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write_listener_certs(dir.path());
        let http01 = HttpResponder::start();
        let tlsalpn01 = TlsAlpnResponder::start();
        let mut last_err = String::new();
        let mut pending = Some((http01, tlsalpn01));
        for _attempt in 0..3 {
            let (http01, tlsalpn01) = pending.take().unwrap();
            match Pebble::try_start(&opts, dir.path(), &ca_file, &http01, &tlsalpn01) {
                Ok((pebble, challtestsrv, directory_url, mgmt_url, challtestsrv_url)) => {
                    return Pebble {
                        dir,
                        directory_url,
                        mgmt_url,
                        challtestsrv_url,
                        ca_file,
                        http01,
                        tlsalpn01,
                        pebble,
                        challtestsrv,
                    }
                }
                Err(e) => last_err = e,
            }
            pending = Some((http01, tlsalpn01));
        }
        panic!("pebble did not start: {last_err}");
    }

    #[allow(clippy::type_complexity)]
    fn try_start(
        opts: &PebbleOptions,
        dir: &Path,
        ca_file: &Path,
        http01: &HttpResponder,
        tlsalpn01: &TlsAlpnResponder,
    ) -> Result<(ChildGuard, ChildGuard, String, String, String), String> {
        let (p_acme, p_mgmt, p_dns, p_cts) = (free_port(), free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let cts = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{p_dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{p_cts}")])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::from(log("challtestsrv.err")))
            .spawn()
            .map_err(|e| format!("spawn challtestsrv: {e}"))?;
        let mut cts = ChildGuard(cts);
        let cts_url = format!("http://127.0.0.1:{p_cts}");
        let mut eab = serde_json::Map::new();
        for (k, v) in &opts.eab_keys {
            eab.insert(k.clone(), v.clone().into());
        }
        let cfg = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{p_acme}"),
            "managementListenAddress": format!("127.0.0.1:{p_mgmt}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http01.port,
            "tlsPort": tlsalpn01.port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !opts.eab_keys.is_empty(),
            "externalAccountMACKeys": eab,
            "domainBlocklist": opts.blocklist,
        }});
        let cfg_file = dir.join("pebble-config.json");
        std::fs::write(&cfg_file, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let mut cmd = Command::new(PEBBLE);
        cmd.arg("-config")
            .arg(&cfg_file)
            .args(["-dnsserver", &format!("127.0.0.1:{p_dns}")]);
        cmd.env("PEBBLE_VA_NOSLEEP", "1");
        if let Some(n) = opts.nonce_reject {
            cmd.env("PEBBLE_WFE_NONCEREJECT", n.to_string());
        }
        if opts.alternate_roots > 0 {
            cmd.env("PEBBLE_ALTERNATE_ROOTS", opts.alternate_roots.to_string());
        }
        let child = cmd
            .stdout(log("pebble.log"))
            .stderr(Stdio::from(log("pebble.err")))
            .spawn()
            .map_err(|e| format!("spawn pebble: {e}"))?;
        let mut pebble = ChildGuard(child);
        let directory_url = format!("https://127.0.0.1:{p_acme}/dir");
        let mgmt_url = format!("https://127.0.0.1:{p_mgmt}");
        let client = test_http_client(ca_file);
        let up = wait_until(Duration::from_secs(15), || {
            if matches!(pebble.0.try_wait(), Ok(Some(_))) || matches!(cts.0.try_wait(), Ok(Some(_)))
            {
                return true;
            }
            client
                .execute(&HttpRequest::get(&directory_url))
                .is_ok_and(|r| r.status == 200)
                && client.execute(&HttpRequest::get(&cts_url)).is_ok()
        });
        if !up
            || matches!(pebble.0.try_wait(), Ok(Some(_)))
            || matches!(cts.0.try_wait(), Ok(Some(_)))
        {
            let plog = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
            return Err(format!("not ready; pebble log:\n{plog}"));
        }
        Ok((pebble, cts, directory_url, mgmt_url, cts_url))
    }

    /// A real transport trusting pebble's listener CA.
    pub fn http_client(&self) -> Arc<dyn HttpClient> {
        Arc::new(test_http_client(&self.ca_file))
    }

    /// pebble's root (and alternate roots) from the management interface.
    pub fn roots(&self) -> Vec<Certificate> {
        let c = test_http_client(&self.ca_file);
        let mut out = Vec::new();
        for i in 0..4 {
            match c.execute(&HttpRequest::get(&format!("{}/roots/{i}", self.mgmt_url))) {
                Ok(r) if r.status == 200 => out.push(Certificate::from_pem(&r.body).unwrap()),
                _ => break,
            }
        }
        assert!(!out.is_empty(), "pebble served no roots");
        out
    }

    /// pebble's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// A responder answering all three challenge types.
    pub fn responder(&self) -> TestResponder<'_> {
        TestResponder {
            pebble: self,
            setups: Mutex::new(Vec::new()),
            teardowns: Mutex::new(0),
        }
    }

    fn challtestsrv_post(&self, path: &str, body: serde_json::Value) -> Result<(), String> {
        let c = test_http_client(&self.ca_file);
        let req = HttpRequest::post(
            &format!("{}{path}", self.challtestsrv_url),
            "application/json",
            body.to_string().into_bytes(),
        );
        match c.execute(&req) {
            Ok(r) if r.is_success() => Ok(()),
            Ok(r) => Err(format!("challtestsrv {path}: HTTP {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }
}

pub fn test_http_client(ca_file: &Path) -> ReqwestClient {
    let cfg = HttpConfig {
        ca_file: Some(ca_file.to_path_buf()),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    ReqwestClient::new(&cfg).unwrap()
}

/// Answers challenges through the pebble test servers; counts setups and teardowns.
pub struct TestResponder<'a> {
    pebble: &'a Pebble,
    pub setups: Mutex<Vec<String>>,
    pub teardowns: Mutex<usize>,
}

impl ChallengeResponder for TestResponder<'_> {
    fn setup(&self, s: &ChallengeSetup) -> Result<(), SetupError> {
        match &s.material {
            ChallengeMaterial::Http01 { content } => {
                self.pebble
                    .http01
                    .tokens
                    .lock()
                    .unwrap()
                    .insert(s.token.clone(), content.clone());
            }
            ChallengeMaterial::TlsAlpn01 { cert, key } => {
                let mut m = self.pebble.tlsalpn01.certs.lock().unwrap();
                m.insert(s.domain.clone(), (cert.clone(), key.clone()));
            }
            ChallengeMaterial::Dns01 { record_name, value } => {
                self.pebble
                    .challtestsrv_post(
                        "/set-txt",
                        serde_json::json!({"host": format!("{record_name}."), "value": value}),
                    )
                    .map_err(SetupError::Failed)?;
            }
        }
        self.setups.lock().unwrap().push(s.record());
        Ok(())
    }

    fn teardown(&self, s: &ChallengeSetup) {
        match &s.material {
            ChallengeMaterial::Http01 { .. } => {
                self.pebble.http01.tokens.lock().unwrap().remove(&s.token);
            }
            ChallengeMaterial::TlsAlpn01 { .. } => {
                self.pebble
                    .tlsalpn01
                    .certs
                    .lock()
                    .unwrap()
                    .remove(&s.domain);
            }
            ChallengeMaterial::Dns01 { record_name, .. } => {
                let _ = self.pebble.challtestsrv_post(
                    "/clear-txt",
                    serde_json::json!({"host": format!("{record_name}.")}),
                );
            }
        }
        *self.teardowns.lock().unwrap() += 1;
    }
}

/// Stops an accept loop: set the flag, then connect once to wake `accept`.
struct Stopper {
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tiny http-01 server: GET /.well-known/acme-challenge/<token>.
pub struct HttpResponder {
    pub port: u16,
    pub tokens: Arc<Mutex<HashMap<String, String>>>,
    _stopper: Stopper,
}

fn serve_http(mut s: TcpStream, tokens: &Mutex<HashMap<String, String>>) {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain headers.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let body = path
        .strip_prefix("/.well-known/acme-challenge/")
        .and_then(|t| tokens.lock().unwrap().get(t).cloned());
    let resp = match body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let _ = s.write_all(resp.as_bytes());
    let _ = s.shutdown(Shutdown::Both);
}

impl HttpResponder {
    pub fn start() -> HttpResponder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (t2, s2) = (tokens.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let t3 = t2.clone();
                    std::thread::spawn(move || serve_http(c, &t3));
                }
            }
        });
        HttpResponder {
            port,
            tokens,
            _stopper: Stopper {
                stop,
                port,
                thread: Some(thread),
            },
        }
    }
}

/// A tls-alpn-01 acceptor: ALPN acme-tls/1, certificate chosen by SNI.
pub struct TlsAlpnResponder {
    pub port: u16,
    pub certs: Arc<Mutex<HashMap<String, (Certificate, PrivateKey)>>>,
    _stopper: Stopper,
}

impl TlsAlpnResponder {
    pub fn start() -> TlsAlpnResponder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let certs: Arc<Mutex<HashMap<String, (Certificate, PrivateKey)>>> = Arc::default();
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_alpn_select_callback(|_, client| {
            openssl::ssl::select_next_proto(b"\x0aacme-tls/1", client).ok_or(AlpnError::NOACK)
        });
        let c2 = certs.clone();
        b.set_servername_callback(move |ssl, _alert| {
            let name = ssl
                .servername(NameType::HOST_NAME)
                .unwrap_or("")
                .to_string();
            let found = c2.lock().unwrap().get(&name).cloned();
            if let Some((cert, key)) = found {
                ssl.set_certificate(cert.x509())
                    .map_err(|_| openssl::ssl::SniError::ALERT_FATAL)?;
                ssl.set_private_key(key.pkey())
                    .map_err(|_| openssl::ssl::SniError::ALERT_FATAL)?;
                Ok(())
            } else {
                Err(openssl::ssl::SniError::ALERT_FATAL)
            }
        });
        let acceptor = Arc::new(b.build());
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let a = acceptor.clone();
                    std::thread::spawn(move || {
                        c.set_read_timeout(Some(Duration::from_secs(5))).ok();
                        if let Ok(mut tls) = a.accept(c) {
                            // The validator only needs the handshake; wait for it to close.
                            let mut buf = [0u8; 64];
                            let _ = tls.read(&mut buf);
                            let _ = tls.shutdown();
                        }
                    });
                }
            }
        });
        TlsAlpnResponder {
            port,
            certs,
            _stopper: Stopper {
                stop,
                port,
                thread: Some(thread),
            },
        }
    }
}
