//! Outgoing HTTP: a small [`HttpClient`] trait and its real implementation on reqwest.
//!
//! The ACME client only talks through the trait so that tests can put a fake transport in front
//! of it for faults a real CA cannot produce. The real client is built lazily
//! ([`LazyHttpClient`]): inside httpd it runs a runtime thread, so it must only come to life in
//! the child process after fork, never when configuration objects are created.

use crate::apr::AprStatus;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Largest response body accepted (SPEC 5.1: 1 MiB, as the C module).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// HTTP methods the ACME client needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (directory, renewalInfo, CA roots).
    Get,
    /// HEAD (newNonce).
    Head,
    /// POST (all signed requests).
    Post,
}

/// One outgoing request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Extra headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Body for POST.
    pub body: Option<Vec<u8>>,
}

impl HttpRequest {
    /// A GET request for `url`.
    pub fn get(url: &str) -> Self {
        HttpRequest {
            method: Method::Get,
            url: url.to_string(),
            headers: vec![],
            body: None,
        }
    }

    /// A HEAD request for `url`.
    pub fn head(url: &str) -> Self {
        HttpRequest {
            method: Method::Head,
            url: url.to_string(),
            headers: vec![],
            body: None,
        }
    }

    /// A POST of `body` with the given content type.
    pub fn post(url: &str, content_type: &str, body: Vec<u8>) -> Self {
        HttpRequest {
            method: Method::Post,
            url: url.to_string(),
            headers: vec![("Content-Type".to_string(), content_type.to_string())],
            body: Some(body),
        }
    }
}

/// A complete response (body already read, within the size cap).
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers in received order; names as received (compare case-insensitively).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// One parsed `Link` header entry (RFC 8288), as used by RFC 8555 §7.4.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Target URL (not resolved against the request URL).
    pub url: String,
    /// The `rel` parameter, e.g. `up`, `alternate`, `index`.
    pub rel: String,
}

impl HttpResponse {
    /// First header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header (case-insensitive).
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Media type without parameters, lower-cased (SPEC 5.1: parameters are stripped before
    /// comparison), e.g. `application/problem+json`.
    pub fn content_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// All `Link` entries from all `Link` headers.
    pub fn links(&self) -> Vec<Link> {
        self.header_all("Link")
            .flat_map(parse_link_header)
            .collect()
    }

    /// URLs of `Link` entries with the given `rel`.
    pub fn links_with_rel(&self, rel: &str) -> Vec<String> {
        self.links()
            .into_iter()
            .filter(|l| l.rel == rel)
            .map(|l| l.url)
            .collect()
    }
}

/// Parse one `Link` header value: `<url>; rel="up", <url2>;rel=alternate`.
pub fn parse_link_header(value: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        let url = rest[start + 1..start + end].to_string();
        rest = &rest[start + end + 1..];
        // Parameters run up to the next '<' that starts another link.
        let params_end = rest.find('<').unwrap_or(rest.len());
        let params = &rest[..params_end];
        for p in params.split(';') {
            let p = p.trim().trim_end_matches(',').trim();
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("rel") {
                    for r in v.trim().trim_matches('"').split_whitespace() {
                        out.push(Link {
                            url: url.clone(),
                            rel: r.to_string(),
                        });
                    }
                }
            }
        }
        rest = &rest[params_end..];
    }
    out
}

/// Failures of one HTTP exchange (no response, or a response we refuse to read).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The transport could not be built (bad CA file, bad proxy URL).
    #[error("HTTP client setup failed: {0}")]
    Setup(String),
    /// Could not connect or the connection broke (DNS, refused, TLS handshake, reset).
    #[error("unable to contact {url}: {message}")]
    Connect {
        /// Target URL.
        url: String,
        /// What went wrong.
        message: String,
        /// The kind of failure (from the transport's typed error chain).
        cause: ConnectCause,
    },
    /// Connect or overall timeout.
    #[error("timeout talking to {url}")]
    Timeout {
        /// Target URL.
        url: String,
    },
    /// The response body was larger than allowed.
    #[error("response from {url} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Target URL.
        url: String,
        /// Cap in bytes.
        limit: usize,
    },
    /// The body could not be read completely (connection closed early, bad chunking).
    #[error("reading the response from {url} failed: {message}")]
    Body {
        /// Target URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Why a connection failed, in the classes the C module (through curl) tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// The host was not reached: unknown name, refused, unreachable.
    NoConnection,
    /// The server's TLS certificate was not trusted.
    TlsVerify,
    /// Another TLS handshake failure.
    Tls,
    /// Anything else (reset, protocol trouble).
    Other,
}

impl HttpError {
    /// The APR status the C module records for this failure (curl's code mapped by its
    /// md_curl.c: resolve/connect failures ECONNREFUSED, handshake ECONNABORTED, timeouts
    /// TIMEUP, the rest, certificate verification included, EGENERAL).
    pub fn apr_status(&self) -> AprStatus {
        match self {
            HttpError::Connect { cause, .. } => match cause {
                ConnectCause::NoConnection => AprStatus::ECONNREFUSED,
                ConnectCause::Tls => AprStatus::ECONNABORTED,
                ConnectCause::TlsVerify | ConnectCause::Other => AprStatus::EGENERAL,
            },
            HttpError::Timeout { .. } => AprStatus::TIMEUP,
            HttpError::Setup(_) | HttpError::TooLarge { .. } | HttpError::Body { .. } => {
                AprStatus::EGENERAL
            }
        }
    }

    /// Whether trying again later may succeed (network trouble, yes; config or size, no).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Body { .. }
        )
    }
}

/// The transport the ACME client uses. Implementations must be thread safe.
pub trait HttpClient: Send + Sync {
    /// Perform one request and return the complete response (any status).
    fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError>;
}

/// Settings of the real transport (MDCACertificateFile, MDHttpProxy, ...). Comparable and
/// hashable so that MDs with the same settings can share one client
/// ([`crate::drive::connections::Connections`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpConfig {
    /// User-Agent header, e.g. `mod_md-rs/0.1.0`.
    pub user_agent: String,
    /// PEM file of the CAs trusted for the ACME server instead of the system's
    /// (MDCACertificateFile).
    pub ca_file: Option<PathBuf>,
    /// Proxy URL for all requests (MDHttpProxy).
    pub proxy_url: Option<String>,
    /// PEM file of CAs trusted for a TLS proxy. reqwest has one trust store per client, so these
    /// are added next to `ca_file`.
    pub proxy_ca_file: Option<PathBuf>,
    /// Connect timeout (SPEC 5.1: 30 s).
    pub connect_timeout: Duration,
    /// Overall timeout per request (SPEC 5.1: 10 min).
    pub timeout: Duration,
    /// Response size cap.
    pub max_body: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            user_agent: default_user_agent(),
            ca_file: None,
            proxy_url: None,
            proxy_ca_file: None,
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(600),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// `mod_md-rs/<version>`: names the module and version as the C module's `mod_md/<v>` does.
pub fn default_user_agent() -> String {
    format!("mod_md-rs/{}", crate::VERSION)
}

/// The real transport: reqwest blocking client over the system OpenSSL (native-tls).
pub struct ReqwestClient {
    client: reqwest::blocking::Client,
    max_body: usize,
}

impl std::fmt::Debug for ReqwestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqwestClient")
            .field("max_body", &self.max_body)
            .finish()
    }
}

fn read_pem_certs(path: &PathBuf) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let pem = std::fs::read(path)
        .map_err(|e| HttpError::Setup(format!("reading CA file {}: {e}", path.display())))?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| HttpError::Setup(format!("parsing CA file {}: {e}", path.display())))
}

impl ReqwestClient {
    /// Build the client now. Call this only in the process that will use it (after fork).
    pub fn new(cfg: &HttpConfig) -> Result<Self, HttpError> {
        let mut b = reqwest::blocking::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            // A signed POST must not be replayed to another URL; ACME never redirects.
            .redirect(reqwest::redirect::Policy::none());
        let mut certs = Vec::new();
        for f in [&cfg.ca_file, &cfg.proxy_ca_file].into_iter().flatten() {
            certs.extend(read_pem_certs(f)?);
        }
        // MDCACertificateFile replaces the system trust store, as libcurl's CAINFO does for
        // the C module: a private CA's file must not leave every public CA trusted as well.
        // The proxy's CA file alone adds to it.
        if cfg.ca_file.is_some() {
            b = b.tls_certs_only(certs);
        } else if !certs.is_empty() {
            b = b.tls_certs_merge(certs);
        }
        b = match &cfg.proxy_url {
            Some(p) => b.proxy(
                reqwest::Proxy::all(p.as_str())
                    .map_err(|e| HttpError::Setup(format!("proxy {p}: {e}")))?,
            ),
            None => b.no_proxy(),
        };
        let client = b.build().map_err(|e| HttpError::Setup(e.to_string()))?;
        Ok(ReqwestClient {
            client,
            max_body: cfg.max_body,
        })
    }
}

fn classify_reqwest(url: &str, e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout {
            url: url.to_string(),
        };
    }
    // Include the source chain: reqwest's top-level message alone says little.
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_body() || e.is_decode() {
        HttpError::Body {
            url: url.to_string(),
            message,
        }
    } else {
        HttpError::Connect {
            url: url.to_string(),
            message,
            cause: connect_cause(&e),
        }
    }
}

/// OpenSSL's ERR_LIB_SSL and SSL_R_CERTIFICATE_VERIFY_FAILED (stable numbers of its API).
const ERR_LIB_SSL: i32 = 20;
const SSL_R_CERTIFICATE_VERIFY_FAILED: i32 = 134;

/// Classify by the types in the error chain, never by message text: native-tls on OpenSSL
/// passes the OpenSSL error stack through; without one, reqwest's connect flag covers name
/// lookup and TCP connect failures.
fn connect_cause(e: &reqwest::Error) -> ConnectCause {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(stack) = s.downcast_ref::<openssl::error::ErrorStack>() {
            return tls_cause(stack);
        }
        if let Some(ssl) = s.downcast_ref::<openssl::ssl::Error>() {
            return ssl.ssl_error().map_or(ConnectCause::Tls, tls_cause);
        }
        src = s.source();
    }
    // No TLS error: the TCP connection (or the name lookup before it) failed, as curl's
    // "could not resolve" and "could not connect".
    if e.is_connect() {
        ConnectCause::NoConnection
    } else {
        ConnectCause::Other
    }
}

fn tls_cause(stack: &openssl::error::ErrorStack) -> ConnectCause {
    let verify = stack.errors().iter().any(|x| {
        x.library_code() == ERR_LIB_SSL && x.reason_code() == SSL_R_CERTIFICATE_VERIFY_FAILED
    });
    if verify {
        ConnectCause::TlsVerify
    } else {
        ConnectCause::Tls
    }
}

impl HttpClient for ReqwestClient {
    fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut rb = match req.method {
            Method::Get => self.client.get(&req.url),
            Method::Head => self.client.head(&req.url),
            Method::Post => self.client.post(&req.url),
        };
        for (n, v) in &req.headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        if let Some(b) = &req.body {
            rb = rb.body(b.clone());
        }
        let resp = rb.send().map_err(|e| classify_reqwest(&req.url, e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        if resp
            .content_length()
            .is_some_and(|l| l > self.max_body as u64)
        {
            return Err(HttpError::TooLarge {
                url: req.url.clone(),
                limit: self.max_body,
            });
        }
        let mut body = Vec::new();
        // Read one byte past the cap to tell "exactly at the cap" from "over it".
        resp.take(self.max_body as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    HttpError::Timeout {
                        url: req.url.clone(),
                    }
                } else {
                    HttpError::Body {
                        url: req.url.clone(),
                        message: e.to_string(),
                    }
                }
            })?;
        if body.len() > self.max_body {
            return Err(HttpError::TooLarge {
                url: req.url.clone(),
                limit: self.max_body,
            });
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Holds an [`HttpConfig`] and builds the [`ReqwestClient`] on first use, so that creating
/// configuration (in the httpd parent) never starts threads or opens connections.
#[derive(Debug)]
pub struct LazyHttpClient {
    config: HttpConfig,
    client: OnceLock<Result<ReqwestClient, String>>,
}

impl LazyHttpClient {
    /// Remember the settings; nothing is built yet.
    pub fn new(config: HttpConfig) -> Self {
        LazyHttpClient {
            config,
            client: OnceLock::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// True once the real client has been built.
    pub fn is_built(&self) -> bool {
        self.client.get().is_some()
    }

    /// True when building the real client was tried and failed (e.g. an unreadable CA file):
    /// the failure is kept, so a long-lived holder replaces such a client to try again.
    pub fn failed(&self) -> bool {
        self.client.get().is_some_and(|c| c.is_err())
    }
}

impl HttpClient for LazyHttpClient {
    fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let c = self
            .client
            .get_or_init(|| ReqwestClient::new(&self.config).map_err(|e| e.to_string()));
        match c {
            Ok(c) => c.execute(req),
            Err(e) => Err(HttpError::Setup(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ReqwestClient {
        ReqwestClient::new(&HttpConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            ..HttpConfig::default()
        })
        .unwrap()
    }

    fn status_of(url: &str) -> (Option<ConnectCause>, AprStatus) {
        let e = client().execute(&HttpRequest::get(url)).unwrap_err();
        let cause = match &e {
            HttpError::Connect { cause, .. } => Some(*cause),
            _ => None,
        };
        (cause, e.apr_status())
    }

    /// A port nobody listens on: curl's "could not connect", ECONNREFUSED in the C module.
    #[test]
    fn refused_connection_is_econnrefused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (cause, st) = status_of(&format!("https://127.0.0.1:{port}/dir"));
        assert_eq!(cause, Some(ConnectCause::NoConnection));
        assert_eq!((st.code(), st.description()), (111, "Connection refused"));
    }

    /// A TLS server whose certificate nobody trusts: certificate verification failed,
    /// APR_EGENERAL in the C module (curl error 60).
    #[test]
    fn untrusted_certificate_is_egeneral() {
        use openssl::asn1::Asn1Time;
        use openssl::pkey::PKey;
        use openssl::ssl::{SslAcceptor, SslMethod};
        use openssl::x509::X509;
        let key = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "untrusted").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = b.build();
        let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acc.set_private_key(&key).unwrap();
        acc.set_certificate(&cert).unwrap();
        let acc = acc.build();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (sock, _) = l.accept().unwrap();
            // The client aborts the handshake: an error here is expected.
            let _ = acc.accept(sock);
        });
        let (cause, st) = status_of(&format!("https://127.0.0.1:{port}/dir"));
        server.join().unwrap();
        assert_eq!(cause, Some(ConnectCause::TlsVerify));
        assert_eq!(
            (st.code(), st.description()),
            (20014, "Internal error (specific information not available)")
        );
    }

    #[test]
    fn transport_statuses() {
        let t = HttpError::Timeout { url: "u".into() };
        assert_eq!(t.apr_status(), AprStatus::TIMEUP);
        let h = HttpError::Connect {
            url: "u".into(),
            message: "handshake".into(),
            cause: ConnectCause::Tls,
        };
        assert_eq!(h.apr_status().code(), 103);
    }

    #[test]
    fn link_header_parsing() {
        let l = parse_link_header(
            r#"<https://ca/cert/1/alt/0>;rel="alternate", <https://ca/dir>; rel="index""#,
        );
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0],
            Link {
                url: "https://ca/cert/1/alt/0".into(),
                rel: "alternate".into()
            }
        );
        assert_eq!(l[1].rel, "index");
        assert!(parse_link_header("garbage").is_empty());
        assert!(parse_link_header("<unterminated").is_empty());
    }

    #[test]
    fn content_type_strips_parameters() {
        let r = HttpResponse {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "Application/JSON; charset=utf-8".into(),
            )],
            body: vec![],
        };
        assert_eq!(r.content_type().as_deref(), Some("application/json"));
    }

    #[test]
    fn lazy_client_builds_nothing_until_used() {
        let c = LazyHttpClient::new(HttpConfig::default());
        assert!(!c.is_built());
        assert!(default_user_agent().starts_with("mod_md-rs/"));
    }

    #[test]
    fn bad_ca_file_is_a_setup_error() {
        let cfg = HttpConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let c = LazyHttpClient::new(cfg);
        let e = c
            .execute(&HttpRequest::get("https://127.0.0.1:1/"))
            .unwrap_err();
        assert!(matches!(e, HttpError::Setup(_)));
        assert!(!e.is_retryable());
    }
}
