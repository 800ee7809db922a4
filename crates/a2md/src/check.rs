//! `check`: validate a store read-only. Every JSON file parses, every key decrypts (with the
//! store's secret where encrypted) and matches its certificate, certificates cover their MD's
//! names and are not expired, and private keys and root-only dirs are not open to others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use md_core::store::{files, keys, FsStore, Group, Store, StoreExt};
use serde_json::json;

use crate::cli::Cli;
use crate::out::{CmdResult, Fail, Out};
use crate::store::{dir_of, open_read};

#[derive(Default)]
struct Report {
    checked: usize,
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, what: String) {
        self.errors.push(what);
    }
    fn warn(&mut self, what: String) {
        self.warnings.push(what);
    }
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Not readable or writable by group or others.
fn check_private(r: &mut Report, p: &Path) {
    if let Some(m) = mode(p) {
        if m & 0o077 != 0 {
            r.warn(format!(
                "{}: mode {m:04o}, should not be open to group/others",
                p.display()
            ));
        }
    }
}

fn check_json(r: &mut Report, st: &FsStore, g: Group, name: &str) {
    for f in st.files(g, name).unwrap_or_default() {
        if !f.ends_with(".json") {
            continue;
        }
        r.checked += 1;
        let path = st.path(g, name, &f).unwrap_or_default();
        let res = match f.as_str() {
            files::MD => st.load_md(g, name).map(|_| ()),
            files::JOB => st.load_job(g, name).map(|_| ()),
            files::ORDER => st.load_order(g, name).map(|_| ()),
            files::ACCOUNT => st.load_account(g, name).map(|_| ()),
            _ => match st.load(g, name, &f) {
                Ok(Some(d)) => serde_json::from_slice::<serde_json::Value>(&d)
                    .map(|_| ())
                    .map_err(|e| md_core::store::StoreError::Json {
                        path: path.display().to_string(),
                        detail: e.to_string(),
                    }),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = res {
            r.error(e.to_string());
        }
    }
}

/// Key/certificate pairs in `(g, name)` per the MD's key specs.
fn check_pairs(r: &mut Report, st: &FsStore, g: Group, name: &str) {
    let Ok(Some(rec)) = st.load_md(g, name) else {
        return;
    };
    let now = openssl::asn1::Asn1Time::days_from_now(0).ok();
    for spec in &rec.md.private_keys {
        let (kf, cf) = (files::privkey(spec), files::pubcert(spec));
        let (has_k, has_c) = (st.exists(g, name, &kf), st.exists(g, name, &cf));
        if !has_k && !has_c {
            if g == Group::Domains && rec.md.cert_files.is_empty() {
                r.warn(format!(
                    "{}/{name}: no certificate({})",
                    g.dir(),
                    spec.name()
                ));
            }
            continue;
        }
        r.checked += 2;
        if g == Group::Domains || g == Group::Tmp {
            if let Some(p) = st.path(g, name, &kf) {
                check_private(r, &p);
            }
        }
        let key = match st.load_pkey(g, name, &kf) {
            Ok(k) => k,
            Err(e) => {
                r.error(e.to_string());
                None
            }
        };
        let chain = match st.load_chain(g, name, &cf) {
            Ok(c) => c,
            Err(e) => {
                r.error(e.to_string());
                None
            }
        };
        let where_ = format!("{}/{name}/{cf}", g.dir());
        match (key, chain) {
            (Some(k), Some(c)) => {
                if !keys::key_matches_cert(&k, &c[0]) {
                    r.error(format!("{where_}: certificate does not match {kf}"));
                }
                if !keys::covers_all(&c[0], &rec.md.domains) {
                    r.error(format!(
                        "{where_}: certificate does not cover all of {}",
                        rec.md.domains.join(", ")
                    ));
                }
                if let Some(now) = &now {
                    if c[0].not_after() < now {
                        r.error(format!("{where_}: certificate has expired"));
                    }
                }
            }
            (None, Some(_)) if g == Group::Domains => {
                r.error(format!("{where_}: certificate without {kf}"))
            }
            (Some(_), None) if g == Group::Domains => {
                r.error(format!("{}/{name}/{kf}: key without {cf}", g.dir()))
            }
            _ => {} // staging: a key without its certificate is a renewal in progress
        }
    }
}

/// Run `check`.
pub fn run(cli: &Cli, out: &mut Out) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    let st = open_read(root)?;
    let mut r = Report::default();
    r.checked += 1;
    check_private(&mut r, &root.join("md_store.json"));
    for g in [Group::Domains, Group::Archive, Group::Tmp] {
        let p = root.join(g.dir());
        if mode(&p).is_some_and(|m| m & 0o077 != 0) {
            r.warn(format!(
                "{}: mode {:04o}, should be 0700",
                p.display(),
                mode(&p).unwrap_or(0)
            ));
        }
    }
    for g in [Group::Domains, Group::Staging, Group::Accounts, Group::Ocsp] {
        for name in st.names(g).map_err(Fail::from)? {
            if name.starts_with('.') {
                continue;
            }
            check_json(&mut r, &st, g, &name);
            match g {
                Group::Domains | Group::Staging => check_pairs(&mut r, &st, g, &name),
                Group::Accounts => {
                    r.checked += 1;
                    match st.load_pkey(g, &name, files::ACCOUNT_KEY) {
                        Ok(Some(_)) => {}
                        Ok(None) => r.error(format!("accounts/{name}: account.pem is missing")),
                        Err(e) => r.error(e.to_string()),
                    }
                }
                _ => {}
            }
        }
    }
    for w in &r.warnings {
        out.emit(&format!("warning: {w}"), json!({"warning": w}));
    }
    for e in &r.errors {
        out.emit(&format!("error: {e}"), json!({"error": e}));
    }
    let summary = format!(
        "checked {} file(s): {} error(s), {} warning(s)",
        r.checked,
        r.errors.len(),
        r.warnings.len()
    );
    out.emit(
        &summary,
        json!({"checked": r.checked, "errors": r.errors.len(), "warnings": r.warnings.len()}),
    );
    if r.errors.is_empty() {
        Ok(())
    } else {
        Err(Fail::general(format!(
            "the store has {} error(s)",
            r.errors.len()
        )))
    }
}
