//! Faults a real CA (pebble) cannot produce, through a fake transport and a raw TCP server:
//! rate limits and unavailability with Retry-After, broken and oversized bodies, a CA that
//! dies mid-order, badNonce storms, subproblems. Each must give a typed, classified error.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md_core::acme::{
    AccountKey, AcmeClient, AriError, CertificateRequest, ChallengeResponder, ChallengeSetup,
    ChallengeType, ClientOptions, DirectoryError, Identifier, NewOrder, OrderError, PollPolicy,
    RequestError, StatusClass,
};
use md_core::crypt::{EcCurve, KeyType, PrivateKey};
use md_core::http::{
    HttpClient, HttpConfig, HttpError, HttpRequest, HttpResponse, Method, ReqwestClient,
};
use serde_json::json;

const CA: &str = "https://ca.invalid";

type Fault = dyn Fn(&HttpRequest, usize) -> Option<Result<HttpResponse, HttpError>> + Send + Sync;

/// A scripted CA: serves a happy-path ACME server unless `fault` answers first. `n` counts
/// requests from 0.
struct FakeCa {
    fault: Box<Fault>,
    count: AtomicUsize,
    nonce: AtomicUsize,
}

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn json_resp(status: u16, extra: &[(&str, &str)], v: serde_json::Value) -> HttpResponse {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(extra);
    resp(status, &h, &v.to_string())
}

fn problem(status: u16, kind: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let mut h = vec![("Content-Type", "application/problem+json")];
    h.extend_from_slice(extra);
    let body = json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": kind});
    resp(status, &h, &body.to_string())
}

impl FakeCa {
    fn new(
        fault: impl Fn(&HttpRequest, usize) -> Option<Result<HttpResponse, HttpError>>
            + Send
            + Sync
            + 'static,
    ) -> Arc<FakeCa> {
        Arc::new(FakeCa {
            fault: Box::new(fault),
            count: AtomicUsize::new(0),
            nonce: 0.into(),
        })
    }

    fn happy(&self, req: &HttpRequest) -> HttpResponse {
        let path = req.url.strip_prefix(CA).unwrap_or(&req.url);
        match (req.method, path) {
            (Method::Get, "/dir") => json_resp(
                200,
                &[],
                json!({"newNonce": format!("{CA}/nonce"), "newAccount": format!("{CA}/acct"),
                       "newOrder": format!("{CA}/order"), "renewalInfo": format!("{CA}/ari")}),
            ),
            (Method::Head, "/nonce") => resp(200, &[], ""),
            (Method::Post, "/acct") => json_resp(
                201,
                &[("Location", &format!("{CA}/acct/1"))],
                json!({"status":"valid"}),
            ),
            (Method::Post, "/order") => json_resp(
                201,
                &[("Location", &format!("{CA}/order/1"))],
                json!({"status":"pending","identifiers":[{"type":"dns","value":"a.test"}],
                       "authorizations":[format!("{CA}/authz/1")],
                       "finalize": format!("{CA}/finalize/1")}),
            ),
            (Method::Post, "/authz/1") => json_resp(
                200,
                &[],
                json!({"status":"pending","identifier":{"type":"dns","value":"a.test"},
                       "challenges":[{"type":"http-01","url":format!("{CA}/chal/1"),
                                      "token":"tok","status":"pending"}]}),
            ),
            (Method::Post, "/chal/1") => json_resp(200, &[], json!({"status":"processing"})),
            (Method::Post, "/order/1") => json_resp(
                200,
                &[],
                json!({"status":"processing","authorizations":[],"finalize":""}),
            ),
            _ => resp(404, &[], ""),
        }
    }
}

impl HttpClient for FakeCa {
    fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        let mut r = match (self.fault)(req, n) {
            Some(r) => r?,
            None => self.happy(req),
        };
        let nonce = format!("nonce-{}", self.nonce.fetch_add(1, Ordering::SeqCst));
        r.headers.push(("Replay-Nonce".into(), nonce));
        Ok(r)
    }
}

fn path_is(req: &HttpRequest, p: &str) -> bool {
    req.url == format!("{CA}{p}")
}

fn account() -> AccountKey {
    AccountKey::new(
        PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap(),
        format!("{CA}/acct/1"),
    )
}

fn order_req() -> NewOrder {
    NewOrder {
        identifiers: vec![Identifier::from_name("a.test")],
        ..Default::default()
    }
}

fn connect(ca: &Arc<FakeCa>) -> AcmeClient {
    AcmeClient::connect(ca.clone(), &format!("{CA}/dir")).expect("directory")
}

#[test]
fn rate_limited_429_with_retry_after_seconds() {
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order").then(|| Ok(problem(429, "rateLimited", &[("Retry-After", "120")])))
    });
    let e = connect(&ca)
        .new_order(&account(), &order_req())
        .unwrap_err();
    assert!(
        matches!(&e, OrderError::Request(r) if r.is_rate_limited()),
        "{e:?}"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert!(e.is_retryable());
    assert!(!e.is_input_related());
    assert_eq!(e.problem().unwrap().kind(), "rateLimited");
}

#[test]
fn unavailable_503_with_retry_after_date() {
    let when = (chrono::Utc::now() + chrono::Duration::seconds(600)).to_rfc2822();
    let when2 = when.clone();
    let ca = FakeCa::new(move |req, _| {
        path_is(req, "/dir").then(|| Ok(resp(503, &[("Retry-After", &when2)], "down")))
    });
    let e = AcmeClient::connect(ca, &format!("{CA}/dir")).unwrap_err();
    assert!(matches!(e, DirectoryError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("Service is Unavailable (503)"));
    assert!(e.is_retryable());
    let ra = e.retry_after().expect("retry-after");
    assert!(
        ra > Duration::from_secs(590) && ra <= Duration::from_secs(600),
        "{ra:?} {when}"
    );

    // 503 without a problem document on a signed request.
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order").then(|| Ok(resp(503, &[("Retry-After", "30")], "<html>")))
    });
    let e = connect(&ca)
        .new_order(&account(), &order_req())
        .unwrap_err();
    let OrderError::Request(r) = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(r, RequestError::Status { status: 503, .. }));
    assert_eq!(r.status_class(), Some(StatusClass::Unavailable));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    assert!(e.is_retryable());
}

#[test]
fn status_without_problem_document_is_classified() {
    for (status, class) in [
        (400, StatusClass::InvalidInput),
        (401, StatusClass::AccessDenied),
        (403, StatusClass::AccessDenied),
        (404, StatusClass::NotFound),
        (418, StatusClass::Unexpected),
    ] {
        let ca =
            FakeCa::new(move |req, _| path_is(req, "/order").then(|| Ok(resp(status, &[], ""))));
        let e = connect(&ca)
            .new_order(&account(), &order_req())
            .unwrap_err();
        let OrderError::Request(r) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(r.status_class(), Some(class), "{status}");
        assert_eq!(e.is_input_related(), status == 400, "{status}");
        assert!(!e.is_retryable(), "{status}");
    }
}

#[test]
fn truncated_and_non_json_bodies() {
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order").then(|| {
            Ok(resp(
                201,
                &[("Location", "x"), ("Content-Type", "application/json")],
                r#"{"status":"pen"#,
            ))
        })
    });
    let e = connect(&ca)
        .new_order(&account(), &order_req())
        .unwrap_err();
    assert!(
        matches!(e, OrderError::Request(RequestError::BadResponse { .. })),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order").then(|| Ok(resp(201, &[("Location", "x")], "<html>hello</html>")))
    });
    let e = connect(&ca)
        .new_order(&account(), &order_req())
        .unwrap_err();
    assert!(
        matches!(e, OrderError::Request(RequestError::BadResponse { .. })),
        "{e:?}"
    );

    // A non-JSON error page: bare status, retryable for 5xx.
    let ca = FakeCa::new(|req, _| path_is(req, "/order").then(|| Ok(resp(500, &[], "<html>oops"))));
    let e = connect(&ca)
        .new_order(&account(), &order_req())
        .unwrap_err();
    assert!(matches!(
        e,
        OrderError::Request(RequestError::Status { status: 500, .. })
    ));
    assert!(e.is_retryable());

    // A directory body that is not JSON (garbled, cut short): transient, normal backoff.
    let ca = FakeCa::new(|req, _| path_is(req, "/dir").then(|| Ok(resp(200, &[], "{\"a\":"))));
    let e = AcmeClient::connect(ca, &format!("{CA}/dir")).unwrap_err();
    assert!(matches!(e, DirectoryError::NotJson { .. }) && !e.is_input_related());
    assert!(e.is_retryable());
    // A directory that is neither ACMEv2 nor v1 (a wrong URL), and a v1 one.
    let ca = FakeCa::new(|req, _| path_is(req, "/dir").then(|| Ok(resp(200, &[], "{\"a\":1}"))));
    let e = AcmeClient::connect(ca, &format!("{CA}/dir")).unwrap_err();
    assert!(matches!(e, DirectoryError::Unknown { .. }) && e.is_input_related());
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/dir")
            .then(|| Ok(json_resp(200, &[], json!({"new-authz":"x","new-reg":"y"}))))
    });
    let e = AcmeClient::connect(ca, &format!("{CA}/dir")).unwrap_err();
    assert!(matches!(e, DirectoryError::AcmeV1 { .. }));
}

/// Serves `count` connections with a fixed raw HTTP response on a loopback port.
fn raw_server(response: Vec<u8>, count: usize) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        for _ in 0..count {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&response);
        }
    });
    (port, t)
}

fn real_client() -> ReqwestClient {
    let cfg = HttpConfig {
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    ReqwestClient::new(&cfg).unwrap()
}

#[test]
fn oversized_responses_are_refused() {
    let big = vec![b'x'; 2 * 1024 * 1024];
    // With Content-Length: refused before reading.
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
    r.extend(&big);
    let (port, t) = raw_server(r, 1);
    let url = format!("http://127.0.0.1:{port}/dir");
    let e = real_client().execute(&HttpRequest::get(&url)).unwrap_err();
    assert!(
        matches!(e, HttpError::TooLarge { limit: 1048576, .. }),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    t.join().unwrap();

    // Without Content-Length (read until close): cut at the cap; as a directory it is a typed
    // DirectoryError, not "unreachable".
    let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    r.extend(&big);
    let (port, t) = raw_server(r, 1);
    let url = format!("http://127.0.0.1:{port}/dir");
    let e = AcmeClient::connect(Arc::new(real_client()), &url).unwrap_err();
    assert!(
        matches!(
            e,
            DirectoryError::BadResponse {
                source: HttpError::TooLarge { .. },
                ..
            }
        ),
        "{e:?}"
    );
    t.join().unwrap();
}

#[test]
fn truncated_transfer_is_a_body_error() {
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"newNonce\":".to_vec();
    let (port, t) = raw_server(r, 1);
    let url = format!("http://127.0.0.1:{port}/dir");
    let e = real_client().execute(&HttpRequest::get(&url)).unwrap_err();
    assert!(matches!(e, HttpError::Body { .. }), "{e:?}");
    assert!(e.is_retryable());
    t.join().unwrap();
}

#[derive(Default)]
struct CountingResponder {
    setups: Mutex<usize>,
    teardowns: Mutex<usize>,
}

impl ChallengeResponder for CountingResponder {
    fn setup(&self, _: &ChallengeSetup) -> Result<(), md_core::acme::SetupError> {
        *self.setups.lock().unwrap() += 1;
        Ok(())
    }
    fn teardown(&self, _: &ChallengeSetup) {
        *self.teardowns.lock().unwrap() += 1;
    }
}

#[test]
fn ca_dies_between_two_steps_of_an_order() {
    // Everything works until the challenge has been set up; then the CA is gone.
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = dead.clone();
    let ca = FakeCa::new(move |req, _| {
        if path_is(req, "/chal/1") {
            d2.store(true, Ordering::SeqCst);
        }
        d2.load(Ordering::SeqCst).then(|| {
            Err(HttpError::Connect {
                url: req.url.clone(),
                message: "connection refused".into(),
                cause: md_core::http::ConnectCause::NoConnection,
            })
        })
    });
    let c = connect(&ca);
    let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
    let mut req = CertificateRequest::new(["a.test"]);
    req.challenges = vec![ChallengeType::Http01];
    let r = CountingResponder::default();
    let e = c
        .obtain_certificate(&account(), &key, &req, &r)
        .unwrap_err();
    assert!(matches!(
        e,
        OrderError::Request(RequestError::Http(HttpError::Connect { .. }))
    ));
    assert!(e.is_retryable() && !e.is_input_related());
    assert!(e.to_string().contains("/chal/1"), "{e}");
    assert_eq!(*r.setups.lock().unwrap(), 1);
    assert_eq!(
        *r.teardowns.lock().unwrap(),
        1,
        "material is torn down after the failure"
    );
    assert!(dead.load(Ordering::SeqCst));
}

#[test]
fn lost_challenge_answer_keeps_local_material_for_the_ca() {
    // The CA takes the challenge, but its answer is cut off on the way: it validates now, so
    // the http-01 material must stay (else: a failed validation and a new order next run).
    // A refused connection never reached the CA: torn down (previous test).
    for (lost, torn_down) in [
        (
            HttpError::Body {
                url: format!("{CA}/chal/1"),
                message: "connection closed before message completed".into(),
            },
            0,
        ),
        (
            HttpError::Timeout {
                url: format!("{CA}/chal/1"),
            },
            0,
        ),
        (
            HttpError::Connect {
                url: format!("{CA}/chal/1"),
                message: "connection reset".into(),
                cause: md_core::http::ConnectCause::Other,
            },
            1,
        ),
    ] {
        let lost = Mutex::new(Some(lost));
        let ca = FakeCa::new(move |req, _| {
            (path_is(req, "/chal/1") && req.method == Method::Post)
                .then(|| Err(lost.lock().unwrap().take().expect("one challenge POST")))
        });
        let c = connect(&ca);
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let mut req = CertificateRequest::new(["a.test"]);
        req.challenges = vec![ChallengeType::Http01];
        let r = CountingResponder::default();
        let e = c
            .obtain_certificate(&account(), &key, &req, &r)
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(*r.setups.lock().unwrap(), 1);
        assert_eq!(*r.teardowns.lock().unwrap(), torn_down, "{e}");
    }
}

/// A CA whose order is issued in full: `/authz/1` turns valid once its challenge is
/// answered, `/finalize/1` answers as `finalize` says (by its call count), `/order/1` is
/// ready until a finalize is taken, and `/cert/1`
/// serves a certificate for `key`. Every request's method and path is logged.
fn issuing_ca(
    key: &PrivateKey,
    finalize: impl Fn(usize) -> HttpResponse + Send + Sync + 'static,
) -> (Arc<FakeCa>, Arc<Mutex<Vec<String>>>) {
    let cert = md_core::crypt::make_fallback_cert(&["a.test".into()], key)
        .unwrap()
        .to_pem()
        .unwrap();
    let cert = String::from_utf8(cert).unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = log.clone();
    // finalize calls, and those the CA took
    let (calls, finalized) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let ca = FakeCa::new(move |req, _| {
        let path = req.url.strip_prefix(CA).unwrap_or(&req.url).to_string();
        let answered = {
            let mut l = seen.lock().unwrap();
            l.push(format!("{:?} {path}", req.method));
            l.iter().any(|r| r.ends_with("/chal/1"))
        };
        let done = finalized.load(Ordering::SeqCst);
        match path.as_str() {
            "/authz/1" if answered => Some(Ok(json_resp(
                200,
                &[],
                json!({"status":"valid","identifier":{"type":"dns","value":"a.test"},
                       "challenges":[]}),
            ))),
            "/finalize/1" => {
                let r = finalize(calls.fetch_add(1, Ordering::SeqCst));
                if r.status < 300 {
                    finalized.fetch_add(1, Ordering::SeqCst);
                }
                Some(Ok(r))
            }
            "/order/1" => Some(Ok(json_resp(
                200,
                &[],
                if done == 0 {
                    json!({"status":"ready","finalize":format!("{CA}/finalize/1")})
                } else {
                    json!({"status":"valid","finalize":format!("{CA}/finalize/1"),
                           "certificate":format!("{CA}/cert/1")})
                },
            ))),
            "/cert/1" => Some(Ok(resp(
                200,
                &[("Content-Type", "application/pem-certificate-chain")],
                &cert,
            ))),
            _ => None,
        }
    });
    (ca, log)
}

fn obtained(ca: &Arc<FakeCa>, key: &PrivateKey) -> Result<(), OrderError> {
    let mut req = CertificateRequest::new(["a.test"]);
    req.challenges = vec![ChallengeType::Http01];
    connect(ca)
        .obtain_certificate(&account(), key, &req, &CountingResponder::default())
        .map(|_| ())
}

fn order_processing() -> HttpResponse {
    json_resp(
        200,
        &[],
        json!({"status":"processing","finalize":format!("{CA}/finalize/1")}),
    )
}

#[test]
fn a_validated_order_is_finalized_without_fetching_it_first() {
    let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
    let (ca, log) = issuing_ca(&key, |_| order_processing());
    obtained(&ca, &key).unwrap();
    let log = log.lock().unwrap();
    let steps: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|r| !r.ends_with("/nonce") && !r.ends_with("/dir"))
        .collect();
    assert_eq!(
        steps,
        [
            "Post /order",
            "Post /authz/1",
            "Post /chal/1",
            "Post /authz/1",
            "Post /finalize/1",
            "Post /order/1",
            "Post /cert/1"
        ]
    );
}

#[test]
fn an_order_not_ready_at_finalize_is_awaited_and_finalized_again() {
    // The CA has not caught up with the valid authorization: orderNotReady, then the order
    // is fetched (ready) and finalized once more.
    let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
    let (ca, log) = issuing_ca(&key, |n| {
        if n == 0 {
            problem(403, "orderNotReady", &[])
        } else {
            order_processing()
        }
    });
    obtained(&ca, &key).unwrap();
    let log = log.lock().unwrap();
    let after: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .skip_while(|r| !r.ends_with("/finalize/1"))
        .filter(|r| !r.ends_with("/nonce"))
        .collect();
    assert_eq!(
        after,
        [
            "Post /finalize/1",
            "Post /order/1",
            "Post /finalize/1",
            "Post /order/1",
            "Post /cert/1"
        ]
    );

    // Any other refusal ends the attempt, with the CA's problem (no second finalize).
    let (ca, log) = issuing_ca(&key, |_| problem(400, "badCSR", &[]));
    let e = obtained(&ca, &key).unwrap_err();
    assert!(e.is_input_related(), "{e}");
    let finalizes = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.ends_with("/finalize/1"))
        .count();
    assert_eq!(finalizes, 1);
}

#[test]
fn bad_nonce_is_retried_then_bounded() {
    // Two badNonce answers, then success.
    let ca = FakeCa::new(|req, _| {
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        (path_is(req, "/order") && SEEN.fetch_add(1, Ordering::SeqCst) < 2)
            .then(|| Ok(problem(400, "badNonce", &[])))
    });
    let c = connect(&ca);
    let o = c.new_order(&account(), &order_req()).unwrap();
    assert_eq!(o.url, format!("{CA}/order/1"));
    // dir + 3 POSTs: no newNonce round trip, since the directory response and each error
    // response carried a Replay-Nonce.
    assert_eq!(c.request_count(), 4);

    // Always badNonce: 1 + DEFAULT_BAD_NONCE_RETRIES attempts, then a typed, retryable error.
    let ca =
        FakeCa::new(|req, _| path_is(req, "/order").then(|| Ok(problem(400, "badNonce", &[]))));
    let c = connect(&ca);
    let e = c.new_order(&account(), &order_req()).unwrap_err();
    assert_eq!(e.problem().unwrap().kind(), "badNonce");
    assert!(e.is_retryable());
    let retries = u64::from(md_core::acme::DEFAULT_BAD_NONCE_RETRIES);
    assert_eq!(c.request_count(), 1 + 1 + retries);
}

#[test]
fn subproblems_name_identifiers() {
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order").then(|| {
            let body = json!({
                "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                "detail": "Some identifiers were rejected", "status": 400,
                "subproblems": [{"type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": "policy forbids", "identifier": {"type": "dns", "value": "evil.test"}}]
            });
            Ok(resp(400, &[("Content-Type", "application/problem+json")], &body.to_string()))
        })
    });
    let e = connect(&ca)
        .new_order(&account(), &order_req())
        .unwrap_err();
    let p = e.problem().unwrap();
    assert_eq!(p.subproblems.len(), 1);
    assert_eq!(p.subproblems[0].kind(), "rejectedIdentifier");
    assert_eq!(p.identifiers(), vec![&Identifier::from_name("evil.test")]);
    assert!(e.is_input_related());
    assert_eq!(p.suggested_backoff(), Some(md_core::acme::INPUT_BACKOFF));
}

#[test]
fn polling_honours_retry_after_and_deadline() {
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order/1").then(|| {
            Ok(json_resp(
                200,
                &[("Retry-After", "1")],
                json!({"status":"processing","finalize":""}),
            ))
        })
    });
    let opts = ClientOptions {
        poll: PollPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            deadline: Duration::from_millis(1500),
        },
        ..Default::default()
    };
    let c = connect(&ca).with_options(opts);
    let start = Instant::now();
    let e = c
        .await_order(&account(), &format!("{CA}/order/1"), &["valid"])
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(e, OrderError::Timeout { what: "order", .. }),
        "{e:?}"
    );
    assert!(e.is_retryable());
    // Retry-After (1 s) was used instead of the 10-20 ms backoff: only a couple of polls.
    let polls = ca.count.load(Ordering::SeqCst) - 2;
    assert!(polls <= 3, "{polls} polls");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // An invalid order ends polling with its problem.
    let ca = FakeCa::new(|req, _| {
        path_is(req, "/order/1").then(|| {
            Ok(json_resp(
                200,
                &[],
                json!({"status":"invalid","finalize":"",
                "error":{"type":"urn:ietf:params:acme:error:badCSR","detail":"bad"}}),
            ))
        })
    });
    let e = connect(&ca)
        .await_order(&account(), &format!("{CA}/order/1"), &["valid"])
        .unwrap_err();
    assert!(matches!(e, OrderError::OrderInvalid { .. }));
    assert!(e.is_input_related());
}

#[test]
fn ari_renewal_info_and_errors() {
    let ca = FakeCa::new(|req, _| {
        req.url.starts_with(&format!("{CA}/ari/")).then(|| {
            Ok(json_resp(
                200,
                &[("Retry-After", "21600")],
                json!({"suggestedWindow":{"start":"2026-12-01T00:00:00Z","end":"2026-12-03T00:00:00Z"},
                       "explanationURL":"https://ca.invalid/why"}),
            ))
        })
    });
    let c = connect(&ca);
    let cert = common_cert::leaf_with_aki();
    let info = c.renewal_info(&cert).unwrap();
    assert_eq!((info.end - info.start).num_days(), 2);
    assert_eq!(info.retry_after, Some(Duration::from_secs(21600)));
    assert_eq!(
        info.explanation_url.as_deref(),
        Some("https://ca.invalid/why")
    );
    let id = cert.ari_cert_id().unwrap();
    // Serial 0x87654321 has its high bit set: no 0x00 sign byte in the id (SPEC 5.8).
    assert!(id.ends_with(".h2VDIQ"), "{id}");

    let ca = FakeCa::new(|req, _| {
        req.url
            .starts_with(&format!("{CA}/ari/"))
            .then(|| Ok(problem(500, "serverInternal", &[])))
    });
    let e = connect(&ca).renewal_info(&cert).unwrap_err();
    assert!(matches!(e, AriError::Request(_)) && e.is_retryable());
}

mod common_cert {
    use md_core::crypt::{Certificate, EcCurve, KeyType, PrivateKey};
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::x509::extension::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
    use openssl::x509::{X509NameBuilder, X509};

    /// A CA-signed leaf with an Authority Key Identifier and serial 0x87654321.
    pub fn leaf_with_aki() -> Certificate {
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "ari test").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key.pkey()).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let serial = BigNum::from_hex_str("87654321")
            .unwrap()
            .to_asn1_integer()
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        let ca = b.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key.pkey()).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&ca), None))
            .unwrap();
        b.append_extension(aki).unwrap();
        b.sign(key.pkey(), MessageDigest::sha256()).unwrap();
        Certificate::from_x509(b.build())
    }
}

/// Accepts one connection, records the request head, answers 200 with `body`.
fn recording_server(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        let r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(r.as_bytes());
        head
    });
    (port, t)
}

#[test]
fn user_agent_and_proxy_are_applied() {
    let (port, t) = recording_server("ok");
    let http = md_core::http::LazyHttpClient::new(HttpConfig::default());
    assert!(!http.is_built(), "nothing is built before first use");
    let r = http
        .execute(&HttpRequest::get(&format!("http://127.0.0.1:{port}/x")))
        .unwrap();
    assert!(http.is_built());
    assert_eq!(r.body, b"ok");
    let head = t.join().unwrap().to_ascii_lowercase();
    assert!(
        head.contains(&format!("user-agent: mod_md-rs/{}", md_core::VERSION)),
        "{head}"
    );

    // Through a proxy: the request goes to the proxy in absolute form.
    let (port, t) = recording_server("via proxy");
    let cfg = HttpConfig {
        proxy_url: Some(format!("http://127.0.0.1:{port}")),
        ..Default::default()
    };
    let r = ReqwestClient::new(&cfg)
        .unwrap()
        .execute(&HttpRequest::get("http://ca.invalid/dir"))
        .unwrap();
    assert_eq!(r.body, b"via proxy");
    let head = t.join().unwrap();
    assert!(
        head.starts_with("GET http://ca.invalid/dir HTTP/1.1"),
        "{head}"
    );
}

fn jws_payload(req: &HttpRequest) -> serde_json::Value {
    let jws: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
    let p = md_core::crypt::b64url_decode(jws["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&p).unwrap()
}

#[test]
fn new_order_payload_has_ip_identifiers_profile_and_replaces() {
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    let ca = FakeCa::new(move |req, _| {
        if path_is(req, "/order") {
            *s2.lock().unwrap() = Some(jws_payload(req));
        }
        None
    });
    let new = NewOrder {
        identifiers: vec![
            Identifier::from_name("a.test"),
            Identifier::from_name("2001:db8::1"),
        ],
        profile: Some("shortlived".into()),
        replaces: Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into()),
    };
    connect(&ca).new_order(&account(), &new).unwrap();
    let p = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        p,
        json!({"identifiers":[{"type":"dns","value":"a.test"},{"type":"ip","value":"2001:db8::1"}],
               "profile":"shortlived","replaces":"aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"})
    );
}

#[test]
fn der_certificate_follows_up_links() {
    let leaf = common_cert::leaf_with_aki();
    let issuer = common_cert::leaf_with_aki();
    let (l, i) = (leaf.to_der().unwrap(), issuer.to_der().unwrap());
    let ca = FakeCa::new(move |req, _| {
        let der = |body: &[u8], up: &str| HttpResponse {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/pkix-cert".into()),
                (
                    "Link".into(),
                    format!("<{up}>;rel=\"up\", <{CA}/cert/1/alt>;rel=\"alternate\""),
                ),
            ],
            body: body.to_vec(),
        };
        if path_is(req, "/cert/1") {
            Some(Ok(der(&l, "/issuer/1")))
        } else if path_is(req, "/issuer/1") {
            // Points at itself: the loop must stop.
            Some(Ok(der(&i, "/issuer/1")))
        } else {
            None
        }
    });
    let c = connect(&ca);
    let d = c
        .download_certificate(&account(), &format!("{CA}/cert/1"))
        .unwrap();
    assert_eq!(d.chain.certs.len(), 2);
    assert_eq!(d.alternates, vec![format!("{CA}/cert/1/alt")]);
    assert_eq!(d.chain.leaf().to_der().unwrap(), leaf.to_der().unwrap());

    // A lone DER certificate without issuer link is not a usable chain.
    let only = common_cert::leaf_with_aki().to_der().unwrap();
    let ca = FakeCa::new(move |req, _| {
        path_is(req, "/cert/2").then(|| {
            Ok(HttpResponse {
                status: 200,
                headers: vec![("Content-Type".into(), "application/pkix-cert".into())],
                body: only.clone(),
            })
        })
    });
    let e = connect(&ca)
        .download_certificate(&account(), &format!("{CA}/cert/2"))
        .unwrap_err();
    assert!(matches!(e, OrderError::BadCertificate { .. }), "{e:?}");
}

/// The nonce a signed request carried (its JWS protected header).
fn nonce_of(req: &HttpRequest) -> String {
    use base64::Engine;
    let body: serde_json::Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
    let protected = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body["protected"].as_str().unwrap())
        .unwrap();
    let protected: serde_json::Value = serde_json::from_slice(&protected).unwrap();
    protected["nonce"].as_str().unwrap().to_string()
}

#[test]
fn a_shared_client_hands_each_nonce_out_once() {
    // Four MDs of one CA renew at once on one client (one nonce pool). Every nonce the CA
    // sees must be new, and a badNonce answer (every 5th order) must still be resent.
    let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let reused = Arc::new(AtomicUsize::new(0));
    let (s, r) = (seen.clone(), reused.clone());
    let ca = FakeCa::new(move |req, n| {
        if req.method != Method::Post {
            return None;
        }
        if !s.lock().unwrap().insert(nonce_of(req)) {
            r.fetch_add(1, Ordering::SeqCst);
            return Some(Ok(problem(400, "badNonce", &[])));
        }
        (path_is(req, "/order") && n % 5 == 0).then(|| Ok(problem(400, "badNonce", &[])))
    });
    let c = connect(&ca);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let key = account();
                for _ in 0..25 {
                    c.new_order(&key, &order_req()).expect("order");
                }
            });
        }
    });
    assert_eq!(reused.load(Ordering::SeqCst), 0, "a nonce was used twice");
    assert!(seen.lock().unwrap().len() >= 100);
}
