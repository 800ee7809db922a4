//! Connections: the libpq connection string, TLS, timeouts, and a small bounded pool.

use std::str::FromStr;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::config::SslMode;
use postgres::{Client, Config};
use postgres_openssl::MakeTlsConnector;

/// How long a connection attempt may take when the connection string does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No statement of ours runs longer: a stuck database must not hold a renewal forever.
const STATEMENT_TIMEOUT: &str = "15s";

/// The TLS part of a libpq connection string that the Rust client does not parse itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TlsParams {
    /// `sslmode` as given (`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`).
    mode: Option<String>,
    /// `sslrootcert`: the CAs the server's certificate must chain to.
    root_cert: Option<String>,
    /// `sslcert` / `sslkey`: a client certificate.
    cert: Option<String>,
    key: Option<String>,
}

/// A parsed connection string: what to connect to and how.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: MakeTlsConnector,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password
        f.debug_struct("Target")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl Target {
    /// Parse a libpq connection string (`key=value ...` or a `postgresql://` URL).
    pub fn parse(conninfo: &str) -> Result<Target, String> {
        let (rest, tls) = split_tls(conninfo.trim())?;
        let mut config = Config::from_str(&rest).map_err(|e| format!("connection string: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("mod_md-rs");
        let verify = matches!(tls.mode.as_deref(), Some("verify-ca" | "verify-full"));
        config.ssl_mode(match tls.mode.as_deref() {
            None | Some("prefer") | Some("allow") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
            Some(other) => return Err(format!("connection string: sslmode '{other}' is unknown")),
        });
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        if verify {
            b.set_verify(SslVerifyMode::PEER);
            match &tls.root_cert {
                Some(f) => b
                    .set_ca_file(f)
                    .map_err(|e| format!("sslrootcert {f}: {e}"))?,
                None => b.set_default_verify_paths().map_err(|e| e.to_string())?,
            }
        } else {
            // As libpq: without verify-ca/verify-full the connection is encrypted, not
            // authenticated.
            b.set_verify(SslVerifyMode::NONE);
        }
        if let Some(c) = &tls.cert {
            b.set_certificate_chain_file(c)
                .map_err(|e| format!("sslcert {c}: {e}"))?;
        }
        if let Some(k) = &tls.key {
            b.set_private_key_file(k, openssl::ssl::SslFiletype::PEM)
                .map_err(|e| format!("sslkey {k}: {e}"))?;
        }
        let mut tls_conn = MakeTlsConnector::new(b.build());
        let full = tls.mode.as_deref() == Some("verify-full");
        tls_conn.set_callback(move |c, _| {
            c.set_verify_hostname(full);
            Ok(())
        });
        Ok(Target {
            config,
            tls: tls_conn,
        })
    }

    /// A new connection with the statement timeout set.
    pub fn connect(&self) -> Result<Client, String> {
        let mut c = self.config.connect(self.tls.clone()).map_err(db_err)?;
        c.batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            .map_err(db_err)?;
        Ok(c)
    }
}

/// A database error as the admin needs it (the client's Display hides the server's message).
pub fn db_err(e: postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Take `sslmode`, `sslrootcert`, `sslcert`, `sslkey` out of a connection string (the Rust
/// client knows only some `sslmode`s and no files); returns the rest and them.
fn split_tls(conninfo: &str) -> Result<(String, TlsParams), String> {
    let mut tls = TlsParams::default();
    let mut take = |k: &str, v: String| -> bool {
        let slot = match k {
            "sslmode" => &mut tls.mode,
            "sslrootcert" => &mut tls.root_cert,
            "sslcert" => &mut tls.cert,
            "sslkey" => &mut tls.key,
            _ => return false,
        };
        *slot = Some(v);
        true
    };
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let Some((base, query)) = conninfo.split_once('?') else {
            return Ok((conninfo.to_string(), tls));
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k, percent_decode(v))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(conninfo)? {
        if !take(&k, v.clone()) {
            kept.push(format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), tls))
}

/// `key = value` pairs of libpq's key/value form (values optionally single-quoted, with
/// backslash escapes).
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("connection string: '=' expected after '{key}'"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    Some('\\') => value.extend(it.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("connection string: unterminated quote in {key}")),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    it.next();
                    value.extend(it.next());
                    continue;
                }
                value.push(c);
                it.next();
            }
        }
        out.push((key, value));
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A bounded pool: at most `max` connections at once; idle ones are kept for reuse. A
/// connection that failed is dropped, the next user connects anew.
pub struct Pool {
    target: Target,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

/// How long a user waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(20);

impl Pool {
    /// A pool of at most `max` connections to `target` (none opened yet).
    pub fn new(target: Target, max: usize) -> Pool {
        Pool {
            target,
            max: max.max(1),
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    /// Run `f` on a connection; a connection whose use failed is closed.
    ///
    /// An idle connection whose server went away meanwhile (a restart, a failover) is found
    /// closed only at its next use: then `f` runs again on another connection. Before (found
    /// by tests/pg.rs, database down), each such connection failed one call after a database
    /// restart: a refresh, so a whole renewal pass, per pooled connection. The work of `f` is
    /// a transaction or an idempotent statement, so running it again is safe even in the rare
    /// case of a connection lost mid-way (e.g. with the reply to a COMMIT).
    pub fn with<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, String> {
        // bounded: each retry dropped an idle connection, at most `max` are kept
        let mut retries = self.max;
        loop {
            let (mut client, reused) = self.take()?;
            let r = f(&mut client);
            let closed = client.is_closed();
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_ok() && !closed {
                st.idle.push(client);
            } else {
                st.open -= 1;
            }
            drop(st);
            self.freed.notify_one();
            if r.is_err() && reused && closed && retries > 0 {
                retries -= 1;
                continue;
            }
            return r.map_err(db_err);
        }
    }

    /// As [`Pool::with`], for work whose errors are already texts.
    pub fn with_plain<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, String>,
    ) -> Result<T, String> {
        let (mut client, _) = self.take()?;
        let r = f(&mut client);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !client.is_closed() {
            st.idle.push(client);
        } else {
            st.open -= 1;
        }
        drop(st);
        self.freed.notify_one();
        r
    }

    /// A connection, and whether it is a kept one (not new).
    fn take(&self) -> Result<(Client, bool), String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + POOL_WAIT;
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok((c, true));
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return self
                    .target
                    .connect()
                    .inspect_err(|_| {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                        self.freed.notify_one();
                    })
                    .map(|c| (c, false));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err("no free database connection".into());
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_are_taken_out_of_key_value_strings() {
        let (rest, tls) = split_tls(
            "host=db.example port = 5432 password='a b\\'c' sslmode=verify-full sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(rest, "host='db.example' port='5432' password='a b\\'c'");
        assert_eq!(tls.mode.as_deref(), Some("verify-full"));
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        let c = Config::from_str(&rest).unwrap();
        assert_eq!(c.get_password(), Some(&b"a b'c"[..]));
    }

    #[test]
    fn tls_keys_are_taken_out_of_urls() {
        let (rest, tls) = split_tls(
            "postgresql://md:pw@127.0.0.1:5433/md?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://md:pw@127.0.0.1:5433/md?connect_timeout=3"
        );
        assert_eq!(tls.mode.as_deref(), Some("require"));
        assert_eq!(tls.root_cert.as_deref(), Some("/tmp/ca.pem"));
    }

    #[test]
    fn bad_strings_are_refused_with_the_reason() {
        assert!(Target::parse("host").unwrap_err().contains("'=' expected"));
        assert!(Target::parse("host='x")
            .unwrap_err()
            .contains("unterminated"));
        assert!(Target::parse("host=x sslmode=sometimes")
            .unwrap_err()
            .contains("sslmode"));
        assert!(Target::parse("host=x nosuchkey=1").is_err());
        assert!(
            Target::parse("host=x sslmode=verify-ca sslrootcert=/nonexistent")
                .unwrap_err()
                .contains("/nonexistent")
        );
        Target::parse("host=127.0.0.1 port=5432 dbname=md user=md").unwrap();
    }
}
