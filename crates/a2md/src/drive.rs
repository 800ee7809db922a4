//! `drive [-c TYPE] [-f] [-r] [md...]`: obtain certificates now with the module's renewal
//! driver (md-core's `Renewer::run_md`, into staging/), then activate them into domains/ at
//! once, as the module's parent does at a restart.
//!
//! Challenges: the driver writes http-01 and tls-alpn-01 material into the store's
//! challenges/, where a running httpd with mod_md answers the CA from; `--listen ADDR:PORT`
//! answers http-01 from the same files here instead (no httpd needed); dns-01 runs the MD's
//! `cmd-dns-01` or `--dns01-cmd`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use md_core::apr::AprStatus;
use md_core::config::values::RenewMode;
use md_core::drive::check::ActiveCerts;
use md_core::drive::renew::{MdOutcome, RenewSettings, Renewer};
use md_core::event::Events;
use md_core::log::{Level, LogSink};
use md_core::md::challenges::{ChallengeSupport, Reachability};
use md_core::md::ManagedDomain;
use md_core::reg::{Activation, Registry};
use md_core::serve::{http01, Http01};
use md_core::status::MdSnapshot;
use md_core::store::{FsStore, Group, Store, StoreExt};
use serde_json::json;

use crate::cli::{Cli, Cmd};
use crate::log::StderrLog;
use crate::out::{CmdResult, Fail, Out};
use crate::store::{child_owner, dir_of, open_write, stored_mds};

/// MDs driven at the same time (as the module's watchdog).
const MAX_PARALLEL: usize = 4;

/// Log lines of md-core: on a terminal the latest line per MD goes to its spinner, and the
/// lines of the chosen level are printed above the spinners; else plain stderr.
struct DriveLog {
    base: StderrLog,
    bars: Option<(MultiProgress, Vec<(String, ProgressBar)>)>,
}

impl DriveLog {
    fn new(base: StderrLog, names: &[String], progress: bool) -> DriveLog {
        let bars = progress.then(|| {
            let mp = MultiProgress::new();
            let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bars = names
                .iter()
                .map(|n| {
                    let pb = mp.add(ProgressBar::new_spinner());
                    pb.set_style(style.clone());
                    pb.set_prefix(n.clone());
                    pb.set_message("waiting");
                    pb.enable_steady_tick(Duration::from_millis(120));
                    (n.clone(), pb)
                })
                .collect();
            (mp, bars)
        });
        DriveLog { base, bars }
    }

    fn bar(&self, name: &str) -> Option<&ProgressBar> {
        self.bars
            .as_ref()
            .and_then(|(_, b)| b.iter().find(|(n, _)| n == name).map(|(_, pb)| pb))
    }

    fn step(&self, name: &str, msg: &str) {
        if let Some(pb) = self.bar(name) {
            pb.set_message(msg.to_string());
        }
    }

    fn done(&self, name: &str, msg: &str) {
        if let Some(pb) = self.bar(name) {
            pb.finish_with_message(msg.to_string());
        }
    }
}

impl LogSink for DriveLog {
    fn enabled(&self, level: Level) -> bool {
        self.bars.is_some() && level <= Level::Info || self.base.enabled(level)
    }
    fn log(&self, level: Level, status: i32, msg: &str) {
        if let Some((mp, bars)) = &self.bars {
            if let Some((_, pb)) = bars
                .iter()
                .find(|(n, _)| msg.starts_with(&format!("{n}: ")))
            {
                pb.set_message(msg.to_string());
            }
            if self.base.enabled(level) {
                let _ = mp.println(format!("a2md [{}] {msg}", StderrLog::label(level)));
            }
        } else {
            self.base.log(level, status, msg);
        }
    }
}

/// A minimal http-01 responder: answers `/.well-known/acme-challenge/<token>` from the
/// store's challenges/ with md-core's http-01 decision (the same as the module's handler).
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

impl Responder {
    fn start(listen: &str, mds: Vec<ManagedDomain>, challenges: PathBuf) -> Result<Self, Fail> {
        let listener = TcpListener::bind(listen).map_err(|e| {
            Fail::new(
                AprStatus::of_io(&e),
                format!("cannot listen on {listen} for http-01: {e}"),
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Fail::general(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Fail::general(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let index = md_core::md::MdIndex::of(&mds);
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = answer(s, &mds, &index, &challenges);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Responder {
            stop,
            thread: Some(thread),
            addr,
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request (HTTP/1.x, the request line and headers only).
fn answer(
    s: TcpStream,
    mds: &[ManagedDomain],
    index: &md_core::md::MdIndex,
    challenges: &Path,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut host = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("host") {
                let v = v.trim();
                // strip a port (not inside an IPv6 literal)
                host = match v.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || v.starts_with('[') => {
                        if p.bytes().all(|b| b.is_ascii_digit()) {
                            h.to_string()
                        } else {
                            v.to_string()
                        }
                    }
                    _ => v.to_string(),
                };
            }
        }
    }
    let (status, body) = match http01(mds, index, challenges, &host, path, method == "GET") {
        Http01::Answer(b) => ("200 OK", b),
        Http01::NotImplemented => ("501 Not Implemented", String::new()),
        Http01::Error(_) => ("500 Internal Server Error", String::new()),
        _ => ("404 Not Found", String::new()),
    };
    let mut w = s;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

/// The MD as this run drives it: the tool's options over what md.json says.
fn effective_md(
    cli: &Cli,
    md: &ManagedDomain,
    challenge: Option<&str>,
    dns01: Option<&str>,
    force: bool,
) -> ManagedDomain {
    let mut md = md.clone();
    if let Some(f) = &cli.ca_certs {
        md.env.ca_certs = Some(f.display().to_string());
    }
    if let Some(p) = &cli.proxy {
        md.env.proxy_url = Some(p.clone());
    }
    if let Some(c) = challenge {
        md.ca_challenges = vec![c.to_string()];
    }
    if let Some(cmd) = dns01 {
        md.env.dns01_cmd = Some(cmd.to_string());
    }
    if md.ca_agreement.is_none() {
        if let Some(t) = &cli.terms {
            md.ca_agreement = Some(t.clone());
        }
    }
    // an explicit command: a manual MD is driven too
    if force || md.renew_mode == RenewMode::Manual {
        md.renew_mode = RenewMode::Auto;
    }
    md
}

/// What became of one MD.
enum Result1 {
    Activated(String),
    NotDue(String),
    Failed(String),
}

fn drive_one(
    store: &FsStore,
    root: &Path,
    renewer: &Renewer<'_, FsStore>,
    log: &DriveLog,
    md: &ManagedDomain,
    force: bool,
    reset: bool,
) -> Result1 {
    let name = md.name.as_str();
    if reset {
        for d in &md.domains {
            let _ = store.purge(Group::Challenges, d);
        }
        if let Err(e) = store.purge(Group::Staging, name) {
            return Result1::Failed(format!("{name}: resetting staging: {e}"));
        }
    }
    let snap = MdSnapshot::load(md, root, true);
    let mut active = ActiveCerts::from_snapshot(&snap);
    if force {
        active.incomplete = Some("renewal forced (a2md drive -f)".into());
        active.fits.iter_mut().for_each(|f| *f = false);
    }
    let support = ChallengeSupport {
        reach: Reachability {
            http: true,
            https: true,
        },
        acme_tls_1: !md.acme_tls_1.is_empty(),
        dns01_cmd: md.env.dns01_cmd.is_some(),
    };
    log.step(name, "checking");
    let now = Utc::now();
    let outcome = renewer.run_md(md, support, &mut active, now);
    // A finished set in staging (from this run, or one the module's child staged): activate
    // it now, under the MD's renewal lock so that no child writes it meanwhile. (A set whose
    // ready time lies a moment ahead is reported as Failed(ready) by run_md: the job says.)
    let job = store.load_job(Group::Staging, name).ok().flatten();
    let finished = job.as_ref().is_some_and(|j| j.finished);
    if let (MdOutcome::Failed(_), false) = (&outcome, finished) {
        let detail = job
            .and_then(|j| j.last)
            .and_then(|l| l.get("detail").and_then(|d| d.as_str().map(String::from)))
            .unwrap_or_else(|| "renewal failed".into());
        return Result1::Failed(format!("{name}: {detail}"));
    }
    if !finished {
        return match outcome {
            MdOutcome::Idle(Some(t)) => Result1::NotDue(format!(
                "{name}: not due for renewal before {} (use -f to renew now)",
                t.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            _ => Result1::NotDue(format!("{name}: nothing to do")),
        };
    }
    log.step(name, "activating");
    let _lock = match store.lock_md(name, false) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Result1::Failed(format!(
                "{name}: staging is in use by another process (a running httpd's renewal?)"
            ))
        }
        Err(e) => return Result1::Failed(format!("{name}: {e}")),
    };
    // the registry owns its store: a second handle on the same directory (no recovery)
    let opts = md_core::store::StoreOptions {
        as_child: true,
        ..Default::default()
    };
    let reg = match FsStore::open(root, opts) {
        Ok(s) => Registry::new(s),
        Err(e) => return Result1::Failed(format!("{name}: {e}")),
    };
    match reg.activate_for(name, Some(md)) {
        Ok(Activation::Activated { .. }) | Ok(Activation::AlreadyActive) => {
            let until = MdSnapshot::load(md, root, true)
                .valid()
                .map(|v| v.until.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            Result1::Activated(until)
        }
        Ok(other) => Result1::Failed(format!("{name}: not activated: {other:?}")),
        Err(e) => Result1::Failed(format!("{name}: activation failed: {e}")),
    }
}

/// `drive`.
pub fn run(cli: &Cli, out: &mut Out) -> CmdResult {
    let Some(Cmd::Drive {
        challenge,
        force,
        reset,
        listen,
        dns01_cmd,
        mds: wanted,
    }) = &cli.cmd
    else {
        return Ok(());
    };
    let root = dir_of(&cli.dir)?;
    let ws = open_write(root)?;
    // What this run creates in the child-owned staging/ must not lock httpd's renewal child
    // (its `User`) out: when no owner is known yet (httpd never ran on this store), the lock
    // directory this run makes and the staged state of failed MDs are removed afterwards.
    let locks_dir = root.join(Group::Staging.dir()).join(".locks");
    let locks_existed = locks_dir.exists();
    let owner_unknown = rustix::process::geteuid().is_root() && child_owner(root).is_none();
    let all = stored_mds(&ws.store)?;
    let mut mds = Vec::new();
    if wanted.is_empty() {
        mds = all.iter().map(|r| r.md.clone()).collect();
    } else {
        for w in wanted {
            let rec = all
                .iter()
                .find(|r| r.md.name.eq_ignore_ascii_case(w))
                .ok_or_else(|| Fail::not_found(format!("unknown Managed Domain '{w}'")))?;
            mds.push(rec.md.clone());
        }
    }
    let mds: Vec<ManagedDomain> = mds
        .iter()
        .map(|m| effective_md(cli, m, challenge.as_deref(), dns01_cmd.as_deref(), *force))
        .collect();
    let _responder = match listen {
        Some(l) => {
            let r = Responder::start(l, mds.clone(), root.join(Group::Challenges.dir()))?;
            md_core::md_log!(
                StderrLog::from_counts(cli.verbose, cli.quiet),
                Level::Info,
                "answering http-01 on {}",
                r.addr
            );
            Some(r)
        }
        None => None,
    };
    let progress =
        !cli.json && cli.quiet == 0 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let names: Vec<String> = mds.iter().map(|m| m.name.clone()).collect();
    let log = DriveLog::new(
        StderrLog::from_counts(cli.verbose, cli.quiet),
        &names,
        progress,
    );
    let settings = RenewSettings {
        // errors of earlier runs do not hold this one back
        generation_started: Utc::now(),
        ..RenewSettings::default()
    };
    let renewer = Renewer::new(
        &ws.store,
        root.to_path_buf(),
        &log,
        settings,
        Events::new(None, None),
    );
    let results: Mutex<Vec<(usize, Result1)>> = Mutex::new(Vec::new());
    let queue = Mutex::new(mds.iter().enumerate());
    std::thread::scope(|scope| {
        for _ in 0..MAX_PARALLEL.min(mds.len()) {
            scope.spawn(|| loop {
                let Some((i, md)) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                    break;
                };
                let r = drive_one(&ws.store, root, &renewer, &log, md, *force, *reset);
                log.done(
                    &md.name,
                    match &r {
                        Result1::Activated(_) => "activated",
                        Result1::NotDue(_) => "not due",
                        Result1::Failed(_) => "failed",
                    },
                );
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    if owner_unknown {
        for (i, r) in &results {
            if matches!(r, Result1::Failed(_)) {
                let _ = ws.store.purge(Group::Staging, &mds[*i].name);
            }
        }
    }
    if !locks_existed {
        let _ = std::fs::remove_dir_all(&locks_dir);
    }
    let mut failed = Vec::new();
    for (i, r) in results {
        let name = &mds[i].name;
        match r {
            Result1::Activated(until) => out.emit(
                &format!("activated: {name} (valid until {until})"),
                json!({"name": name, "activated": true, "valid-until": until}),
            ),
            Result1::NotDue(msg) => out.emit(
                &msg,
                json!({"name": name, "activated": false, "detail": msg}),
            ),
            Result1::Failed(msg) => {
                out.emit(
                    &format!("failed: {msg}"),
                    json!({"name": name, "activated": false, "error": msg}),
                );
                failed.push(msg);
            }
        }
    }
    match failed.as_slice() {
        [] => Ok(()),
        [one] => Err(Fail::general(one.clone())),
        many => Err(Fail::general(format!(
            "{} MDs failed: {}",
            many.len(),
            many.join("; ")
        ))),
    }
}
