//! Benchmark: certificates per second and ACME requests per certificate against a local
//! pebble (PEBBLE_VA_NOSLEEP=1, no nonce rejection), via http-01.
//!
//! `cargo run --release -p md-core --example acme_bench -- [--certs N] [--threads T]
//! [--names K] [--key rsa2048|rsa3072|p256]`
//!
//! Reports, per certificate: HTTP requests sent by the client (the C mod_md needs about 13,
//! TESTING.md), wall time, and the one-off cost of directory + account registration.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use md_core::acme::{AcmeClient, CertificateRequest, ChallengeType, NewAccount};
use md_core::crypt::{EcCurve, KeyType, PrivateKey};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let certs: usize = arg(&args, "--certs", "20").parse().expect("--certs N");
    let threads: usize = arg(&args, "--threads", "1").parse().expect("--threads T");
    let names: usize = arg(&args, "--names", "1").parse().expect("--names K");
    let kt = match arg(&args, "--key", "rsa2048").as_str() {
        "rsa3072" => KeyType::Rsa(3072),
        "p256" => KeyType::Ec(EcCurve::P256),
        _ => KeyType::Rsa(2048),
    };
    let pebble = common::Pebble::start_with(common::PebbleOptions {
        nonce_reject: Some(0),
        ..Default::default()
    });

    let t0 = Instant::now();
    let client = AcmeClient::connect(pebble.http_client(), &pebble.directory_url).unwrap();
    let akey = PrivateKey::generate(KeyType::ACCOUNT_DEFAULT).unwrap();
    let acct = client
        .register_account(
            &akey,
            &NewAccount {
                contacts: vec!["bench@example.test".into()],
                agreement: Some("accepted".into()),
                eab: None,
            },
        )
        .unwrap();
    let setup_requests = client.request_count();
    let setup_time = t0.elapsed();
    let acct = md_core::acme::AccountKey::new(akey, acct.url);

    let per_thread = certs.div_ceil(threads);
    let start = Instant::now();
    let before = client.request_count();
    let responder = pebble.responder();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (client, acct, responder) = (&client, &acct, &responder);
            s.spawn(move || {
                for i in 0..per_thread {
                    let dom: Vec<String> = (0..names)
                        .map(|n| format!("n{n}.c{i}.t{t}.bench.test"))
                        .collect();
                    let key = PrivateKey::generate(kt).unwrap();
                    let mut req = CertificateRequest::new(dom);
                    req.challenges = vec![ChallengeType::Http01];
                    client
                        .obtain_certificate(acct, &key, &req, responder)
                        .expect("certificate");
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let issued = per_thread * threads;
    let reqs = client.request_count() - before;
    println!("acme_bench: pebble 2.4.0 on loopback, PEBBLE_VA_NOSLEEP=1, NONCEREJECT=0, http-01");
    println!(
        "setup (directory + newNonce + newAccount RSA-3072): {setup_requests} requests, {:.0} ms",
        setup_time.as_secs_f64() * 1000.0
    );
    println!(
        "certificates: {issued} ({names} name(s) each, key {kt:?}, {threads} thread(s)) in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!(
        "certificates/second: {:.2}",
        issued as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ms/certificate: {:.0}",
        elapsed.as_secs_f64() * 1000.0 / issued as f64
    );
    println!(
        "ACME requests/certificate: {:.2} (plus {setup_requests} once per account)",
        reqs as f64 / issued as f64
    );
    println!(
        "first certificate incl. setup: {:.2} requests",
        setup_requests as f64 + reqs as f64 / issued as f64
    );
}
