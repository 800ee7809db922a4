//! Typed access on top of [`Store`]: JSON documents, keys (encrypted per group), certificates.

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;

use super::{
    files, keys, AccountRecord, FileKind, Group, JobRecord, MdRecord, OrderRecord, Store,
    StoreError,
};
use crate::md::KeySpec;

/// A private key with its certificate chain (leaf first).
pub type KeyAndChain = (PKey<Private>, Vec<X509>);

/// JSON as mod_md writes it: 2-space indent, no trailing newline, keys in insertion order.
pub(crate) fn to_json_bytes<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("serializing plain data cannot fail")
}

/// The kind of a JSON file that holds a credential in the clear or not.
fn secret_if(secret: bool) -> FileKind {
    if secret {
        FileKind::Secret
    } else {
        FileKind::Json
    }
}

/// md.json carries the MD's EAB hmac and its MDHttpProxy URL, which may hold a password.
fn md_holds_secret(md: &crate::md::ManagedDomain) -> bool {
    matches!(md.eab, Some(crate::config::values::Eab::Key { .. }))
        || md
            .env_own
            .proxy_url
            .as_deref()
            .is_some_and(|u| u.contains('@'))
}

/// The file's full path for messages (an admin must find it), else its store-relative name.
fn display<S: Store + ?Sized>(st: &S, group: Group, name: &str, file: &str) -> String {
    match st.path(group, name, file) {
        Some(p) => p.display().to_string(),
        None => format!("{}/{}/{}", group.dir(), name, file),
    }
}

fn parsed<T, S: Store + ?Sized>(
    st: &S,
    group: Group,
    name: &str,
    file: &str,
    data: Option<Vec<u8>>,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Option<T>, StoreError> {
    data.map(|d| {
        parse(&d).map_err(|detail| StoreError::Json {
            path: display(st, group, name, file),
            detail,
        })
    })
    .transpose()
}

/// Typed helpers, available on every [`Store`].
pub trait StoreExt: Store {
    /// md.json of `(group, name)`.
    fn load_md(&self, group: Group, name: &str) -> Result<Option<MdRecord>, StoreError> {
        let d = self.load(group, name, files::MD)?;
        parsed(self, group, name, files::MD, d, MdRecord::parse)
    }
    /// Write md.json.
    fn save_md(&self, group: Group, rec: &MdRecord) -> Result<(), StoreError> {
        self.save(
            group,
            &rec.md.name,
            files::MD,
            &rec.to_json(),
            secret_if(md_holds_secret(&rec.md)),
        )
    }
    /// job.json of `(group, name)`.
    fn load_job(&self, group: Group, name: &str) -> Result<Option<JobRecord>, StoreError> {
        let d = self.load(group, name, files::JOB)?;
        parsed(self, group, name, files::JOB, d, JobRecord::parse)
    }
    /// Write job.json.
    fn save_job(&self, group: Group, name: &str, job: &JobRecord) -> Result<(), StoreError> {
        self.save(group, name, files::JOB, &job.to_json(), FileKind::Json)
    }
    /// account.json.
    fn load_account(&self, group: Group, id: &str) -> Result<Option<AccountRecord>, StoreError> {
        let d = self.load(group, id, files::ACCOUNT)?;
        parsed(self, group, id, files::ACCOUNT, d, AccountRecord::parse)
    }
    /// Write account.json.
    fn save_account(&self, group: Group, id: &str, a: &AccountRecord) -> Result<(), StoreError> {
        self.save(
            group,
            id,
            files::ACCOUNT,
            &a.to_json(),
            secret_if(a.eab.is_some()),
        )
    }
    /// order.json.
    fn load_order(&self, group: Group, name: &str) -> Result<Option<OrderRecord>, StoreError> {
        let d = self.load(group, name, files::ORDER)?;
        parsed(self, group, name, files::ORDER, d, OrderRecord::parse)
    }
    /// Write order.json.
    fn save_order(&self, group: Group, name: &str, o: &OrderRecord) -> Result<(), StoreError> {
        self.save(group, name, files::ORDER, &o.to_json(), FileKind::Json)
    }

    /// Encode a key for `group`: encrypted unless the group holds plain keys.
    fn encode_key(&self, group: Group, key: &PKey<Private>) -> Result<Vec<u8>, StoreError> {
        let secret = (!group.plain_keys()).then(|| self.secret());
        keys::key_to_pem(key, secret).map_err(|detail| StoreError::Crypto {
            path: group.dir().into(),
            detail,
        })
    }
    /// A private key (decrypted as needed).
    fn load_pkey(
        &self,
        group: Group,
        name: &str,
        file: &str,
    ) -> Result<Option<PKey<Private>>, StoreError> {
        let Some(d) = self.load(group, name, file)? else {
            return Ok(None);
        };
        keys::key_from_pem(&d, Some(self.secret()))
            .map(Some)
            .map_err(|detail| StoreError::Crypto {
                path: display(self, group, name, file),
                detail,
            })
    }
    /// Write a private key alone (encrypted per group, mode 0600 when plain).
    fn save_pkey(
        &self,
        group: Group,
        name: &str,
        file: &str,
        key: &PKey<Private>,
    ) -> Result<(), StoreError> {
        let pem = self.encode_key(group, key)?;
        self.save(group, name, file, &pem, FileKind::PrivateKey)
    }
    /// A certificate chain (leaf first).
    fn load_chain(
        &self,
        group: Group,
        name: &str,
        file: &str,
    ) -> Result<Option<Vec<X509>>, StoreError> {
        let Some(d) = self.load(group, name, file)? else {
            return Ok(None);
        };
        keys::chain_from_pem(&d)
            .map(Some)
            .map_err(|detail| StoreError::Crypto {
                path: display(self, group, name, file),
                detail,
            })
    }
    /// Write `privkey[.spec].pem` + `pubcert[.spec].pem` together, after checking they match.
    fn save_cert_and_key(
        &self,
        group: Group,
        name: &str,
        spec: &KeySpec,
        key: &PKey<Private>,
        chain: &[X509],
    ) -> Result<(), StoreError> {
        let leaf = chain.first().ok_or_else(|| StoreError::Crypto {
            path: display(self, group, name, &files::pubcert(spec)),
            detail: "empty certificate chain".into(),
        })?;
        if !keys::key_matches_cert(key, leaf) {
            return Err(StoreError::KeyMismatch(display(
                self,
                group,
                name,
                &files::pubcert(spec),
            )));
        }
        let key_pem = self.encode_key(group, key)?;
        let cert_pem = keys::chain_to_pem(chain).map_err(|detail| StoreError::Crypto {
            path: display(self, group, name, &files::pubcert(spec)),
            detail,
        })?;
        let (kf, cf) = (files::privkey(spec), files::pubcert(spec));
        self.save_pair(group, name, &kf, &key_pem, &cf, &cert_pem)
    }
    /// The key and chain of `spec` if both exist and belong together.
    fn load_cert_and_key(
        &self,
        group: Group,
        name: &str,
        spec: &KeySpec,
    ) -> Result<Option<KeyAndChain>, StoreError> {
        let (kf, cf) = (files::privkey(spec), files::pubcert(spec));
        let (Some(key), Some(chain)) = (
            self.load_pkey(group, name, &kf)?,
            self.load_chain(group, name, &cf)?,
        ) else {
            return Ok(None);
        };
        if !keys::key_matches_cert(&key, &chain[0]) {
            return Err(StoreError::KeyMismatch(display(self, group, name, &cf)));
        }
        Ok(Some((key, chain)))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
