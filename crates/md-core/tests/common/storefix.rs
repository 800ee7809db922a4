//! Fixtures for store tests: managed domains, keys and self-signed certificates made locally.
#![allow(dead_code)]

use md_core::config::values::{RenewMode, RequireHttps};
use md_core::config::{EnvSettings, Origin};
use md_core::md::{KeySpec, ManagedDomain};
use md_core::store::{files, keys, FileKind, Group, MdRecord, Store, StoreExt};
use md_core::time::Timeslice;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// A resolved MD with defaults and the given names and key specs.
pub fn md(name: &str, domains: &[&str], specs: &[KeySpec]) -> ManagedDomain {
    ManagedDomain {
        name: name.into(),
        domains: domains.iter().map(|s| s.to_string()).collect(),
        contacts: vec!["mailto:admin@example.org".into()],
        transitive: true,
        ca_urls: vec!["https://127.0.0.1:14000/dir".into()],
        ca_proto: "ACME".into(),
        ca_agreement: Some("accepted".into()),
        ca_challenges: vec![],
        private_keys: specs.to_vec(),
        keys_explicit: specs != [KeySpec::Default],
        renew_mode: RenewMode::Auto,
        renew_window: Timeslice::Percent(33),
        warn_window: Timeslice::Percent(10),
        require_https: RequireHttps::Off,
        must_staple: false,
        stapling: false,
        cert_files: vec![],
        pkey_files: vec![],
        env: EnvSettings::default(),
        env_own: EnvSettings::default(),
        eab: None,
        profile: None,
        profile_mandatory: false,
        preferred_chain: None,
        ari_renewals: true,
        acme_tls_1: vec![],
        origin: Origin::default(),
    }
}

/// A fresh key for `spec` (RSA keys are generated once per process and cached: slow).
pub fn key(spec: &KeySpec) -> PKey<Private> {
    match spec {
        KeySpec::Ec { .. } => {
            let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap()
        }
        _ => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
    }
}

/// A self-signed certificate for `names` with `key`, serial `serial`.
pub fn cert(key: &PKey<Private>, names: &[&str], serial: u32) -> X509 {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("CN", names[0]).unwrap();
    let n = n.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_issuer_name(&n).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(90).unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    for d in names {
        san.dns(d);
    }
    let ext = san.build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(ext).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

/// One generation of key+cert per spec.
pub struct CertSet {
    pub pairs: Vec<(KeySpec, PKey<Private>, X509)>,
}

impl CertSet {
    pub fn new(specs: &[KeySpec], names: &[&str], serial: u32) -> CertSet {
        CertSet {
            pairs: specs
                .iter()
                .map(|s| {
                    let k = key(s);
                    let c = cert(&k, names, serial);
                    (s.clone(), k, c)
                })
                .collect(),
        }
    }
    pub fn fingerprints(&self) -> Vec<String> {
        self.pairs
            .iter()
            .map(|(_, _, c)| keys::fingerprint_sha256(c))
            .collect()
    }
}

/// Active set in domains/ (md.json complete + keys + certs).
pub fn put_active(st: &impl Store, m: &ManagedDomain, set: &CertSet) {
    let mut rec = MdRecord::new(m.clone());
    rec.state = md_core::store::MdState::Complete;
    rec.ca_url = Some(m.ca_urls[0].clone());
    st.save_md(Group::Domains, &rec).unwrap();
    for (s, k, c) in &set.pairs {
        st.save_cert_and_key(Group::Domains, &m.name, s, k, std::slice::from_ref(c))
            .unwrap();
    }
}

/// A finished staging set (encrypted keys, ca.url, job.json, optional staged account).
pub fn put_staged(st: &impl Store, m: &ManagedDomain, set: &CertSet, account: bool) {
    let mut rec = MdRecord::new(m.clone());
    rec.ca_url = Some(m.ca_urls[0].clone());
    st.save_md(Group::Staging, &rec).unwrap();
    let job = md_core::store::JobRecord {
        name: m.name.clone(),
        finished: true,
        ..Default::default()
    };
    st.save_job(Group::Staging, &m.name, &job).unwrap();
    for (s, k, c) in &set.pairs {
        st.save_cert_and_key(Group::Staging, &m.name, s, k, std::slice::from_ref(c))
            .unwrap();
    }
    if account {
        let a = md_core::store::AccountRecord {
            status: Some("valid".into()),
            url: "https://127.0.0.1:14000/my-account/1".into(),
            ca_url: m.ca_urls[0].clone(),
            contact: m.contacts.clone(),
            ..Default::default()
        };
        st.save_account(Group::Staging, &m.name, &a).unwrap();
        let k = key(&KeySpec::Ec {
            curve: "secp256r1".into(),
        });
        st.save_pkey(Group::Staging, &m.name, files::ACCOUNT_KEY, &k)
            .unwrap();
    }
    st.save(
        Group::Challenges,
        &m.domains[0],
        files::HTTP01,
        b"tok.thumb",
        FileKind::Text,
    )
    .unwrap();
}

/// Every (privkey*, pubcert*) pair in every directory of the store matches; returns the
/// number of pairs checked.
pub fn assert_all_pairs_match(st: &impl Store) -> usize {
    let mut n = 0;
    for g in Group::ALL {
        for name in st.names(g).unwrap() {
            for f in st.files(g, &name).unwrap() {
                let Some(rest) = f.strip_prefix("pubcert") else {
                    continue;
                };
                let kf = format!("privkey{rest}");
                let chain = st.load_chain(g, &name, &f).unwrap().unwrap();
                if let Some(k) = st.load_pkey(g, &name, &kf).unwrap() {
                    assert!(
                        keys::key_matches_cert(&k, &chain[0]),
                        "{}/{name}/{f} does not match its key",
                        g.dir()
                    );
                    n += 1;
                }
            }
        }
    }
    n
}
