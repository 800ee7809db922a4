//! `acme newreg|delreg|agree|validate`: accounts in `accounts/`, as the module keeps them.

use std::sync::Arc;

use md_core::acme::{AccountKey, AcmeClient, NewAccount};
use md_core::apr::AprStatus;
use md_core::crypt::{KeyType, PrivateKey};
use md_core::http::{HttpConfig, ReqwestClient};
use md_core::md::contact_uri;
use md_core::store::{files, AccountRecord, FsStore, Group, Store, StoreExt};
use serde_json::json;

use crate::cli::{AcmeCmd, Cli};
use crate::out::{CmdResult, Fail, Out};
use crate::store::{dir_of, open_write};

/// Highest account number tried (ACME-<host>-0000..0999, as the module).
const MAX_ACCOUNT: u32 = 999;

/// The HTTP settings of the tool's own requests (-C, -p).
pub fn http_config(cli: &Cli) -> HttpConfig {
    HttpConfig {
        ca_file: cli.ca_certs.clone(),
        proxy_url: cli.proxy.clone(),
        ..HttpConfig::default()
    }
}

/// Connect to the CA at `url` (fetch its directory).
pub fn connect(cli: &Cli, url: &str) -> Result<AcmeClient, Fail> {
    let http = ReqwestClient::new(&http_config(cli))
        .map_err(|e| Fail::new(e.apr_status(), e.to_string()))?;
    AcmeClient::connect(Arc::new(http), url).map_err(|e| Fail::new(e.apr_status(), e.to_string()))
}

fn account_fail(e: md_core::acme::AccountError) -> Fail {
    Fail::new(e.apr_status(), e.to_string())
}

/// A stored account with its key.
fn load_account(store: &FsStore, id: &str) -> Result<(AccountRecord, AccountKey), Fail> {
    let unknown = || Fail::not_found(format!("unknown account '{id}'"));
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(unknown());
    }
    let rec = store
        .load_account(Group::Accounts, id)?
        .ok_or_else(unknown)?;
    let pkey = store
        .load_pkey(Group::Accounts, id, files::ACCOUNT_KEY)?
        .ok_or_else(|| Fail::not_found(format!("account '{id}' has no key (account.pem)")))?;
    let key = PrivateKey::from_pkey(pkey).map_err(|e| Fail::general(e.to_string()))?;
    let url = rec.url.clone();
    Ok((rec, AccountKey::new(key, url)))
}

/// The terms-of-service URL that `-t` names (`accepted`: the CA's current ones).
fn terms(cli: &Cli, client: &AcmeClient) -> Option<String> {
    match cli.terms.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("accepted") => {
            client.directory().terms_of_service.clone()
        }
        Some(t) => Some(t.to_string()),
        None => None,
    }
}

/// Run an `acme` sub-command.
pub fn run(cli: &Cli, out: &mut Out, cmd: &AcmeCmd) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    match cmd {
        AcmeCmd::Newreg { contacts } => {
            let url = cli
                .acme
                .as_deref()
                .ok_or_else(|| Fail::usage("acme newreg needs the CA's directory URL: -a URL"))?;
            let client = connect(cli, url)?;
            let ws = open_write(root)?;
            let key = PrivateKey::generate_with_threads(KeyType::ACCOUNT_DEFAULT)
                .map_err(|e| Fail::general(e.to_string()))?;
            let new = NewAccount {
                contacts: contacts.iter().map(|c| contact_uri(c)).collect(),
                agreement: terms(cli, &client),
                eab: None,
            };
            let acct = client.register_account(&key, &new).map_err(account_fail)?;
            // read it back, as the C tool does
            let ak = AccountKey::new(key, acct.url.clone());
            let acct = client.validate_account(&ak, None).map_err(account_fail)?;
            let existing = ws.store.names(Group::Accounts)?;
            let id = (0..=MAX_ACCOUNT)
                .map(|n| AccountRecord::id_for(url, n))
                .find(|id| !existing.contains(id))
                .ok_or_else(|| Fail::general("no free account id in accounts/"))?;
            let rec = AccountRecord {
                status: Some(acct.status.clone()),
                url: acct.url.clone(),
                ca_url: url.to_string(),
                contact: acct.contact.clone(),
                registration: Some(acct.registration.clone()),
                agreement: acct.agreement.clone().or(new.agreement.clone()),
                orders: acct.orders.clone(),
                ..Default::default()
            };
            // key first: an account.json without its key would be picked up and fail
            ws.store
                .save_pkey(Group::Accounts, &id, files::ACCOUNT_KEY, ak.key.pkey())?;
            ws.store.save_account(Group::Accounts, &id, &rec)?;
            out.emit(
                &format!("registered: {id}"),
                json!({"id": id, "url": rec.url, "ca-url": rec.ca_url, "status": rec.status}),
            );
        }
        AcmeCmd::Delreg { accounts } => {
            let ws = open_write(root)?;
            for id in accounts {
                let (rec, ak) = load_account(&ws.store, id)?;
                let client = connect(cli, cli.acme.as_deref().unwrap_or(&rec.ca_url))?;
                client.deactivate_account(&ak).map_err(account_fail)?;
                ws.store.purge(Group::Accounts, id)?;
                out.emit(&format!("deleted: {id}"), json!({"id": id, "url": rec.url}));
            }
        }
        AcmeCmd::Agree { accounts } => {
            let ws = open_write(root)?;
            for id in accounts {
                let (mut rec, ak) = load_account(&ws.store, id)?;
                let client = connect(cli, &rec.ca_url)?;
                let tos = terms(cli, &client)
                    .or_else(|| client.directory().terms_of_service.clone())
                    .unwrap_or_else(|| "accepted".to_string());
                // with the contacts: a CA may refuse an update that changes nothing else
                // (pebble: "empty update")
                let payload = json!({"termsOfServiceAgreed": true, "contact": rec.contact});
                let resp = client
                    .post(
                        &ak.url,
                        &ak.key,
                        md_core::acme::jws::KeyRef::Kid(&ak.url),
                        Some(&payload),
                    )
                    .map_err(|e| Fail::new(e.apr_status(), e.to_string()))?;
                if let Ok(reg) = serde_json::from_slice::<serde_json::Value>(&resp.body) {
                    rec.registration = Some(reg);
                }
                rec.agreement = Some(tos.clone());
                ws.store.save_account(Group::Accounts, id, &rec)?;
                out.emit(
                    &format!("agreed terms-of-service: {tos}"),
                    json!({"id": id, "agreement": tos}),
                );
            }
        }
        AcmeCmd::Validate { accounts } => {
            let ws = open_write(root)?;
            for id in accounts {
                let (mut rec, ak) = load_account(&ws.store, id)?;
                let client = connect(cli, &rec.ca_url)?;
                match client.validate_account(&ak, None) {
                    Ok(a) if a.is_valid() => {
                        out.emit(
                            &format!("account valid: {id}"),
                            json!({"id": id, "status": a.status, "url": a.url}),
                        );
                    }
                    Ok(a) => {
                        rec.status = Some(a.status.clone());
                        ws.store.save_account(Group::Accounts, id, &rec)?;
                        return Err(Fail::new(
                            AprStatus::ENOENT,
                            format!("unknown account: {id} (status at the CA: {})", a.status),
                        ));
                    }
                    Err(e) if e.is_account_gone() => {
                        return Err(Fail::new(
                            AprStatus::ENOENT,
                            format!("unknown account: {id} ({e})"),
                        ))
                    }
                    Err(e) => return Err(account_fail(e)),
                }
            }
        }
    }
    Ok(())
}
