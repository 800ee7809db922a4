//! OCSP requests and response checks (md_core::ocsp) against OpenSSL's own OCSP responder.
//!
//! `openssl ocsp -port` (OpenSSL 3.0) binds the wildcard address only, and test servers must
//! listen on 127.0.0.1. So the test runs a loopback HTTP front on a run-time port that hands
//! each POSTed request to `openssl ocsp -index ... -CA ... -rsigner ... -rkey ... -reqin
//! -respout -nmin 5`: OpenSSL's responder code answers every request, one short process per
//! request (waited for, so none outlives the test), and a changed index.txt is seen at the next
//! request, as after a restart of a long-running responder. The front can also answer garbage
//! or an oversized body. The request goes through md-core's real HTTP client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::Utc;
use md_core::http::{HttpClient, HttpConfig, ReqwestClient};
use md_core::ocsp::{self, request, CertStatus, OcspError, StoredResponse};
use openssl::x509::X509;

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the front answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `openssl ocsp` with this responder certificate/key (file stems in the dir).
    Openssl(&'static str),
    Garbage,
    Oversized,
}

/// Loopback HTTP front; stopped (flag + wake-up connection + join) on drop.
struct Front {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    fn start(listener: TcpListener, dir: PathBuf) -> Front {
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Openssl("ca")));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mode.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mode = *m.lock().unwrap();
                serve(&dir, &mut conn, mode);
            }
        });
        Front {
            port,
            mode,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(dir: &Path, conn: &mut TcpStream, mode: Mode) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let Ok(n) = conn.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let Ok(n) = conn.read(&mut chunk) else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            break buf[end + 4..end + 4 + len].to_vec();
        }
    };
    let answer = match mode {
        Mode::Garbage => b"this is not an OCSP response".to_vec(),
        Mode::Oversized => vec![0x30; ocsp::MAX_RESPONSE_BYTES + 1],
        Mode::Openssl(signer) => {
            let req = dir.join("req.der");
            let resp = dir.join("resp.der");
            std::fs::write(&req, &body).unwrap();
            let _ = std::fs::remove_file(&resp);
            let (cert, key) = (format!("{signer}.pem"), format!("{signer}.key"));
            let args = [
                "ocsp",
                "-index",
                "index.txt",
                "-CA",
                "ca.pem",
                "-rsigner",
                &cert,
                "-rkey",
                &key,
                "-reqin",
                "req.der",
                "-respout",
                "resp.der",
                "-nmin",
                "5",
            ];
            run(dir, &args);
            std::fs::read(&resp).unwrap()
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&answer);
}

struct Pki {
    dir: tempfile::TempDir,
    ca: X509,
    leaf: X509,
    stranger: X509,
}

const INDEX_GOOD: &str = "V\t301231000000Z\t\t1001\tunknown\t/CN=leaf.test\n";
const INDEX_REVOKED: &str = "R\t301231000000Z\t261101000000Z\t1001\tunknown\t/CN=leaf.test\n";

/// A CA, a leaf (serial 1001, in the index) and a stranger (serial 1002, not in the index),
/// both with the OCSP URL `url` in their AIA; a delegated responder (OCSP signing EKU) signed
/// by the CA, and a rogue responder from another CA.
fn make_pki(url: &str) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_ext = [
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ];
    for (stem, cn) in [("ca", "/CN=Test CA"), ("rogueca", "/CN=Rogue CA")] {
        let (key, pem) = (format!("{stem}.key"), format!("{stem}.pem"));
        let mut args = vec![
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
            "-subj", cn, "-days", "2",
        ];
        args.extend(ca_ext);
        run(d, &args);
    }
    std::fs::write(
        d.join("leaf.ext"),
        format!("authorityInfoAccess=OCSP;URI:{url}\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("delegate.ext"),
        "extendedKeyUsage=OCSPSigning\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    for (stem, cn, ca, serial, ext) in [
        ("leaf", "/CN=leaf.test", "ca", "0x1001", "leaf.ext"),
        ("stranger", "/CN=stranger.test", "ca", "0x1002", "leaf.ext"),
        ("delegate", "/CN=Test OCSP", "ca", "0x2001", "delegate.ext"),
        (
            "rogue",
            "/CN=Rogue OCSP",
            "rogueca",
            "0x3001",
            "delegate.ext",
        ),
    ] {
        let (key, csr, pem) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        run(
            d,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", cn,
            ],
        );
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        run(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-set_serial",
                serial,
                "-days",
                "1",
                "-extfile",
                ext,
                "-out",
                &pem,
            ],
        );
    }
    std::fs::write(d.join("index.txt"), INDEX_GOOD).unwrap();
    let load = |f: &str| X509::from_pem(&std::fs::read(d.join(f)).unwrap()).unwrap();
    Pki {
        ca: load("ca.pem"),
        leaf: load("leaf.pem"),
        stranger: load("stranger.pem"),
        dir,
    }
}

/// POST a fresh query for `cert` and return (query, body).
fn fetch(client: &dyn HttpClient, cert: &X509, issuer: &X509) -> (ocsp::OcspQuery, Vec<u8>) {
    let urls = ocsp::responder_urls(cert);
    assert_eq!(urls.len(), 1, "the certificate carries one OCSP URL");
    let query = ocsp::build_request(cert, issuer).unwrap();
    let resp = client
        .execute(&ocsp::http_request(&urls[0], &query))
        .expect("responder answers");
    assert_eq!(resp.status, 200);
    (query, resp.body)
}

#[test]
fn responses_from_openssl_ocsp() {
    // The certificates need the URL, the front needs their directory: bind the port first.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let pki = make_pki(&url);
    let front = Front::start(listener, pki.dir.path().to_path_buf());
    assert_eq!(front.url(), url);
    let client = ReqwestClient::new(&HttpConfig::default()).unwrap();
    // The POSTs go to the URL in each certificate's AIA.
    let post = |cert: &X509| fetch(&client, cert, &pki.ca);
    let now = Utc::now();

    // The request carries our nonce, and the responder (OpenSSL) echoes it.
    let req =
        openssl::ocsp::OcspRequest::from_der(&ocsp::build_request(&pki.leaf, &pki.ca).unwrap().der);
    assert!(
        req.is_ok(),
        "the request with the nonce extension is valid DER for OpenSSL"
    );
    assert_eq!(ocsp::responder_urls(&pki.leaf).len(), 1);

    // good
    let (q, body) = post(&pki.leaf);
    let ok = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), now).unwrap();
    assert_eq!(ok.status, CertStatus::Good);
    assert_eq!(ok.der, body);
    let life = ok.valid.until - ok.valid.from;
    assert_eq!(
        life.num_minutes(),
        5,
        "-nmin 5 gives nextUpdate = thisUpdate + 5 min"
    );
    assert!((ok.valid.from - now).num_seconds().abs() < 120);
    // The stored record round-trips and renews at 33 % before nextUpdate.
    let stored = StoredResponse::parse(&ok.to_json_string()).unwrap();
    assert_eq!(stored, ok);
    // ... and through the file store, under the certificate's id
    let store_dir = tempfile::tempdir().unwrap();
    let store = md_core::store::FsStore::open(store_dir.path(), Default::default()).unwrap();
    let id = ocsp::cert_id(&pki.leaf).unwrap();
    ocsp::stored::save(&store, Some("leaf.test"), &id, &ok).unwrap();
    assert!(store_dir
        .path()
        .join(ocsp::response_store_path(Some("leaf.test"), &id))
        .is_file());
    assert_eq!(
        ocsp::stored::load(&store, Some("leaf.test"), &id).unwrap(),
        Some(ok.clone())
    );
    assert_eq!(
        (stored.valid.until - stored.renew_at(&ocsp::stored::DEFAULT_RENEW_WINDOW)).num_seconds(),
        300 * 33 / 100
    );

    // a nonce mismatch: the body echoes the request's nonce, we expect another one
    let other = vec![0x42; request::NONCE_LEN];
    let err = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&other), now).unwrap_err();
    assert!(matches!(err, OcspError::NonceMismatch), "{err}");
    // a response without a nonce is accepted
    let plain = request::build_request_with_nonce(&pki.leaf, &pki.ca, None).unwrap();
    let resp = client
        .execute(&md_core::http::HttpRequest::post(
            &url,
            "application/ocsp-request",
            plain,
        ))
        .unwrap();
    let ok = ocsp::check_response(&resp.body, &pki.leaf, &pki.ca, Some(&other), now).unwrap();
    assert_eq!(ok.status, CertStatus::Good);

    // the response is for the leaf, not for the stranger
    let err = ocsp::check_response(&body, &pki.stranger, &pki.ca, Some(&q.nonce), now).unwrap_err();
    assert!(matches!(err, OcspError::NoStatusForCert), "{err}");

    // past nextUpdate it is refused
    let later = now + chrono::Duration::minutes(10);
    let err = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), later).unwrap_err();
    assert!(matches!(err, OcspError::Validity(_)), "{err}");

    // unknown: a certificate not in the index
    let (q, body) = post(&pki.stranger);
    let err = ocsp::check_response(&body, &pki.stranger, &pki.ca, Some(&q.nonce), now).unwrap_err();
    assert!(matches!(err, OcspError::StatusUnknown), "{err}");

    // a delegated responder (signed by the CA, OCSP signing EKU) is accepted
    front.set(Mode::Openssl("delegate"));
    let (q, body) = post(&pki.leaf);
    let ok = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), now).unwrap();
    assert_eq!(ok.status, CertStatus::Good);
    // a responder of another CA is not
    front.set(Mode::Openssl("rogue"));
    let (q, body) = post(&pki.leaf);
    let err = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), now).unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err}");

    // revoked, after marking the index line revoked
    front.set(Mode::Openssl("ca"));
    std::fs::write(pki.dir.path().join("index.txt"), INDEX_REVOKED).unwrap();
    let (q, body) = post(&pki.leaf);
    let ok = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), now).unwrap();
    assert_eq!(ok.status, CertStatus::Revoked);
    assert_eq!(
        StoredResponse::parse(&ok.to_json_string()).unwrap().status,
        CertStatus::Revoked
    );

    // garbage
    front.set(Mode::Garbage);
    let (q, body) = post(&pki.leaf);
    let err = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), now).unwrap_err();
    assert!(matches!(err, OcspError::Unparseable(_)), "{err}");

    // oversized: refused by the check, and by a transport bounded the same way
    front.set(Mode::Oversized);
    let (q, body) = post(&pki.leaf);
    assert_eq!(body.len(), ocsp::MAX_RESPONSE_BYTES + 1);
    let err = ocsp::check_response(&body, &pki.leaf, &pki.ca, Some(&q.nonce), now).unwrap_err();
    assert!(matches!(err, OcspError::TooLarge { .. }), "{err}");
    let bounded = ReqwestClient::new(&HttpConfig {
        max_body: ocsp::MAX_RESPONSE_BYTES,
        ..HttpConfig::default()
    })
    .unwrap();
    let query = ocsp::build_request(&pki.leaf, &pki.ca).unwrap();
    assert!(bounded.execute(&ocsp::http_request(&url, &query)).is_err());

    drop(front);
    // the front is gone: nothing answers any more
    assert!(client.execute(&ocsp::http_request(&url, &query)).is_err());
}

/// The watchdog's pass over a registry: a good response is stored, used and recorded in
/// `ocsp/<md>/job.json`; a bad answer later (garbage, oversized, responder gone) stores
/// nothing, keeps the response in use, counts errors with backoff and records `ocsp-error`.
#[test]
fn watchdog_pass_stores_good_answers_and_keeps_them_through_bad_ones() {
    use md_core::ocsp::{OcspRegistry, OcspWatch, Staple, StapledCert};
    use md_core::store::{FsStore, Group, StoreExt};
    use std::time::Duration;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let pki = make_pki(&url);
    let front = Front::start(listener, pki.dir.path().to_path_buf());
    let store_dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(store_dir.path(), Default::default()).unwrap();
    // a window longer than the 5-minute responses: every pass finds the certificate due
    let window = md_core::time::Timeslice::Duration(Duration::from_secs(3600));
    let mut reg = OcspRegistry::new(store_dir.path().to_path_buf(), Some(window));
    let id = ocsp::cert_id(&pki.leaf).unwrap();
    let raw: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    reg.add(StapledCert::new(
        id.clone(),
        Some("leaf.test".into()),
        pki.leaf.clone(),
        pki.ca.clone(),
        url.clone(),
    ));
    let reg = Arc::new(reg);
    let watch = OcspWatch::new(reg.clone(), Duration::from_secs(5), Default::default());
    let client = ReqwestClient::new(&HttpConfig {
        max_body: ocsp::MAX_RESPONSE_BYTES,
        ..HttpConfig::default()
    })
    .unwrap();
    let log = md_core::log::NullSink;
    let never = || false;
    let job = || store.load_job(Group::Ocsp, "leaf.test").unwrap().unwrap();
    let types = |j: &md_core::store::JobRecord| -> Vec<String> {
        j.log.as_ref().unwrap()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    };

    let pause = watch.run_pass(&store, &client, &log, Utc::now(), &never);
    assert_eq!(pause, Duration::from_secs(1), "always due: the floor");
    let stored = ocsp::stored::load(&store, Some("leaf.test"), &id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CertStatus::Good);
    assert_eq!(
        reg.staple(&raw, Utc::now()),
        Staple::Response(stored.der.clone())
    );
    let j = job();
    assert!(j.finished && j.errors == 0 && j.next_run.is_none());
    assert_eq!(
        types(&j),
        [
            "message-ocsp-renewed",
            "finished",
            "progress",
            "progress",
            "progress",
            "starting"
        ]
    );
    assert!(j.last.as_ref().unwrap()["detail"]
        .as_str()
        .unwrap()
        .starts_with("certificate status is GOOD, status valid "));

    // garbage is read and refused (EINVAL); an oversized body is not read to its end (as the
    // C module, whose transfer is aborted: EGENERAL at "contacting")
    for (n, mode, status, step) in [
        (1, Mode::Garbage, 22, ", reading response"),
        (2, Mode::Oversized, 20014, ", contacting "),
    ] {
        front.set(mode);
        let pause = watch.run_pass(&store, &client, &log, Utc::now(), &never);
        assert_eq!(
            ocsp::stored::load(&store, Some("leaf.test"), &id)
                .unwrap()
                .as_ref(),
            Some(&stored),
            "nothing stored"
        );
        assert_eq!(
            reg.staple(&raw, Utc::now()),
            Staple::Response(stored.der.clone())
        );
        let j = job();
        assert_eq!(j.errors, n);
        assert!(j.finished && j.next_run.is_some());
        let last = j.last.as_ref().unwrap();
        assert_eq!(last["status"], status);
        assert!(last["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("OCSP status update failed ({n}. time): ")));
        assert!(last["activity"].as_str().unwrap().contains(step));
        // ocsp-errored is raised once an hour at most
        let expect: &[&str] = if n == 1 {
            &[
                "message-ocsp-errored",
                "ocsp-error",
                "finished",
                "progress",
                "progress",
                "starting",
            ]
        } else {
            &["ocsp-error", "finished", "progress", "starting"]
        };
        assert_eq!(types(&j)[..expect.len()], *expect);
        assert!(
            pause >= Duration::from_secs(1) && pause <= Duration::from_secs(20),
            "{pause:?}"
        );
    }
    // the responder gone: one more error, the response still in use
    drop(front);
    watch.run_pass(&store, &client, &log, Utc::now(), &never);
    let j = job();
    assert_eq!(j.errors, 3);
    assert_eq!(j.last.as_ref().unwrap()["status"], 111, "{:?}", j.last);
    assert_eq!(
        reg.staple(&raw, Utc::now()),
        Staple::Response(stored.der.clone())
    );
}
