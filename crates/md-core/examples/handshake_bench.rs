//! Benchmark client: full TLS handshakes per second against one server, always asking for an
//! OCSP staple (the `status_request` extension), as test/bench/stapling.py needs it (python's
//! `ssl` cannot send status_request, and without it mod_ssl never calls the stapling hook).
//!
//! `cargo run --release -p md-core --example handshake_bench -- --port P [--host 127.0.0.1]
//! [--sni NAME] [--threads T] [--seconds D] [--tls 1.2|1.3]`
//!
//! Each iteration: a new TCP connection, a new `Ssl` (no session set, so no resumption), a full
//! handshake with status_request, a look at the stapled response, close_notify, close. The
//! server certificate is not verified (the script checks the staple with `openssl s_client
//! -status` before measuring). Prints one JSON line:
//! `{"handshakes":N,"seconds":S,"per_second":R,"stapled":K,"errors":E,"first_error":"..."}`
//! where `stapled` counts handshakes that carried an OCSP response.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion, StatusType};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let host = arg(&args, "--host", "127.0.0.1");
    let port: u16 = arg(&args, "--port", "0").parse().expect("--port P");
    assert!(port != 0, "--port P is required");
    let sni = arg(&args, "--sni", "localhost");
    let threads: usize = arg(&args, "--threads", "2").parse().expect("--threads T");
    let seconds: f64 = arg(&args, "--seconds", "5").parse().expect("--seconds D");
    let tls = arg(&args, "--tls", "");

    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("SSL_CTX");
    b.set_verify(SslVerifyMode::NONE);
    match tls.as_str() {
        "1.2" => b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap(),
        "1.3" => b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap(),
        _ => {}
    }
    let connector = Arc::new(b.build());

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let stapled = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let addr = format!("{host}:{port}");

    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (connector, stop, done, stapled, errors, first_error, addr, sni) = (
                connector.clone(),
                stop.clone(),
                done.clone(),
                stapled.clone(),
                errors.clone(),
                first_error.clone(),
                addr.clone(),
                sni.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = (|| -> Result<bool, String> {
                        let tcp = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
                        tcp.set_nodelay(true).ok();
                        let mut cfg = connector.configure().map_err(|e| e.to_string())?;
                        cfg.set_verify_hostname(false);
                        cfg.set_status_type(StatusType::OCSP)
                            .map_err(|e| e.to_string())?;
                        let mut s = cfg.connect(&sni, tcp).map_err(|e| e.to_string())?;
                        let got = s.ssl().ocsp_status().is_some_and(|r| !r.is_empty());
                        let _ = s.shutdown();
                        Ok(got)
                    })();
                    match r {
                        Ok(got) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            if got {
                                stapled.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let fe = first_error.lock().unwrap().clone().unwrap_or_default();
    println!(
        "{{\"handshakes\":{n},\"seconds\":{elapsed:.3},\"per_second\":{:.1},\"stapled\":{},\
         \"errors\":{},\"first_error\":{:?}}}",
        n as f64 / elapsed,
        stapled.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        fe
    );
}
