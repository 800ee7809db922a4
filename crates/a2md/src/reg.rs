//! `add`, `update`, `list` and the raw `store` commands.

use chrono::Utc;
use md_core::md::contact_uri;
use md_core::status::{MdSnapshot, MdView, Renewal};
use md_core::store::{files, FsStore, Group, MdRecord, MdState, Store, StoreExt};

use crate::cli::{Cli, StoreCmd, StoreUpdateCmd, UpdateCmd};
use crate::out::{CmdResult, Fail, Out};
use crate::store::{
    check_domains, check_overlap, dir_of, md_line, md_value, new_md, open_read, open_write,
    stored_mds,
};

fn print_md(out: &mut Out, rec: &MdRecord) {
    out.emit(&md_line(&rec.md), md_value(rec));
}

fn load_existing(store: &FsStore, name: &str) -> Result<MdRecord, Fail> {
    store
        .load_md(Group::Domains, name)?
        .ok_or_else(|| Fail::not_found(format!("unknown Managed Domain '{name}'")))
}

/// A new record as the registry creates it: incomplete until it has certificates.
fn new_record(domains: &[String], ca: Option<&str>) -> Result<MdRecord, Fail> {
    let mut rec = MdRecord::new(new_md(domains, ca)?);
    rec.state = MdState::Incomplete;
    Ok(rec)
}

/// `add <domain...>`.
pub fn add(cli: &Cli, out: &mut Out, domains: &[String]) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    let domains = check_domains(domains)?;
    let ws = open_write(root)?;
    let name = &domains[0];
    if ws.store.exists(Group::Domains, name, files::MD) {
        return Err(Fail::invalid(format!(
            "a Managed Domain named '{name}' already exists"
        )));
    }
    check_overlap(&ws.store, &domains, None)?;
    let rec = new_record(&domains, cli.acme.as_deref())?;
    ws.store.save_md(Group::Domains, &rec)?;
    print_md(out, &rec);
    Ok(())
}

/// `update <name> ...`.
pub fn update(cli: &Cli, out: &mut Out, name: &str, what: Option<&UpdateCmd>) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    let ws = open_write(root)?;
    let mut rec = load_existing(&ws.store, name)?;
    if let Some(url) = &cli.acme {
        rec.md.ca_urls = vec![url.clone()];
    }
    match what {
        None if cli.acme.is_none() => {
            return Err(Fail::usage(
                "update needs what to change: domains, ca, account, contacts or agreement",
            ))
        }
        None => {}
        Some(UpdateCmd::Domains { domains }) => {
            let domains = check_domains(domains)?;
            check_overlap(&ws.store, &domains, Some(name))?;
            rec.md.domains = domains;
        }
        Some(UpdateCmd::Ca { url, proto }) => {
            if let Some(p) = proto {
                if p != "ACME" {
                    return Err(Fail::invalid(format!(
                        "unknown CA protocol '{p}' (only ACME is supported)"
                    )));
                }
                rec.md.ca_proto = p.clone();
            }
            rec.md.ca_urls = vec![url.clone()];
        }
        Some(UpdateCmd::Account { id }) => {
            if ws.store.load_account(Group::Accounts, id)?.is_none() {
                return Err(Fail::not_found(format!("unknown account '{id}'")));
            }
            rec.ca_account = Some(id.clone());
        }
        Some(UpdateCmd::Contacts { contacts }) => {
            rec.md.contacts = contacts.iter().map(|c| contact_uri(c)).collect();
        }
        Some(UpdateCmd::Agreement { url }) => rec.md.ca_agreement = Some(url.clone()),
    }
    ws.store.save_md(Group::Domains, &rec)?;
    print_md(out, &rec);
    Ok(())
}

/// `list`: every MD, with `renew` (a renewal is due or in progress) in JSON.
pub fn list(cli: &Cli, out: &mut Out) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    let store = open_read(root)?;
    let now = Utc::now();
    for rec in stored_mds(&store)? {
        let mut v = md_value(&rec);
        let snap = MdSnapshot::load(&rec.md, root, true);
        let view = MdView {
            snap: &snap,
            renewal: Renewal::load(&rec.md, root),
            ocsp: Vec::new(),
        };
        v["renew"] = view.renew(now).into();
        out.emit(&md_line(&rec.md), v);
    }
    Ok(())
}

/// `store add|remove|list|update`.
pub fn store_cmd(cli: &Cli, out: &mut Out, cmd: &StoreCmd) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    match cmd {
        StoreCmd::List => {
            let store = open_read(root)?;
            for rec in stored_mds(&store)? {
                print_md(out, &rec);
            }
        }
        StoreCmd::Add { domains } => {
            let ws = open_write(root)?;
            let domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
            let rec = new_record(&domains, cli.acme.as_deref())?;
            ws.store.save_md(Group::Domains, &rec)?;
            print_md(out, &rec);
        }
        StoreCmd::Remove { force, names } => {
            let ws = open_write(root)?;
            for name in names {
                if !ws.store.exists(Group::Domains, name, files::MD) {
                    if *force {
                        continue;
                    }
                    return Err(Fail::not_found(format!("unknown Managed Domain '{name}'")));
                }
                ws.store.remove(Group::Domains, name, files::MD)?;
            }
        }
        StoreCmd::Update { name, what } => {
            let ws = open_write(root)?;
            let mut rec = load_existing(&ws.store, name)?;
            match what {
                Some(StoreUpdateCmd::Domains { domains }) => {
                    rec.md.domains = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
                }
                None => return Err(Fail::usage("store update needs: domains DNS...")),
            }
            ws.store.save_md(Group::Domains, &rec)?;
            print_md(out, &rec);
        }
    }
    Ok(())
}
