//! Opening the store the way a2md may touch it beside a running httpd, and the registry
//! checks of names (valid DNS names, no overlap between MDs).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use md_core::apr::AprStatus;
use md_core::config::vhosts::domain_covers;
use md_core::config::{ArgValue, Context, ModConfig, Settings};
use md_core::md::ManagedDomain;
use md_core::reg::StoreLock;
use md_core::store::{FsStore, Group, MdRecord, OpenError, Store, StoreExt, StoreOptions};

use crate::out::Fail;

/// How long a writing command waits for store.lock (a server syncing or activating holds it
/// for milliseconds to seconds).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// A store opened for writing, with the store lock held for as long as it lives.
pub struct WriteStore {
    /// The store.
    pub store: FsStore,
    _lock: StoreLock,
}

/// `-d` is required.
pub fn dir_of(dir: &Option<PathBuf>) -> Result<&Path, Fail> {
    dir.as_deref().ok_or_else(|| {
        Fail::usage("no store directory given: use -d STORE (e.g. -d /etc/apache2/md)")
    })
}

/// The store secret must be readable: without it, keys in accounts/ and staging/ can be
/// neither read nor written (and a new store must not be made beside an existing one).
fn check_secret(root: &Path) -> Result<bool, Fail> {
    let meta = root.join("md_store.json");
    match std::fs::File::open(&meta) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Fail::new(
            AprStatus::EACCES,
            format!(
                "cannot read {}: permission denied. It holds the key of the store's private \
                 keys; run a2md as the store's owner (usually root).",
                meta.display()
            ),
        )),
        Err(e) => Err(Fail::new(
            AprStatus::of_io(&e),
            format!("cannot read {}: {e}", meta.display()),
        )),
    }
}

fn open_error(e: OpenError) -> Fail {
    match e {
        OpenError::Store(s) => s.into(),
        other => Fail::general(other.to_string()),
    }
}

/// Open read-only: nothing is created, repaired or recovered (list, status, check).
pub fn open_read(root: &Path) -> Result<FsStore, Fail> {
    if !root.is_dir() {
        return Err(Fail::not_found(format!(
            "store directory {} does not exist",
            root.display()
        )));
    }
    if !check_secret(root)? {
        return Err(Fail::not_found(format!(
            "{} is not a mod_md store (no md_store.json)",
            root.display()
        )));
    }
    let opts = StoreOptions {
        as_child: true,
        ..Default::default()
    };
    FsStore::open(root, opts).map_err(open_error)
}

/// The owner httpd's children write staging/ as (the module chowns it to its `User`): a2md
/// run as root keeps that ownership for what it writes there.
pub fn child_owner(root: &Path) -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let m = std::fs::metadata(root.join(Group::Staging.dir())).ok()?;
    (m.uid() != 0).then(|| (m.uid(), m.gid()))
}

/// Open for writing under the store lock (creating the store if there is none).
pub fn open_write(root: &Path) -> Result<WriteStore, Fail> {
    check_secret(root)?;
    let lock = |root: &Path| {
        StoreLock::acquire(root, LOCK_WAIT).map_err(|e| Fail::new(AprStatus::EAGAIN, e.to_string()))
    };
    // the lock file lives in the store: lock first when there is a store, else create it
    let early = if root.is_dir() {
        Some(lock(root)?)
    } else {
        None
    };
    let opts = StoreOptions {
        child_owner: child_owner(root),
        ..Default::default()
    };
    let store = FsStore::open(root, opts).map_err(open_error)?;
    let lock = match early {
        Some(l) => l,
        None => lock(root)?,
    };
    Ok(WriteStore { store, _lock: lock })
}

/// Check a DNS name as the C registry does: letters, digits and '-' in labels of 1-63
/// characters, at least two labels, 253 characters at most; punycode (`xn--`) is such a name;
/// a wildcard is `*.` before a valid name. Returns it lower-cased.
pub fn check_domain(d: &str) -> Result<String, Fail> {
    let lower = d.to_ascii_lowercase();
    let bad = || {
        Fail::invalid(format!(
            "invalid domain name '{d}': expected a DNS name such as example.org, \
             xn--bcher-kva.example or *.example.org"
        ))
    };
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.is_empty() || name.len() > 253 || !name.contains('.') {
        return Err(bad());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(lower)
}

/// All valid, lower-cased, without duplicates (first occurrence kept).
pub fn check_domains(ds: &[String]) -> Result<Vec<String>, Fail> {
    let mut out: Vec<String> = Vec::new();
    for d in ds {
        let d = check_domain(d)?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// MDs in domains/ with a readable md.json, sorted by name.
pub fn stored_mds(store: &FsStore) -> Result<Vec<MdRecord>, Fail> {
    let mut out = Vec::new();
    for name in store.names(Group::Domains)? {
        if let Some(rec) = store.load_md(Group::Domains, &name)? {
            out.push(rec);
        }
    }
    out.sort_by(|a, b| a.md.name.cmp(&b.md.name));
    Ok(out)
}

/// No domain of `domains` may be covered by another MD (than `except`) in the store.
pub fn check_overlap(
    store: &FsStore,
    domains: &[String],
    except: Option<&str>,
) -> Result<(), Fail> {
    for other in stored_mds(store)? {
        if Some(other.md.name.as_str()) == except {
            continue;
        }
        for d in domains {
            if let Some(o) = other
                .md
                .domains
                .iter()
                .find(|o| domain_covers(o, d) || domain_covers(d, o))
            {
                return Err(Fail::invalid(format!(
                    "domain '{d}' overlaps with '{o}' of the Managed Domain '{}'",
                    other.md.name
                )));
            }
        }
    }
    Ok(())
}

/// A new MD as `MDomain <domains>` with the defaults would define it.
pub fn new_md(domains: &[String], ca_url: Option<&str>) -> Result<ManagedDomain, Fail> {
    let (mut mc, mut srv) = (ModConfig::default(), Settings::default());
    mc.apply(
        &mut srv,
        &Context::default(),
        "MDomain",
        ArgValue::Words(domains.to_vec()),
    )
    .map_err(Fail::invalid)?;
    let def = mc
        .mds
        .first()
        .ok_or_else(|| Fail::invalid("no domain given"))?;
    let mut md = ManagedDomain::resolve(def, &srv, &mc);
    if let Some(url) = ca_url {
        md.ca_urls = vec![url.to_string()];
    }
    Ok(md)
}

/// md.json as written, as JSON (for `-j`): the file's own keys.
pub fn md_value(rec: &MdRecord) -> serde_json::Value {
    serde_json::from_slice(&rec.to_json()).unwrap_or(serde_json::Value::Null)
}

/// `md: name [a, b]` (the C tool's line).
pub fn md_line(md: &ManagedDomain) -> String {
    format!("md: {} [{}]", md.name, md.domains.join(", "))
}
