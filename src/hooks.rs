//! post_config (before and after mod_ssl) and the mod_ssl certificate hooks.

use std::ffi::c_int;

use crate::config::srv_conf;
use crate::guard::{guard, test_panic_point};
use crate::log::log_s;
use crate::state::{mod_state, pconf_of};
use crate::watchdog;
use crate::{apr, ffi};
use md_core::config::values::RenewMode;
use md_core::config::vhosts::{self, Diagnostic, VHost};
use md_core::config::Origin;
use md_core::drive::check::ActiveCerts;
use md_core::drive::renew::RenewSettings;
use md_core::event::Events;
use md_core::log::Level;
use md_core::md::challenges::{self, ChallengeSupport, Reachability};
use md_core::md::ManagedDomain;
use md_core::reg::{Activation, Registry, StoreLock};
use md_core::store::{FsStore, Group, StoreExt, StoreOptions};

const OK: c_int = ffi::OK;
const DECLINED: c_int = ffi::DECLINED;
const FAILED: c_int = ffi::HTTP_INTERNAL_SERVER_ERROR;

/// The first post_config pass at startup only checks the config (httpd's "dry run"): it must
/// do nothing expensive and leave no side effects (FFI-NOTES (b)).
fn is_dry_run() -> bool {
    // SAFETY: ap_state_query only reads httpd's global state.
    unsafe { ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE) == ffi::AP_SQ_MS_CREATE_PRE_CONFIG }
}

fn report(s: *const ffi::server_rec, diagnostics: &[Diagnostic]) -> c_int {
    for d in diagnostics {
        log_s!(s, d.level, "{}: {}", d.ah, d.message);
    }
    if diagnostics.iter().any(|d| d.fatal) {
        FAILED
    } else {
        OK
    }
}

/// httpd: post_config before mod_ssl: resolve the MDs and check their definitions.
#[no_mangle]
pub unsafe extern "C" fn md_rs_post_config_before_ssl(
    pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    guard("post_config", s, FAILED, || {
        test_panic_point("post_config");
        // SAFETY: pconf and s are httpd's live config pool and base server.
        let (state, main) = unsafe { (mod_state(pconf), &srv_conf(s).settings) };
        let mut diagnostics = vhosts::check_definitions(&state.config);
        state.mds = state
            .config
            .mds
            .iter()
            .map(|d| ManagedDomain::resolve_with_admin(d, main, &state.config, None))
            .collect();
        // Assign MDs to vhosts now: mod_ssl asks for each SSL vhost's files before our
        // second post_config runs. An MD without contact takes its first vhost's ServerAdmin
        // (which httpd merged from the main server when the vhost has none).
        // SAFETY: s is the live base server.
        let vhost_list = unsafe { collect_vhosts(s, &state.ssl_servers) };
        let assignment = vhosts::assign(&state.mds, &vhost_list, &state.config);
        vhosts::adopt_admin_contacts(&mut state.mds, &vhost_list, &assignment);
        state.server_mds = vhost_list.iter().map(|v| v.key).zip(assignment).collect();
        diagnostics.extend(vhosts::check_resolved(&state.mds));
        // SAFETY: ap_server_root is httpd's global, set before the config is read.
        let server_root = unsafe { apr::to_string(ffi::ap_server_root) };
        state.store_dir = match &state.config.global.store_dir {
            Some(dir) => dir.into(),
            None => std::path::Path::new(&server_root).join("md"),
        };
        let Some(registry) = open_store_logged(s, &state.store_dir).map(Registry::new) else {
            return FAILED;
        };
        // mod_ssl primes the certificates to staple before our second post_config.
        state.ocsp = std::sync::Arc::new(md_core::ocsp::OcspRegistry::new(
            state.store_dir.clone(),
            state.config.global.stapling_renew_window,
        ));
        if diagnostics.iter().any(|d| d.fatal) {
            return report(s, &diagnostics);
        }
        let (_lock, locked_out) = store_lock(s, state);
        if !locked_out {
            // A store that cannot be written (full, read-only) must not take the sites down:
            // the certificates in it are served as they are, errors are logged.
            sync_logged(s, &registry, &state.mds);
        }
        // Staged certificates become active at every (re)start, not on the dry run.
        let events = events_of(state);
        let registry = state.registry.insert(registry);
        if !is_dry_run() && !locked_out {
            let mut installed = Vec::new();
            for (name, result) in registry.load_stagings_for(&state.mds) {
                match result {
                    Ok(Activation::Activated { .. }) => {
                        log_s!(s, Level::Notice, "AH10068: {name}: staged set activated");
                        let dir = state.store_dir.join("domains").join(&name);
                        // SAFETY: s is the live base server, in the config phase.
                        unsafe { crate::state::pair_cache(s) }.forget_dir(&dir);
                        installed.push(name);
                    }
                    Ok(Activation::Busy) => {
                        log_s!(
                            s,
                            Level::Info,
                            "{name}: a child still writes the staged set; it is activated at \
                             a later restart"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log_s!(
                            s,
                            Level::Err,
                            "AH10069: {name}: error loading staged set: {e}"
                        )
                    }
                }
            }
            // `installed` (as root, in the parent) for what was just activated. Off httpd's
            // main thread: a command's stderr is read by a thread (see `offload`).
            let log = crate::log::ServerLog(s);
            let raise = |name: String| {
                let st = registry.store();
                let mut job = st
                    .load_job(Group::Domains, &name)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if events
                    .raise("installed", &name, &mut job, chrono::Utc::now(), &log)
                    .is_ok()
                {
                    let _ = st.save_job(Group::Domains, &name, &job);
                }
            };
            if !installed.is_empty() {
                // SAFETY: as in sync_logged.
                unsafe {
                    crate::offload::off_main_thread(|| installed.into_iter().for_each(raise))
                };
            }
        }
        // SAFETY: s is the live base server, in the config phase.
        let pairs = unsafe { crate::state::pair_cache(s) };
        // Off httpd's main thread: many pairs are checked by threads (see `offload`).
        // SAFETY: as in sync_logged.
        unsafe {
            crate::offload::off_main_thread(|| {
                md_core::serve::prewarm_pairs(&state.mds, &state.store_dir, pairs)
            })
        };
        log_s!(
            s,
            Level::Debug,
            "{} managed domain(s) configured, store {}, {} certificate pair(s) known",
            state.mds.len(),
            state.store_dir.display(),
            pairs.len()
        );
        report(s, &diagnostics)
    })
}

/// MDStoreLocks: servers sharing one store sync and activate one at a time; one that cannot
/// get the lock in time starts without syncing or activating (the others do). Returns the
/// held lock (if configured and taken) and whether this server is locked out.
fn store_lock(
    s: *const ffi::server_rec,
    state: &crate::state::ModState,
) -> (Option<StoreLock>, bool) {
    match state.config.global.store_locks.flatten() {
        Some(wait) => match StoreLock::acquire(&state.store_dir, wait) {
            Ok(lock) => (Some(lock), false),
            Err(e) => {
                log_s!(
                    s,
                    Level::Warning,
                    "AH10398: unable to obtain global registry lock, \
                       renewed certificates may remain inactive on this httpd instance: {e}"
                );
                (None, true)
            }
        },
        None => (None, false),
    }
}

/// Write the md.json of MDs whose names grew while linking vhosts.
fn sync_after_linking(s: *const ffi::server_rec, state: &crate::state::ModState) {
    let Some(registry) = &state.registry else {
        return;
    };
    let (_lock, locked_out) = store_lock(s, state);
    if locked_out {
        return;
    }
    // Always the whole list: an MD missing from it would count as removed.
    sync_logged(s, registry, &state.mds);
}

/// Sync `mds` into the store; problems are logged (AH10172) and never fatal.
fn sync_logged(s: *const ffi::server_rec, registry: &Registry<FsStore>, mds: &[ManagedDomain]) {
    // Off httpd's main thread: many MDs are written by threads (see `offload`).
    // SAFETY: the closure borrows only what this thread passes it, and takes over nothing
    // tied to this thread.
    match unsafe { crate::offload::off_main_thread(|| registry.sync(mds)) } {
        Ok(sync) => {
            for (name, err) in &sync.errors {
                log_s!(
                    s,
                    Level::Err,
                    "AH10172: md[{name}]: error syncing to store: {err}"
                );
            }
        }
        Err(e) => log_s!(s, Level::Err, "AH10172: error syncing to store: {e}"),
    }
}

/// The child user (`User`/`Group`) when httpd runs as root: it must own what the renewal
/// child writes.
fn child_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; ap_unixd_config is set while reading the config.
    unsafe {
        (libc::geteuid() == 0)
            .then_some((ffi::ap_unixd_config.user_id, ffi::ap_unixd_config.group_id))
    }
}

/// The configured event commands (MDMessageCmd, MDNotifyCmd).
fn events_of(state: &crate::state::ModState) -> Events {
    let g = &state.config.global;
    Events::new(g.message_cmd.clone(), g.notify_cmd.clone())
}

/// Open (and on first use lay out) the store, in the parent; failure is AH10046.
fn open_store_logged(s: *const ffi::server_rec, dir: &std::path::Path) -> Option<FsStore> {
    let opts = StoreOptions {
        child_owner: child_owner(),
        ..Default::default()
    };
    FsStore::open(dir, opts)
        .map_err(|e| {
            log_s!(
                s,
                Level::Err,
                "AH10046: setup store for {}: {e}",
                dir.display()
            )
        })
        .ok()
}

/// Hand (certificate, key) file pairs to mod_ssl.
///
/// # Safety
/// The arrays must be mod_ssl's arrays of this call; `p` must outlive them.
unsafe fn push_files(
    p: *mut ffi::apr_pool_t,
    cert_files: *mut ffi::apr_array_header_t,
    key_files: *mut ffi::apr_array_header_t,
    files: &[(String, String)],
) {
    for (cert, key) in files {
        // SAFETY: see the function contract.
        unsafe {
            apr::push_string(cert_files, p, cert);
            apr::push_string(key_files, p, key);
        }
    }
}

/// The servers of this config (base first), as md-core sees them.
///
/// # Safety
/// `base` must be httpd's live base server.
unsafe fn collect_vhosts(
    base: *mut ffi::server_rec,
    ssl: &std::collections::HashSet<usize>,
) -> Vec<VHost> {
    let mut out = Vec::new();
    let mut s = base;
    // SAFETY: the server list is a null-terminated linked list owned by pconf.
    unsafe {
        while !s.is_null() {
            let r = &*s;
            let mut aliases = apr::strings_of(r.names);
            aliases.extend(apr::strings_of(r.wild_names));
            out.push(VHost {
                key: s as usize,
                server_name: apr::to_string(r.server_hostname),
                aliases,
                is_base: r.is_virtual == 0,
                is_ssl: ssl.contains(&(s as usize)),
                acme_tls_1: ffi::ap_is_allowed_protocol(
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    s,
                    c"acme-tls/1".as_ptr(),
                ) != 0,
                origin: Origin {
                    file: apr::to_string(r.defn_name),
                    line: r.defn_line_number,
                },
                port: r.port,
                server_admin: apr::to_string(r.server_admin),
            });
            s = r.next;
        }
    }
    out
}

/// The local ports httpd listens on.
///
/// # Safety
/// Call in post_config or later, when `ap_listeners` is set up.
unsafe fn listen_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    // SAFETY: a null-terminated list owned by httpd; bind_addr is always set.
    unsafe {
        let mut l = ffi::ap_listeners;
        while !l.is_null() {
            if !(*l).bind_addr.is_null() {
                ports.push((*(*l).bind_addr).port);
            }
            l = (*l).next;
        }
    }
    ports
}

/// httpd: post_config after mod_ssl: link MDs to vhosts and run the C module's checks.
#[no_mangle]
pub unsafe extern "C" fn md_rs_post_config_after_ssl(
    pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    guard("post_config", s, FAILED, || {
        if is_dry_run() {
            return OK;
        }
        // SAFETY: pconf and s are httpd's live config pool and base server.
        let state = unsafe { mod_state(pconf) };
        // SAFETY: as above.
        let vhosts = unsafe { collect_vhosts(s, &state.ssl_servers) };
        let assignment = vhosts
            .iter()
            .map(|v| state.server_mds.get(&v.key).cloned().unwrap_or_default());
        let names_before: Vec<usize> = state.mds.iter().map(|m| m.domains.len()).collect();
        let linked = vhosts::check(&mut state.mds, &vhosts, assignment.collect());
        let status = report(s, &linked.diagnostics);
        if status != OK {
            return status;
        }
        state.md_index = md_core::md::MdIndex::of(&state.mds);
        // MDMembers auto added vhost names: md.json holds them from now on (as the C module,
        // which finishes its store sync here), so a rename is detected on them and the store
        // describes what is ordered.
        let grown = state
            .mds
            .iter()
            .zip(&names_before)
            .any(|(m, n)| m.domains.len() != *n);
        if grown {
            sync_after_linking(s, state);
        }
        if let Some(registry) = &state.registry {
            match registry.purge_unused_challenges(&state.mds) {
                Ok(removed) if !removed.is_empty() => log_s!(
                    s,
                    Level::Debug,
                    "removed challenge data of names no MD has: {}",
                    removed.join(", ")
                ),
                Ok(_) => {}
                Err(e) => log_s!(s, Level::Warning, "purging unused challenge data: {e}"),
            }
        }
        let map = state.config.global.port_map.unwrap_or_default();
        // SAFETY: ap_listeners is httpd's list of listeners, set up before post_config.
        let reach = Reachability::from_listeners(&unsafe { listen_ports() }, map);
        let support_of = |md: &ManagedDomain| ChallengeSupport {
            reach,
            acme_tls_1: !md.acme_tls_1.is_empty(),
            dns01_cmd: md.env.dns01_cmd.is_some(),
        };
        for (md, vs) in state.mds.iter_mut().zip(&linked.md_vhosts) {
            md.acme_tls_1 = vhosts::acme_tls_1_domains(md, vs, &vhosts);
            log_s!(
                s,
                Level::Debug,
                "MD {} [{}] used by {} vhost(s), acme-tls/1: [{}]",
                md.name,
                md.domains.join(", "),
                vs.len(),
                md.acme_tls_1.join(", ")
            );
            if md.renew_mode == RenewMode::Manual {
                continue;
            }
            if let Err(why) = challenges::candidates(&md.ca_challenges, support_of(md)) {
                log_s!(s, Level::Err, "AH10173: md[{}]: {why}", md.name);
            }
        }
        // Watched: every MD except auto-renewed ones that no vhost uses.
        let is_watched: Vec<bool> = state
            .mds
            .iter()
            .zip(&linked.md_vhosts)
            .map(|(md, vs)| !(md.renew_mode == RenewMode::Auto && vs.is_empty()))
            .collect();
        // Status facts now, as root: children cannot read domains/.
        // SAFETY: s is the live base server, in the config phase.
        let pairs = unsafe { crate::state::pair_cache(s) };
        state.status = crate::status::snapshots(&state.mds, &is_watched, &state.store_dir, pairs);
        // Pairs of MDs no longer configured are forgotten.
        pairs.sweep();
        // The renewal decisions rest on the same facts (the child cannot read them).
        let watched: Vec<watchdog::WatchedMd> = state
            .mds
            .iter()
            .zip(&state.status)
            .filter(|(_, snap)| snap.watched)
            .map(|(md, snap)| watchdog::WatchedMd {
                md: md.clone(),
                support: support_of(md),
                active: std::sync::Mutex::new(ActiveCerts::from_snapshot(snap)),
                revoked: Default::default(),
                next_visit: Default::default(),
            })
            .collect();
        match cluster_settings(&state.config.global) {
            Ok(c) => state.cluster = c,
            Err(e) => {
                log_s!(s, Level::Emerg, "{e}");
                return FAILED;
            }
        }
        if let Some(c) = &state.cluster {
            log_s!(
                s,
                Level::Info,
                "cluster mode: node {}, lease {} s, poll {} s",
                c.node,
                c.lease.as_secs(),
                c.poll.as_secs()
            );
        }
        let g = &state.config.global;
        let defaults = RenewSettings::default();
        let retry_delay = g.retry_delay.unwrap_or(defaults.retry_delay);
        if let Some(store) = open_store_logged(s, &state.store_dir) {
            let registry = state.ocsp.clone();
            let events = events_of(state);
            // SAFETY: pconf and s are live; the watchdog data is owned by pconf.
            let started = unsafe {
                crate::ocsp::start(
                    pconf,
                    s,
                    registry,
                    store,
                    &state.config,
                    events,
                    retry_delay,
                )
            };
            if let Err(rv) = started {
                log_s!(
                    s,
                    Level::Err,
                    "unable to start the OCSP watchdog (status {rv})"
                );
            }
        }
        if watched.is_empty() {
            return OK;
        }
        let Some(store) = open_store_logged(s, &state.store_dir) else {
            return FAILED;
        };
        let settings = RenewSettings {
            retry_delay,
            retry_failover: g.retry_failover.unwrap_or(defaults.retry_failover),
            activation_delay: g.activation_delay.unwrap_or_default(),
            dns01_version: g.dns01_version.unwrap_or(1),
            generation_started: chrono::Utc::now(),
        };
        let plan = watchdog::RenewPlan {
            mds: watched,
            store,
            store_dir: state.store_dir.clone(),
            settings,
            events: events_of(state),
            check_interval: g.check_interval,
            initial_delay: g.initial_delay,
            ocsp: state.ocsp.clone(),
            ari: Default::default(),
            connections: Default::default(),
            cluster: state.cluster.clone().map(watchdog::ClusterPlan::new),
        };
        // SAFETY: pconf and s are live; the watchdog data is owned by pconf.
        let started = unsafe { watchdog::start(pconf, s, plan) };
        match started {
            Ok(()) => OK,
            Err(rv) => {
                log_s!(
                    s,
                    Level::Crit,
                    "mod_watchdog is required for mod_md (status {rv})"
                );
                FAILED
            }
        }
    })
}

/// Default MDClusterLease.
const CLUSTER_LEASE: std::time::Duration = std::time::Duration::from_secs(300);
/// Default MDClusterPoll.
const CLUSTER_POLL: std::time::Duration = std::time::Duration::from_secs(60);

/// The cluster settings of MDClusterDatabase and friends, with the files read (as root, in
/// the parent: the children cannot read them); `None` outside cluster mode.
fn cluster_settings(
    g: &md_core::config::settings::GlobalSettings,
) -> Result<Option<md_cluster::ClusterSettings>, String> {
    let Some(db) = &g.cluster_database else {
        if g.cluster_key_file.is_some() || g.cluster_node.is_some() {
            return Err("MDClusterKeyFile/MDClusterNode need MDClusterDatabase".into());
        }
        return Ok(None);
    };
    let Some(key) = &g.cluster_key_file else {
        return Err(format!(
            "MDClusterDatabase {db} needs MDClusterKeyFile: the key that encrypts private keys \
             in the cluster database (the same file on every node)"
        ));
    };
    let node = g.cluster_node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into())
    });
    md_cluster::ClusterSettings::load(
        db,
        key,
        node,
        g.cluster_lease.unwrap_or(CLUSTER_LEASE),
        g.cluster_poll.unwrap_or(CLUSTER_POLL),
    )
    .map(Some)
}

/// mod_ssl: certificate files for an SSL vhost. Being asked marks the vhost as SSL. The MD's
/// static files are given, else the store's `domains/<md>/` files of every key spec that has
/// both key and certificate (a missing spec is skipped, so adding a key type does not break a
/// running MD).
#[no_mangle]
pub unsafe extern "C" fn md_rs_add_cert_files(
    s: *mut ffi::server_rec,
    p: *mut ffi::apr_pool_t,
    cert_files: *mut ffi::apr_array_header_t,
    key_files: *mut ffi::apr_array_header_t,
) -> c_int {
    guard("ssl_add_cert_files", s, DECLINED, || {
        // SAFETY: s is a live server_rec of the current generation.
        let state = unsafe { mod_state(pconf_of(s)) };
        state.ssl_servers.insert(s as usize);
        let count = state.server_mds.get(&(s as usize)).map_or(0, Vec::len);
        if count > 1 {
            // SAFETY: s is live; server_hostname is a C string or null.
            let name = unsafe { apr::to_string((*s).server_hostname) };
            log_s!(
                s,
                Level::Err,
                "{}",
                vhosts::ssl_conflict_message(count, &name)
            );
            return DECLINED;
        }
        let Some(md) = state.md_of_server(s as usize) else {
            return DECLINED;
        };
        let (files, problems) =
            // SAFETY: s is live, mod_ssl asks in the parent's config phase.
            md_core::serve::cert_files_cached(md, &state.store_dir, unsafe { crate::state::pair_cache(s) });
        for p in &problems {
            log_s!(
                s,
                Level::Err,
                "MD {}: certificate not used, it cannot be loaded: {p}. Serving the others or \
                 the fallback; a new certificate is ordered",
                md.name
            );
        }
        if files.is_empty() {
            return DECLINED;
        }
        for (cert, key) in &files {
            log_s!(
                s,
                Level::Debug,
                "MD {}: certificate {cert}, key {key}",
                md.name
            );
        }
        // SAFETY: the arrays belong to mod_ssl's call and p outlives them.
        unsafe { push_files(p, cert_files, key_files, &files) };
        OK
    })
}

/// mod_ssl: a vhost of an MD without certificates gets a self-signed fallback, so mod_ssl
/// starts and answers 503 until the real certificate is activated.
#[no_mangle]
pub unsafe extern "C" fn md_rs_add_fallback_cert_files(
    s: *mut ffi::server_rec,
    p: *mut ffi::apr_pool_t,
    cert_files: *mut ffi::apr_array_header_t,
    key_files: *mut ffi::apr_array_header_t,
) -> c_int {
    guard("ssl_add_fallback_cert_files", s, DECLINED, || {
        // SAFETY: s is a live server_rec of the current generation.
        let state = unsafe { mod_state(pconf_of(s)) };
        let Some(md) = state.md_of_server(s as usize) else {
            return DECLINED;
        };
        let md = md.clone();
        match md_core::serve::fallback_files(&md, &state.store_dir, &mut state.fallback_keys) {
            Ok(files) => {
                // SAFETY: the arrays belong to mod_ssl's call and p outlives them.
                unsafe { push_files(p, cert_files, key_files, &files) };
                log_s!(
                    s,
                    Level::Debug,
                    "MD {}: no certificate yet, using fallback",
                    md.name
                );
                OK
            }
            Err(e) => {
                log_s!(
                    s,
                    Level::Err,
                    "MD {}: cannot create fallback certificate: {e}",
                    md.name
                );
                DECLINED
            }
        }
    })
}
