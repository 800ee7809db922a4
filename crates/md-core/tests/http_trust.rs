//! MDCACertificateFile replaces the system trust store (as libcurl's CAINFO does for the C
//! module) instead of adding to it. The "system store" is simulated with `SSL_CERT_FILE`,
//! which OpenSSL reads for its default verify paths; this file holds one test so that the
//! environment change touches nothing else.

#[path = "common/cmod.rs"]
mod cmod;

use std::process::Command;

use cmod::{free_port, run, Pebble, TempDir};
use md_core::http::{HttpClient, HttpConfig, HttpRequest, ReqwestClient};

fn get_directory(cfg: &HttpConfig, url: &str) -> Result<u16, String> {
    let c = ReqwestClient::new(cfg).map_err(|e| e.to_string())?;
    c.execute(&HttpRequest::get(url))
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

#[test]
fn ca_file_replaces_the_system_roots() {
    let t = TempDir::new("md-trust");
    let peb = Pebble::start(t.path(), free_port(), free_port());
    let url = format!("https://127.0.0.1:{}/dir", peb.port);
    // an unrelated CA: trusting only it must fail the handshake with pebble
    let other = t.path().join("other-ca.pem");
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        t.path().join("other-ca.key").to_str().unwrap(),
        "-out",
        other.to_str().unwrap(),
        "-subj",
        "/CN=unrelated test CA",
        "-days",
        "2",
    ]));
    // pebble's CA is "in the system store"
    std::env::set_var("SSL_CERT_FILE", &peb.ca_file);
    let system_only = HttpConfig::default();
    assert_eq!(
        get_directory(&system_only, &url),
        Ok(200),
        "system store is used"
    );
    let own = HttpConfig {
        ca_file: Some(other.clone()),
        ..Default::default()
    };
    let err = get_directory(&own, &url).expect_err("the system store must not be consulted");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let pebble_ca = HttpConfig {
        ca_file: Some(peb.ca_file.clone()),
        ..Default::default()
    };
    assert_eq!(get_directory(&pebble_ca, &url), Ok(200));
    // a proxy CA file alone adds to the system store
    let proxy_ca = HttpConfig {
        proxy_ca_file: Some(other),
        ..Default::default()
    };
    assert_eq!(get_directory(&proxy_ca, &url), Ok(200));
}
