//! md-store-scale PHASE N DIR: one phase of the store benchmark per process, so that the peak
//! RSS (VmHWM) printed at the end belongs to that phase alone.
//!
//! Phases: `create` (sync N new MDs into an empty store, then give each an EC key + cert
//! outside the measurement), `startup` (open + sync of N unchanged MDs + load_stagings with
//! nothing staged: what httpd's parent does on every restart), `changed` (sync where every MD
//! changed, N rewrites), `activate` (stage and activate 100 sets).

use std::time::Instant;

use md_core::config::values::{RenewMode, RequireHttps};
use md_core::config::{EnvSettings, Origin};
use md_core::md::{KeySpec, ManagedDomain};
use md_core::reg::Registry;
use md_core::store::{files, FsStore, Group, MdRecord, Store, StoreExt, StoreOptions};
use md_core::time::Timeslice;
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509NameBuilder};

fn md(i: usize, contact: &str) -> ManagedDomain {
    let name = format!("d{i}.bench.test");
    ManagedDomain {
        domains: vec![name.clone(), format!("x{i}.bench.test")],
        name,
        contacts: vec![format!("mailto:{contact}")],
        transitive: true,
        ca_urls: vec!["https://127.0.0.1:14000/dir".into()],
        ca_proto: "ACME".into(),
        ca_agreement: Some("accepted".into()),
        ca_challenges: vec!["http-01".into()],
        private_keys: vec![KeySpec::Ec {
            curve: "secp256r1".into(),
        }],
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
        ari_renewals: true,
        origin: Origin::default(),
    }
}

fn pair() -> (PKey<openssl::pkey::Private>, openssl::x509::X509) {
    let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap();
    let mut nb = X509NameBuilder::new().unwrap();
    nb.append_entry_by_text("CN", "bench").unwrap();
    let nb = nb.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&nb).unwrap();
    b.set_issuer_name(&nb).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(90).unwrap())
        .unwrap();
    // one wildcard certificate covers every MD's names, so all MDs assess as complete
    let san = SubjectAlternativeName::new()
        .dns("*.bench.test")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (phase, n, dir) = (a[1].as_str(), a[2].parse::<usize>().unwrap(), &a[3]);
    let mds: Vec<ManagedDomain> = (0..n).map(|i| md(i, "admin@bench.test")).collect();
    let spec = mds[0].private_keys[0].clone();
    let open = || FsStore::open(dir, StoreOptions::default()).unwrap();
    let t = Instant::now();
    let what = match phase {
        "create" => {
            let reg = Registry::new(open());
            let rep = reg.sync(&mds).unwrap();
            assert_eq!(rep.new.len(), n);
            let secs = t.elapsed().as_secs_f64();
            // certificates for every MD, outside the measurement (plain writes)
            let (key, cert) = pair();
            let cert = cert.to_pem().unwrap();
            let kpem = key.private_key_to_pem_pkcs8().unwrap();
            for m in &mds {
                let d = std::path::Path::new(dir).join("domains").join(&m.name);
                std::fs::write(d.join(files::privkey(&spec)), &kpem).unwrap();
                std::fs::write(d.join(files::pubcert(&spec)), &cert).unwrap();
            }
            // state incomplete -> complete now that certificates exist (not measured)
            assert_eq!(reg.sync(&mds).unwrap().changed.len(), n);
            println!("create: sync of {n} new MDs: {secs:.3} s");
            return println!("create: peak RSS {} kB", peak_rss_kb());
        }
        "startup" => {
            let reg = Registry::new(open());
            let t_open = t.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let rep = reg.sync(&mds).unwrap();
            assert!(rep.changed.is_empty() && rep.new.is_empty(), "{rep:?}");
            let t_sync = t1.elapsed().as_secs_f64();
            let t2 = Instant::now();
            let r = reg.load_stagings(mds.iter().map(|m| m.name.as_str()));
            assert!(r.is_empty());
            format!(
                "open {t_open:.3} s + sync of {n} unchanged MDs {t_sync:.3} s + load_stagings \
                 (none staged) {:.3} s = total",
                t2.elapsed().as_secs_f64()
            )
        }
        "parse" => {
            // cost of the certificate part of the startup sync: read + parse every leaf
            let st = open();
            for m in &mds {
                let pem = st
                    .load(Group::Domains, &m.name, &files::pubcert(&spec))
                    .unwrap()
                    .unwrap();
                let c = openssl::x509::X509::from_pem(&pem).unwrap();
                assert!(md_core::store::keys::covers_all(&c, &m.domains));
            }
            format!("read + parse + coverage check of {n} certificates")
        }
        "changed" => {
            let mds: Vec<ManagedDomain> = (0..n).map(|i| md(i, "other@bench.test")).collect();
            let reg = Registry::new(open());
            let rep = reg.sync(&mds).unwrap();
            assert_eq!(rep.changed.len(), n);
            format!("sync with all {n} MDs changed")
        }
        "activate" => {
            let st = open();
            // a new certificate (an identical one would count as already active)
            let (key, cert) = pair();
            let chain = vec![cert];
            let m = 100.min(n);
            for md in &mds[..m] {
                let mut rec = MdRecord::new(md.clone());
                rec.ca_url = Some(md.ca_urls[0].clone());
                st.save_md(Group::Staging, &rec).unwrap();
                st.save_cert_and_key(Group::Staging, &md.name, &spec, &key, &chain)
                    .unwrap();
            }
            let t = Instant::now();
            let reg = Registry::new(open());
            let r = reg.load_stagings(mds.iter().map(|m| m.name.as_str()));
            assert_eq!(r.len(), m);
            println!(
                "activate: load_stagings over {n} MDs with {m} staged: {:.3} s",
                t.elapsed().as_secs_f64()
            );
            return println!("activate: peak RSS {} kB", peak_rss_kb());
        }
        _ => panic!("unknown phase {phase}"),
    };
    println!("{phase}: {what}: {:.3} s", t.elapsed().as_secs_f64());
    println!("{phase}: peak RSS {} kB", peak_rss_kb());
}
