//! Fuzzing (property tests, stable Rust) of everything md-core parses from outside (issue 11):
//! directive arguments, the store's JSON files, PEM/DER certificates and keys, ACME JSON
//! responses and problem documents, `Retry-After` and `Link` headers, and the http-01 request
//! path.
//!
//! Three kinds of property:
//! 1. no panic on any input: arbitrary bytes and strings, and mutations of valid seeds (byte
//!    flips, insertions, removals, truncation at every length, JSON values replaced by other
//!    JSON types, huge numbers, deep nesting, very long strings);
//! 2. round trips where the code has a serializer: parse -> to_json -> parse gives the same
//!    value, and writing is a fixed point;
//! 3. http-01 answers only for a base64url token of a host of ours, with the content of that
//!    host's challenge file, never for `/`, `..`, `%2e%2e`, `%2f`, NUL, ... and never with a file
//!    outside `challenges/<host>/`.
//!
//! Case counts are small by default so that the file runs in well under a minute in a debug
//! build; `MD_FUZZ_CASES=N` runs every property N times instead (see README, "Testing").

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{json, Value};

use md_core::acme::{
    parse_renewal_info, parse_retry_after, Authorization, Challenge, Directory, Order, Problem,
};
use md_core::config::directives::{Args, DIRECTIVES};
use md_core::config::values::{self, Eab, MatchNames, PortMap, RenewMode, RequireHttps};
use md_core::config::vhosts::{self, VHost};
use md_core::config::{ArgValue, Context, ModConfig, Settings};
use md_core::crypt::{make_fallback_cert, Certificate, CertificateChain, EcCurve, KeyType};
use md_core::crypt::{make_tls_alpn01_cert, PrivateKey};
use md_core::drive::schedule::{self, Validity};
use md_core::http::{parse_link_header, HttpResponse};
use md_core::md::ManagedDomain;
use md_core::serve::{self, Http01, ACME_CHALLENGE_PREFIX, HTTP01_FILE};
use md_core::status::CertFacts;
use md_core::store::{
    keys, parse_http_date, AccountRecord, HttpdReachability, JobRecord, MdRecord, OrderRecord,
    StoreMeta,
};
use md_core::time::{self, Timeslice, Unit};

// ---------------------------------------------------------------------------------------------
// Configuration of the runs

/// Cases per property: `MD_FUZZ_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("MD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A proptest config with `default` cases. No failure persistence: a failing input found here
/// is kept as a unit test next to the code it breaks.
fn config(default: u32) -> Config {
    Config {
        cases: cases(default),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generic input generators

/// Strings that mean something to one of the parsers (to get past the first check).
const WORDS: &[&str] = &[
    "",
    " ",
    "on",
    "off",
    "ON",
    "auto",
    "manual",
    "always",
    "stick",
    "temporary",
    "permanent",
    "all",
    "servernames",
    "none",
    "Default",
    "RSA",
    "rsa4096",
    "rsa1",
    "2048",
    "secp384r1",
    "P-256",
    "80:8080",
    "443:-",
    "http:0",
    "https:65536",
    "33%",
    "100%",
    "-1%",
    "99 %",
    "21d",
    "-7d",
    "12h",
    "30mi",
    "10s",
    "100ms",
    "5m",
    "18446744073709551615",
    "18446744073709551616d",
    "4294967296",
    "-0",
    "+5",
    "0x10",
    "1e9",
    "LetsEncrypt",
    "https://ca.test/dir",
    "http://[::1]:3128",
    "http://a:-1",
    "mailto:@",
    "urn:x",
    "//x",
    "http-01",
    "dns-01",
    "tls-alpn-01",
    "a.test",
    "*.a.test",
    "..",
    ".",
    "/etc/passwd",
    "\"",
    "'",
    "\\",
    "\"a b\"",
    "'a\\'b'",
    ">",
    "<",
    "\0",
    "é",
    "\u{202e}",
    "%2e%2e",
    "%2f",
];

/// A string from [`WORDS`], an arbitrary string, or a long run of one character.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(String::from),
        3 => any::<String>(),
        2 => "[ -~]{0,24}",
        1 => (any::<char>(), 0usize..20_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// Bytes worth setting in a mutation (JSON, PEM and DER structure).
const SPECIAL_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, 0x81, 0x82, 0x84, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'-',
    b'0', b'9', b'e', b'=', b'\n', b'%', b'.', 0x30, 0x02, 0x04, 0x06, 0xa3,
];

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Duplicate(Index, Index),
    Truncate(Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| ByteEdit::Flip(i, x)),
        3 => (any::<Index>(), prop::sample::select(SPECIAL_BYTES)).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| ByteEdit::Remove(i, n)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| ByteEdit::Duplicate(a, b)),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
    ]
}

fn apply_edits(seed: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        if v.is_empty() {
            break;
        }
        let n = v.len();
        match e {
            ByteEdit::Flip(i, x) => v[i.index(n)] ^= x,
            ByteEdit::Set(i, b) => v[i.index(n)] = *b,
            ByteEdit::Insert(i, b) => {
                let at = i.index(n + 1);
                v.splice(at..at, b.iter().copied());
            }
            ByteEdit::Remove(i, k) => {
                let at = i.index(n);
                v.drain(at..(at + k).min(n));
            }
            ByteEdit::Duplicate(a, b) => {
                let (x, y) = (a.index(n), b.index(n));
                let (lo, hi) = (x.min(y), x.max(y) + 1);
                let chunk: Vec<u8> = v[lo..hi.min(lo + 256)].to_vec();
                v.splice(hi..hi, chunk);
            }
            ByteEdit::Truncate(i) => v.truncate(i.index(n)),
        }
    }
    v
}

/// One of `seeds`, mutated.
fn mutated_any(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    mutated_few(seeds, 8)
}

/// One of `seeds` with fewer than `max` byte edits (DER stays parseable more often with few).
fn mutated_few(seeds: Vec<Vec<u8>>, max: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(byte_edit(), 0..max),
    )
        .prop_map(|(s, e)| apply_edits(&s, &e))
}

/// JSON numbers at the edges of every integer and float type the parsers read into.
fn edge_number() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(3),
        json!(5),
        json!(99),
        json!(100),
        json!(255),
        json!(256),
        json!(65535),
        json!(65536),
        json!(i32::MAX),
        json!(u32::MAX),
        json!(u64::from(u32::MAX) + 2049),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(0.5),
        json!(-0.0),
        json!(1e-300),
        json!(1.7976931348623157e308),
        json!(-1.7976931348623157e308),
        json!(3.0),
        json!(2.0000000000000004),
    ])
}

/// Arbitrary JSON: every type, edge numbers, strings the parsers know, long strings, nesting.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        edge_number(),
        word().prop_map(Value::String),
        date_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Member names of every JSON document md-core reads (so edits hit known fields).
const KEYS: &[&str] = &[
    "name",
    "domains",
    "contacts",
    "transitive",
    "ca",
    "account",
    "proto",
    "url",
    "urls",
    "agreement",
    "challenges",
    "privkey",
    "type",
    "bits",
    "curve",
    "state",
    "state-descr",
    "renew-mode",
    "renew-window",
    "warn-window",
    "require-https",
    "must-staple",
    "acme-tls/1",
    "cert-files",
    "pkey-files",
    "stapling",
    "cmd-dns-01",
    "proxy-url",
    "ca-certs",
    "proxy-ca-certs",
    "eab",
    "kid",
    "hmac",
    "profile",
    "profile-mandatory",
    "ari-renewals",
    "finished",
    "notified",
    "notified-renewed",
    "next-run",
    "last-run",
    "valid-from",
    "errors",
    "ca-retry-until",
    "last",
    "log",
    "entries",
    "status",
    "store",
    "version",
    "key",
    "http",
    "https",
    "ca-url",
    "contact",
    "registration",
    "orders",
    "authorizations",
    "challenge-setups",
    "finalize",
    "certificate",
    "newNonce",
    "newAccount",
    "newOrder",
    "revokeCert",
    "keyChange",
    "renewalInfo",
    "meta",
    "termsOfService",
    "website",
    "externalAccountRequired",
    "profiles",
    "new-authz",
    "new-reg",
    "detail",
    "subproblems",
    "identifier",
    "identifiers",
    "value",
    "token",
    "error",
    "expires",
    "wildcard",
    "suggestedWindow",
    "start",
    "end",
    "explanationURL",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// An edit of a JSON document at one of its nodes.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Value),
    Remove,
    Add(String, Value),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => arb_json().prop_map(JsonEdit::Replace),
        2 => Just(JsonEdit::Remove),
        2 => (json_key(), arb_json()).prop_map(|(k, v)| JsonEdit::Add(k, v)),
    ]
}

/// JSON pointers of all nodes of `v` (the root is "").
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let esc = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{esc}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn apply_json_edit(v: &mut Value, at: Index, edit: &JsonEdit) {
    let mut ptrs = Vec::new();
    pointers(v, String::new(), &mut ptrs);
    let ptr = ptrs[at.index(ptrs.len())].clone();
    match edit {
        JsonEdit::Replace(new) => {
            if let Some(node) = v.pointer_mut(&ptr) {
                *node = new.clone();
            }
        }
        JsonEdit::Remove => {
            let Some((parent, last)) = ptr.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.shift_remove(&last);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        a.remove(i);
                    }
                }
                _ => {}
            }
        }
        JsonEdit::Add(k, new) => match v.pointer_mut(&ptr) {
            Some(Value::Object(m)) => {
                m.insert(k.clone(), new.clone());
            }
            Some(Value::Array(a)) => a.push(new.clone()),
            _ => {}
        },
    }
}

/// `seed` (a JSON text) with 1-4 edits of its tree, written back as JSON.
fn json_mutated(seed: &str) -> impl Strategy<Value = Vec<u8>> {
    let seed: Value = serde_json::from_str(seed).expect("seed is JSON");
    prop::collection::vec((any::<Index>(), json_edit()), 1..4).prop_map(move |edits| {
        let mut v = seed.clone();
        for (at, e) in &edits {
            apply_json_edit(&mut v, *at, e);
        }
        serde_json::to_vec(&v).expect("Value serializes")
    })
}

/// Bytes that print as text in failure reports.
#[derive(Clone)]
struct Text(Vec<u8>);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl std::ops::Deref for Text {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A seed with 0-2 tree edits: mostly still a valid document, for properties about what
/// is done with parsed values.
fn json_mostly_valid(seeds: &'static [&'static str]) -> impl Strategy<Value = Text> {
    let trees = seeds
        .iter()
        .map(|s| {
            let seed: Value = serde_json::from_str(s).expect("seed is JSON");
            prop::collection::vec((any::<Index>(), json_edit()), 0..3)
                .prop_map(move |edits| {
                    let mut v = seed.clone();
                    for (at, e) in &edits {
                        apply_json_edit(&mut v, *at, e);
                    }
                    Text(serde_json::to_vec(&v).expect("Value serializes"))
                })
                .boxed()
        })
        .collect::<Vec<_>>();
    prop::strategy::Union::new(trees)
}

/// Inputs for a JSON parser: arbitrary bytes, byte mutations of the seeds, tree mutations.
fn json_input(seeds: &'static [&'static str]) -> impl Strategy<Value = Text> {
    let bytes: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    let trees = seeds
        .iter()
        .map(|s| json_mutated(s).boxed())
        .collect::<Vec<_>>();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        3 => mutated_any(bytes),
        6 => prop::strategy::Union::new(trees),
    ]
    .prop_map(Text)
}

/// Dates as they appear in job.json and `Retry-After` (RFC 2822 with odd parts), and RFC 3339.
fn date_string() -> impl Strategy<Value = String> {
    let day = prop::sample::select(vec!["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Xyz"]);
    let month = prop::sample::select(vec![
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo",
    ]);
    let zone = prop::sample::select(vec![
        "GMT", "UT", "UTC", "Z", "EST", "PDT", "+0000", "-0000", "+2359", "-2359", "+9999", "A", "",
    ]);
    let year = prop_oneof![
        0u32..100,
        100u32..1000,
        1000u32..10_000,
        10_000u32..1_000_000
    ];
    let rfc2822 = (
        day,
        0u32..40,
        month,
        year,
        0u32..30,
        0u32..70,
        0u32..70,
        zone,
    )
        .prop_map(|(d, dd, m, y, h, mi, s, z)| {
            format!("{d}, {dd:02} {m} {y} {h:02}:{mi:02}:{s:02} {z}")
        });
    let rfc3339 = (
        0u32..10_000,
        0u32..14,
        0u32..33,
        0u32..25,
        0u32..61,
        0u32..62,
        prop::sample::select(vec!["Z", "+00:00", "-23:59", "+24:00", ".999999999Z", ""]),
    )
        .prop_map(|(y, mo, d, h, mi, s, z)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{z}")
        });
    prop_oneof![rfc2822, rfc3339]
}

/// A deeply nested JSON value placed at `key` of an otherwise valid document.
fn deep(depth: usize, open: &str, close: &str) -> String {
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// md.json as the C module writes it (from store/mdjson.rs's test), and older forms.
const MD_JSON: &[&str] = &[
    r#"{
  "name": "a1.test",
  "domains": ["a1.test", "www.a1.test"],
  "contacts": ["mailto:admin@anchor.test"],
  "transitive": 1,
  "ca": {
    "account": "ACME-127.0.0.1-0000",
    "proto": "ACME",
    "url": "https://127.0.0.1:34000/dir",
    "urls": ["https://127.0.0.1:34000/dir"],
    "agreement": "accepted",
    "challenges": ["http-01"]
  },
  "privkey": [{"type": "EC", "curve": "secp256r1"}, {"type": "RSA", "bits": 2048}],
  "state": 2,
  "state-descr": "ok",
  "renew-mode": 1,
  "renew-window": "33%",
  "warn-window": "10%",
  "require-https": "permanent",
  "must-staple": false,
  "proto": {"acme-tls/1": ["a1.test"], "other": 1},
  "cert-files": ["/etc/a.pem"],
  "pkey-files": ["/etc/a.key"],
  "stapling": false,
  "cmd-dns-01": "/bin/dns",
  "proxy-url": "http://proxy:3128",
  "eab": {"kid": "k", "hmac": "aGVsbG8"},
  "profile": "shortlived",
  "profile-mandatory": false,
  "ari-renewals": true
}"#,
    r#"{"name":"x.org","domains":["x.org"],"transitive":true,
       "ca":{"url":"https://ca/dir","future":7},"state":3,"new-thing":{"a":1},
       "privkey":{"type":"rsa"},"renew-window":"21d","warn-window":"100ms"}"#,
];

const JOB_JSON: &[&str] = &[r#"{
  "name": "a1.test",
  "finished": true,
  "notified": true,
  "notified-renewed": true,
  "next-run": "Wed, 25 Nov 2026 10:52:45 GMT",
  "last-run": "Tue, 24 Nov 2026 10:52:45 GMT",
  "valid-from": "Tue, 24 Nov 2026 10:52:46 GMT",
  "errors": 3,
  "ca-retry-until": "Tue, 24 Nov 2026 11:00:00 +0100",
  "last": {"status": 0, "valid-from": "Tue, 24 Nov 2026 10:52:46 GMT"},
  "log": {"entries": [{"when": "Tue, 24 Nov 2026 10:52:46 GMT", "type": "message-renewed"}]},
  "x-future": [1, 2.5]
}"#];

const STORE_JSON: &[&str] = &[
    include_str!("fixtures/c-mod_md-store/md_store.json"),
    r#"{"version": 2.0, "store": {}, "key": "AAAA", "other": true}"#,
];

const ACCOUNT_JSON: &[&str] = &[
    include_str!("fixtures/c-mod_md-store/accounts/ACME-127.0.0.1-0000/account.json"),
    r#"{"url":"https://ca/acct/1","ca-url":"https://ca/dir","registration":{"status":"valid"},
       "agreement":"https://ca/tos","eab":{"kid":"k"},"x":null}"#,
];

const ORDER_JSON: &[&str] = &[
    r#"{"url":"https://ca/o/1","status":"pending","authorizations":["https://ca/a/1"],
        "challenge-setups":["http-01:a.org"],"finalize":"https://ca/f/1",
        "certificate":"https://ca/c/1","x-new":[1]}"#,
];

const HTTPD_JSON: &[&str] = &[r#"{"proto": {"http": false, "https": true}}"#];

const DIRECTORY_JSON: &[&str] = &[
    r#"{"newNonce":"https://ca/nonce","newAccount":"https://ca/acct","newOrder":"https://ca/order",
        "revokeCert":"https://ca/revoke","keyChange":"https://ca/kc","renewalInfo":"https://ca/ari",
        "meta":{"termsOfService":"https://ca/tos","website":"https://ca","externalAccountRequired":true,
        "profiles":{"classic":"90 days","shortlived":"6 days"}}}"#,
    r#"{"new-authz":"x","new-reg":"y"}"#,
];

const PROBLEM_JSON: &[&str] = &[
    r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no","status":400,
        "subproblems":[{"type":"urn:ietf:params:acme:error:malformed","detail":"bad name",
        "identifier":{"type":"dns","value":"a..b"}}]}"#,
    r#"{"type":"urn:ietf:params:acme:error:rateLimited","status":429}"#,
];

const ORDER_RESPONSE_JSON: &[&str] = &[r#"{"status":"invalid","expires":"2026-11-30T10:00:00Z",
        "identifiers":[{"type":"dns","value":"a.test"},{"type":"ip","value":"127.0.0.1"}],
        "authorizations":["https://ca/authz/1"],"finalize":"https://ca/finalize/1",
        "certificate":"https://ca/cert/1","profile":"shortlived",
        "error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"x"}}"#];

const AUTHZ_JSON: &[&str] = &[
    r#"{"identifier":{"type":"dns","value":"a.test"},"status":"pending","wildcard":false,
        "expires":"2026-11-30T10:00:00Z","challenges":[
        {"type":"http-01","url":"https://ca/chal/1","status":"pending","token":"tok-123_x"},
        {"type":"dns-01","url":"https://ca/chal/2","status":"invalid","token":"t",
         "error":{"type":"urn:ietf:params:acme:error:dns","detail":"NXDOMAIN"}}]}"#,
];

const CHALLENGE_JSON: &[&str] = &[
    r#"{"type":"tls-alpn-01","url":"https://ca/chal/3","status":"valid","token":"abc",
        "validated":"2026-11-30T10:00:00Z"}"#,
];

const ARI_JSON: &[&str] = &[
    r#"{"suggestedWindow":{"start":"2026-11-30T10:00:00Z","end":"2026-12-02T10:00:00+01:00"},
        "explanationURL":"https://ca/why"}"#,
];

// ---------------------------------------------------------------------------------------------
// 1. Directive arguments

/// One EC account key for the whole run (signing needs one, its value does not matter).
fn account_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap())
}

proptest! {
    #![proptest_config(config(512))]

    /// Every pure value parser, on arbitrary and dictionary strings; durations round-trip
    /// through their written form.
    #[test]
    fn directive_values_never_panic(s in word(), t in word()) {
        let _ = values::parse_on_off(&s);
        let _ = values::parse_ca(&s);
        let _ = values::parse_proxy_url(&s);
        let _ = values::is_absolute_uri(&s);
        let _ = values::known_ca_name(&s);
        let _ = RenewMode::parse(&s);
        let _ = RequireHttps::parse(&s);
        let _ = MatchNames::parse(&s);
        let _ = values::leading_number(&s);
        let _ = values::parse_store_locks(&s);
        let _ = values::parse_private_keys(&[s.clone(), t.clone()]);
        let _ = values::parse_private_keys(std::slice::from_ref(&s));
        let _ = Eab::from_json("f", &s);
        let _ = vhosts::glob_match(&s, &t);
        let _ = vhosts::domain_covers(&s, &t);
        let _ = md_core::md::contact_uri(&s);
        // what becomes of directive values on the way to the CA
        let _ = md_core::acme::normalize_contact(&s);
        let _ = md_core::acme::Identifier::from_name(&s);
        let _ = md_core::acme::dns01_txt_value(&s);
        let _ = s.parse::<md_core::acme::ChallengeType>();
        if let Some(mac) = md_core::crypt::b64url_decode(&t) {
            let _ = md_core::acme::jws::sign_eab(account_key(), &s, &mac, "https://ca.test/acct");
        }
        let mut map = PortMap::default();
        let _ = map.apply(&s);
        for unit in [Unit::Days, Unit::Hours, Unit::Minutes, Unit::Seconds, Unit::Millis] {
            if let Ok(d) = time::parse_duration(&s, unit) {
                let written = time::format_duration(d);
                prop_assert_eq!(time::parse_duration(&written, unit), Ok(d), "{}", written);
            }
            if let Ok(ts) = Timeslice::parse(&s, unit) {
                let written = ts.to_string();
                prop_assert_eq!(Timeslice::parse(&written, unit), Ok(ts), "{}", written);
                let _ = ts.length_for(Duration::from_secs(u64::from(u32::MAX)));
            }
        }
    }

    /// Word splitting: never panics; plain words survive a join and a split.
    #[test]
    fn split_words_never_panics(line in word(), plain in prop::collection::vec("[!#-&(-~]{1,8}", 0..6)) {
        let words = values::split_words(&line);
        prop_assert!(words.len() <= line.chars().count());
        prop_assert_eq!(values::split_words(&plain.join(" \t ")), plain);
    }
}

/// One step of a config: a directive (by table index or an arbitrary name) with words, or the
/// end of an `<MDomain>` section.
#[derive(Debug, Clone)]
enum ConfigStep {
    Directive {
        which: Index,
        other_name: Option<String>,
        words: Vec<String>,
        in_vhost: bool,
        dir_context: bool,
    },
    CloseSection,
}

fn config_step() -> impl Strategy<Value = ConfigStep> {
    prop_oneof![
        8 => (
            any::<Index>(),
            prop::option::weighted(0.05, any::<String>()),
            prop::collection::vec(word(), 0..4),
            any::<bool>(),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(which, other_name, words, in_vhost, dir_context)| ConfigStep::Directive {
                which,
                other_name,
                words,
                in_vhost,
                dir_context,
            }),
        1 => Just(ConfigStep::CloseSection),
    ]
}

/// A name for a vhost: an MD-ish name, a glob, or anything.
fn host_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a.test",
            "www.a.test",
            "*.a.test",
            "x.a.test",
            "b.test",
            "*",
            "?.test",
            "A.TEST",
            "",
            ".",
            "..",
        ])
        .prop_map(String::from),
        word(),
    ]
}

fn vhost() -> impl Strategy<Value = VHost> {
    (
        host_name(),
        prop::collection::vec(host_name(), 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(
            |(server_name, aliases, is_base, is_ssl, acme_tls_1, port)| VHost {
                key: 0,
                server_name,
                aliases,
                is_base,
                is_ssl,
                acme_tls_1,
                port,
                ..VHost::default()
            },
        )
}

/// A fresh directory for `tag` under cargo's target tmp dir (emptied at first use in each run;
/// `cargo clean` removes it).
fn tmp_dir(tag: &str) -> &'static Path {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz_parsers-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    Box::leak(dir.into_boxed_path())
}

fn eab_dir() -> &'static Path {
    static DIR: OnceLock<&'static Path> = OnceLock::new();
    DIR.get_or_init(|| tmp_dir("eab"))
}

/// Strip what md.json does not hold (where the MD was configured, inherited settings).
fn stored_part(md: &ManagedDomain) -> ManagedDomain {
    let mut m = md.clone();
    m.origin = Default::default();
    m.env = m.env_own.clone();
    // MDPreferredChain is ours and comes from the config only: md.json does not carry it
    m.preferred_chain = None;
    m
}

proptest! {
    #![proptest_config(config(256))]

    /// Any sequence of directives, as httpd delivers them (words, or the raw line for RAW_ARGS
    /// directives), inside and outside `<MDomain>` sections: no panic; the MDs resolve, pass
    /// the post-config checks and link to vhosts; every resolved MD survives md.json.
    #[test]
    fn directive_sequences_never_panic(
        steps in prop::collection::vec(config_step(), 1..12),
        eab in json_input(&[r#"{"kid":"k","hmac":"aGk"}"#]),
        hosts in prop::collection::vec(vhost(), 0..4),
    ) {
        let dir = eab_dir();
        let eab_file = dir.join(format!("eab-{:?}.json", std::thread::current().id()));
        std::fs::write(&eab_file, &eab.0).unwrap();
        let (mut mc, mut main) = (ModConfig::default(), Settings::default());
        let mut vhost_settings = Settings::default();
        for step in steps {
            let ConfigStep::Directive { which, other_name, mut words, in_vhost, dir_context } = step
            else {
                mc.close_section();
                continue;
            };
            let dir_entry = &DIRECTIVES[which.index(DIRECTIVES.len())];
            let name = other_name.unwrap_or_else(|| dir_entry.name.to_string());
            // An EAB file argument names our fuzzed JSON file, never a path from the input.
            if dir_entry.canonical == "MDExternalAccountBinding"
                && words.len() == 1
                && !words[0].eq_ignore_ascii_case("none")
            {
                words[0] = eab_file.display().to_string();
            }
            let args = if dir_entry.args == Args::Raw {
                ArgValue::Raw(words.join(" "))
            } else {
                ArgValue::Words(words)
            };
            let ctx = Context {
                in_vhost,
                server_root: dir.display().to_string(),
                dir_context_error: dir_context.then(|| "not in <Directory>".to_string()),
                help: "help".into(),
                ..Context::default()
            };
            let target = if in_vhost { &mut vhost_settings } else { &mut main };
            if let Err(e) = mc.apply(target, &ctx, &name, args) {
                prop_assert!(!e.is_empty());
            }
        }
        mc.close_section();
        let mut mds: Vec<ManagedDomain> =
            mc.mds.iter().map(|d| ManagedDomain::resolve(d, &main, &mc)).collect();
        let _ = vhosts::check_definitions(&mc);
        let _ = vhosts::check_resolved(&mds);
        let linked = vhosts::link(&mut mds, &hosts, &mc);
        prop_assert_eq!(linked.md_vhosts.len(), mds.len());
        for md in &mds {
            let rec = MdRecord::new(md.clone());
            let back = MdRecord::parse(&rec.to_json());
            prop_assert!(back.is_ok(), "{:?}: {:?}", md, back);
            prop_assert_eq!(stored_part(&back.unwrap().md), stored_part(md));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Store JSON files

/// `parse` never panics; when it accepts, its own output parses to the same value and writing
/// that again gives the same bytes.
fn check_round_trip<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    parse: impl Fn(&[u8]) -> Option<T>,
    write: impl Fn(&T) -> Vec<u8>,
) -> Result<(), TestCaseError> {
    if let Some(a) = parse(input) {
        let text = write(&a);
        let b = parse(&text);
        prop_assert!(
            b.is_some(),
            "own output does not parse: {}",
            String::from_utf8_lossy(&text)
        );
        let b = b.unwrap();
        prop_assert_eq!(&a, &b, "{}", String::from_utf8_lossy(&text));
        prop_assert_eq!(write(&b), text);
    }
    Ok(())
}

fn md_json(t: &[u8]) -> Option<MdRecord> {
    MdRecord::parse(t).ok()
}
fn job_json(t: &[u8]) -> Option<JobRecord> {
    JobRecord::parse(t).ok()
}
fn account_json(t: &[u8]) -> Option<AccountRecord> {
    AccountRecord::parse(t).ok()
}
fn order_json(t: &[u8]) -> Option<OrderRecord> {
    OrderRecord::parse(t).ok()
}
fn httpd_json(t: &[u8]) -> Option<HttpdReachability> {
    HttpdReachability::parse(t)
}

/// md_store.json: the secret survives; the rest is rewritten at the current version, so
/// compare what is kept.
fn store_json(t: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let m = StoreMeta::parse(t).ok()?;
    Some((m.secret.clone(), m.to_json()))
}

fn check_store_file(input: &[u8]) -> Result<(), TestCaseError> {
    check_round_trip(input, md_json, MdRecord::to_json)?;
    check_round_trip(input, job_json, JobRecord::to_json)?;
    check_round_trip(input, account_json, AccountRecord::to_json)?;
    check_round_trip(input, order_json, OrderRecord::to_json)?;
    check_round_trip(input, httpd_json, |h| h.to_json())?;
    if let Some((secret, text)) = store_json(input) {
        let again = store_json(&text);
        prop_assert_eq!(again, Some((secret, text.clone())));
    }
    if let Some(job) = job_json(input) {
        let _ = job.last_status();
    }
    if let Some(a) = account_json(input) {
        let _ = a.is_valid();
        let _ = AccountRecord::id_for(&a.ca_url, u32::MAX);
        let _ = AccountRecord::id_for(&a.url, 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn md_json_fuzz(input in json_input(MD_JSON)) {
        check_store_file(&input)?;
    }

    #[test]
    fn job_json_fuzz(input in json_input(JOB_JSON)) {
        check_store_file(&input)?;
    }

    #[test]
    fn store_meta_account_order_fuzz(
        input in prop_oneof![
            json_input(STORE_JSON),
            json_input(ACCOUNT_JSON),
            json_input(ORDER_JSON),
            json_input(HTTPD_JSON),
        ]
    ) {
        check_store_file(&input)?;
    }

    /// Dates in job.json: any RFC 2822-ish text either reads as absent or round-trips.
    #[test]
    fn job_dates_round_trip(d in date_string(), e in date_string()) {
        let text = json!({"name": "a", "next-run": d, "last-run": e, "valid-from": d,
                          "ca-retry-until": e});
        check_round_trip(&serde_json::to_vec(&text).unwrap(), job_json, JobRecord::to_json)?;
        if let Some(t) = parse_http_date(&d) {
            prop_assert_eq!(parse_http_date(&md_core::store::format_http_date(t)), Some(t));
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// What the status pages and the renewal check make of hostile md.json and job.json (and a
    /// mutated certificate): no panic, and the EAB hmac never shows.
    #[test]
    fn status_and_check_from_hostile_files(
        md in json_mostly_valid(MD_JSON),
        job in json_mostly_valid(JOB_JSON),
        der in mutated_few(crypto_seeds().cert_ders.clone(), 3),
        watched in any::<bool>(),
        now_secs in -62_000_000_000i64..250_000_000_000,
    ) {
        use md_core::drive::check::{check_md, ActiveCerts};
        use md_core::status::{self, CheckAt, MdSnapshot, MdView, Renewal};
        let Ok(record) = MdRecord::parse(&md) else {
            return Ok(());
        };
        let now = Utc.timestamp_opt(now_secs, 0).single().unwrap();
        let facts = Certificate::from_der(&der)
            .ok()
            .and_then(|c| CertFacts::of(&c, &record.md.domains).ok());
        let mut certs: Vec<(String, Option<CertFacts>)> = record
            .md
            .private_keys
            .iter()
            .map(|k| (k.name().to_string(), facts.clone()))
            .collect();
        certs.push(("0".into(), None));
        let snap = MdSnapshot::new(record, certs, watched);
        let _ = snap.valid();
        let _ = snap.renew_at(now);
        let active = ActiveCerts::from_snapshot(&snap);
        let chk = check_md(&snap.record.md, &active, now);
        let _ = chk.is_due(now);
        let renewal = JobRecord::parse(&job).ok().map(|job| Renewal {
            job,
            staged: facts.iter().map(|f| ("rsa".to_string(), f.clone())).collect(),
        });
        let views = [MdView { snap: &snap, renewal, ocsp: Vec::new() }];
        let check = CheckAt::default();
        let outputs = [
            status::to_body(&status::md_status_json(&views[0], now, true)),
            status::to_body(&status::md_status_list(&views, now)),
            status::to_body(&status::certificate_status(&views[0])),
            status::server_status_html(&views, now, &check).into_bytes(),
            status::server_status_auto(&views, now, &check).into_bytes(),
        ];
        if let Some(md_core::config::values::Eab::Key { hmac, .. }) = &snap.record.md.eab {
            if hmac.len() >= 8 {
                for out in &outputs {
                    let text = String::from_utf8_lossy(out);
                    prop_assert!(!text.contains(hmac.as_str()), "hmac shown: {}", text);
                }
            }
        }
    }
}

/// Every file: each truncation of each seed (no panic, round trip where accepted).
#[test]
fn store_files_truncated_at_every_length() {
    for seed in MD_JSON
        .iter()
        .chain(JOB_JSON)
        .chain(STORE_JSON)
        .chain(ACCOUNT_JSON)
        .chain(ORDER_JSON)
        .chain(HTTPD_JSON)
    {
        for n in 0..=seed.len() {
            check_store_file(&seed.as_bytes()[..n]).unwrap();
        }
    }
}

/// Deep nesting and huge sizes where the parsers keep unknown JSON (`extra`, `last`, `log`).
#[test]
fn store_files_deep_and_huge() {
    for depth in [64, 127, 128, 129, 10_000, 200_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let v = deep(depth, open, close);
            for doc in [
                format!(r#"{{"name":"a","url":"u","x":{v}}}"#),
                format!(r#"{{"name":"a","last":{v},"log":{v}}}"#),
                format!(r#"{{"name":"a","ca":{{"x":{v}}},"proto":{v}}}"#),
                format!(r#"{{"key":"AAAA","store":{v}}}"#),
                format!(r#"{{"proto":{v}}}"#),
            ] {
                check_store_file(doc.as_bytes()).unwrap();
            }
        }
    }
    let long = "x".repeat(4 << 20);
    let many = format!("[{}1]", "1,".repeat(500_000));
    for doc in [
        format!(r#"{{"name":"{long}","domains":["{long}"],"renew-window":"{long}"}}"#),
        format!(r#"{{"name":"a","domains":{many},"errors":1e999}}"#),
        format!(r#"{{"name":"a","renew-window":"{}d"}}"#, "9".repeat(10_000)),
        format!(r#"{{"key":"{}","url":"u"}}"#, "A".repeat(1 << 20)),
        r#"{"name":"a","privkey":{"type":"RSA","bits":18446744073709551615}}"#.to_string(),
        r#"{"name":"a","state":-9223372036854775808,"renew-mode":1e308}"#.to_string(),
    ] {
        check_store_file(doc.as_bytes()).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Certificates and keys (PEM/DER)

struct CryptoSeeds {
    /// PEM certificates and chains.
    cert_pems: Vec<Vec<u8>>,
    /// DER certificates.
    cert_ders: Vec<Vec<u8>>,
    /// Private keys: (PEM, pass phrase it is encrypted with).
    key_pems: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The C module's store secret (md_store.json of the fixture).
    secret: Vec<u8>,
}

fn add_ext(b: &mut openssl::x509::X509Builder, issuer: Option<&openssl::x509::X509Ref>) {
    use openssl::x509::extension::{AuthorityKeyIdentifier, SubjectAlternativeName};
    #[allow(deprecated)]
    use openssl::x509::X509Extension;
    let san = {
        let ctx = b.x509v3_context(issuer, None);
        SubjectAlternativeName::new()
            .dns("a.test")
            .dns("*.a.test")
            .ip("127.0.0.1")
            .ip("::1")
            .build(&ctx)
            .unwrap()
    };
    b.append_extension(san).unwrap();
    #[allow(deprecated)]
    let (aia, tls) = {
        let ctx = b.x509v3_context(issuer, None);
        (
            X509Extension::new(
                None,
                Some(&ctx),
                "authorityInfoAccess",
                "OCSP;URI:http://ocsp.test/,caIssuers;URI:http://ca.test/ca.der",
            )
            .unwrap(),
            X509Extension::new(None, Some(&ctx), "tlsfeature", "status_request").unwrap(),
        )
    };
    b.append_extension(aia).unwrap();
    b.append_extension(tls).unwrap();
    if issuer.is_some() {
        let ctx = b.x509v3_context(issuer, None);
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&ctx)
            .unwrap();
        b.append_extension(aki).unwrap();
    }
}

fn crypto_seeds() -> &'static CryptoSeeds {
    static SEEDS: OnceLock<CryptoSeeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        use openssl::asn1::Asn1Time;
        use openssl::hash::MessageDigest;
        use openssl::x509::extension::SubjectKeyIdentifier;
        use openssl::x509::{X509NameBuilder, X509};

        let secret = StoreMeta::parse(STORE_JSON[0].as_bytes()).unwrap().secret;
        let ec = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let ec384 = PrivateKey::generate(KeyType::Ec(EcCurve::P384)).unwrap();
        let rsa = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();

        let name = |cn: &str| {
            let mut n = X509NameBuilder::new().unwrap();
            n.append_entry_by_text("CN", cn).unwrap();
            n.append_entry_by_text("O", "Fuzz").unwrap();
            n.build()
        };
        // a CA and a leaf it signs, with every extension the code reads
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name("Fuzz CA")).unwrap();
        b.set_issuer_name(&name("Fuzz CA")).unwrap();
        b.set_pubkey(ec384.pkey()).unwrap();
        b.set_not_before(&Asn1Time::from_unix(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::from_str_x509("99991231235959Z").unwrap())
            .unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        b.sign(ec384.pkey(), MessageDigest::sha384()).unwrap();
        let ca = b.build();

        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = openssl::bn::BigNum::from_hex_str("00FF0102030405060708090A").unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name("a.test")).unwrap();
        b.set_issuer_name(ca.subject_name()).unwrap();
        b.set_pubkey(rsa.pkey()).unwrap();
        b.set_not_before(&Asn1Time::from_str_x509("20261101000000Z").unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_str_x509("491231235959Z").unwrap())
            .unwrap();
        add_ext(&mut b, Some(&ca));
        b.sign(ec384.pkey(), MessageDigest::sha256()).unwrap();
        let leaf = b.build();

        let names = vec!["a.test".to_string(), "www.a.test".to_string()];
        let fallback = make_fallback_cert(&names, &ec).unwrap();
        let alpn = make_tls_alpn01_cert("a.test", "tok.thumb", &ec).unwrap();

        let mut chain = leaf.to_pem().unwrap();
        chain.extend(ca.to_pem().unwrap());
        let cert_pems = vec![chain, fallback.to_pem().unwrap(), alpn.to_pem().unwrap()];
        let cert_ders = vec![
            leaf.to_der().unwrap(),
            ca.to_der().unwrap(),
            fallback.to_der().unwrap(),
        ];
        let account =
            include_bytes!("fixtures/c-mod_md-store/accounts/ACME-127.0.0.1-0000/account.pem");
        // an encrypted PKCS#8 body under the plain label: no "ENCRYPTED" marker to see
        let relabeled = String::from_utf8(ec384.to_pem_encrypted(&secret).unwrap())
            .unwrap()
            .replace("ENCRYPTED PRIVATE KEY", "PRIVATE KEY");
        let key_pems = vec![
            (account.to_vec(), Some(secret.clone())),
            (relabeled.into_bytes(), Some(secret.clone())),
            (ec.to_pem().unwrap(), None),
            (
                ec384.to_pem_encrypted(&secret).unwrap(),
                Some(secret.clone()),
            ),
            (rsa.to_pem().unwrap(), None),
        ];
        CryptoSeeds {
            cert_pems,
            cert_ders,
            key_pems,
            secret,
        }
    })
}

/// Everything the store, the status and the renewal driver ask of a certificate.
fn use_certificate(c: &Certificate) -> Result<(), TestCaseError> {
    let names = vec![
        "a.test".to_string(),
        "x.a.test".to_string(),
        "127.0.0.1".to_string(),
    ];
    let _ = c.serial_hex();
    let _ = c.sha256_fingerprint();
    let _ = c.alt_names();
    let _ = c.covers(&names);
    let _ = c.must_staple();
    let _ = c.issuer_name();
    let _ = c.subject_name();
    let _ = c.issuer_cn();
    let _ = c.issuer_uri();
    let _ = c.ocsp_uris();
    let _ = c.authority_key_id();
    let _ = c.ari_cert_id();
    let _ = c.is_issued_by(c);
    let _ = format!("{c:?}");
    let valid = Validity {
        from: c.not_before(),
        until: c.not_after(),
    };
    let now = Utc::now();
    for w in [
        Timeslice::Percent(0),
        Timeslice::Percent(99),
        Timeslice::Duration(Duration::ZERO),
        Timeslice::Duration(Duration::from_millis(u64::MAX)),
    ] {
        let _ = valid.window_start(&w);
        let _ = schedule::renew_at(&[Some(valid), None], &w, now);
        let _ = schedule::in_warn_window(&[Some(valid)], &w, now);
    }
    let _ = schedule::ready_at(&[valid], Some(valid.until), Duration::MAX, now);
    let _ = schedule::ari_pick(valid.from, valid.until, -0.5);
    if let Ok(facts) = CertFacts::of(c, &names) {
        let _ = facts.to_json();
        let _ = facts.to_public_json();
    }
    // what we write reads back as the same certificate
    if let Ok(pem) = c.to_pem() {
        let back = Certificate::from_pem(&pem);
        prop_assert!(back.is_ok());
        prop_assert_eq!(back.unwrap().to_der().ok(), c.to_der().ok());
    }
    Ok(())
}

fn use_pem_chain(pem: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(c) = Certificate::from_pem(pem) {
        use_certificate(&c)?;
    }
    if let Ok(chain) = CertificateChain::from_pem(pem) {
        use_certificate(chain.leaf())?;
        let _ = chain.top_issuer_name();
        let _ = chain.verify_against(&chain.certs);
        let written = chain.to_pem().unwrap();
        let back = CertificateChain::from_pem(&written).unwrap();
        prop_assert_eq!(back.certs.len(), chain.certs.len());
    }
    if let Ok(v) = keys::chain_from_pem(pem) {
        let written = keys::chain_to_pem(&v).unwrap();
        prop_assert_eq!(keys::chain_from_pem(&written).unwrap().len(), v.len());
        let _ = keys::dns_names(&v[0]);
        let _ = keys::covers_all(&v[0], &["a.test".to_string()]);
        let _ = keys::fingerprint_sha256(&v[0]);
    }
    if let Ok(x) = keys::leaf_from_pem(pem) {
        let _ = keys::dns_names(&x);
    }
    Ok(())
}

fn use_key_pem(pem: &[u8], pass: Option<&[u8]>) -> Result<(), TestCaseError> {
    let seeds = crypto_seeds();
    for p in [pass, None, Some(seeds.secret.as_slice())] {
        if let Ok(k) = PrivateKey::from_pem(pem, p) {
            let _ = format!("{k:?}");
            let _ = k.key_type();
            let _ = k.jws_alg();
            let _ = k.thumbprint();
            let _ = k.jwk();
            let plain = k.to_pem().unwrap();
            let back = PrivateKey::from_pem(&plain, None).unwrap();
            prop_assert!(back.pkey().public_eq(k.pkey()));
        }
        if let Ok(k) = keys::key_from_pem(pem, p) {
            // the store's form: encrypted with the secret, readable with it only
            let enc = keys::key_to_pem(&k, Some(&seeds.secret)).unwrap();
            let back = keys::key_from_pem(&enc, Some(&seeds.secret)).unwrap();
            prop_assert!(back.public_eq(&k));
            prop_assert!(keys::key_from_pem(&enc, None).is_err());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn certificate_pem_fuzz(pem in mutated_few(crypto_seeds().cert_pems.clone(), 4).prop_map(Text)) {
        use_pem_chain(&pem)?;
    }

    #[test]
    fn certificate_der_fuzz(der in mutated_few(crypto_seeds().cert_ders.clone(), 4)) {
        if let Ok(c) = Certificate::from_der(&der) {
            use_certificate(&c)?;
        }
    }

    #[test]
    fn private_key_pem_fuzz(
        which in any::<Index>(),
        edits in prop::collection::vec(byte_edit(), 0..6),
        other_pass in prop::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..80),
    ) {
        let (seed, pass) = &crypto_seeds().key_pems[which.index(crypto_seeds().key_pems.len())];
        let pem = apply_edits(seed, &edits);
        use_key_pem(&pem, pass.as_deref())?;
        // any pass phrase (NUL bytes, empty, longer than OpenSSL's buffer): an answer, no panic
        let _ = PrivateKey::from_pem(&pem, Some(&other_pass));
        let _ = keys::key_from_pem(&pem, Some(&other_pass));
    }

    #[test]
    fn crypto_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        use_pem_chain(&bytes)?;
        if let Ok(c) = Certificate::from_der(&bytes) {
            use_certificate(&c)?;
        }
        use_key_pem(&bytes, None)?;
    }
}

/// Every truncation of the DER certificates, and of the PEM seeds at a coarser step (each PEM
/// parse of a key with the store secret runs the key derivation).
#[test]
fn crypto_truncated_at_every_length() {
    let seeds = crypto_seeds();
    for der in &seeds.cert_ders {
        for n in 0..der.len() {
            if let Ok(c) = Certificate::from_der(&der[..n]) {
                use_certificate(&c).unwrap();
            }
        }
    }
    for pem in &seeds.cert_pems {
        for n in (0..pem.len()).step_by(7) {
            use_pem_chain(&pem[..n]).unwrap();
        }
    }
    for (pem, pass) in &seeds.key_pems {
        for n in (0..pem.len()).step_by(97) {
            use_key_pem(&pem[..n], pass.as_deref()).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. ACME responses, problem documents, headers

fn serde_round_trip<T>(input: &[u8]) -> Result<(), TestCaseError>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    check_round_trip(
        input,
        |t| serde_json::from_slice::<T>(t).ok(),
        |v| serde_json::to_vec(v).unwrap(),
    )
}

fn check_acme_body(body: &[u8], retry_after: &str) -> Result<(), TestCaseError> {
    let _ = Directory::parse("https://ca.test/dir", body);
    if let Some(p) = Problem::from_json(body) {
        let _ = (p.kind(), p.apr_status(), p.is_input_related());
        let _ = (p.is_rate_limited(), p.is_transient(), p.suggested_backoff());
        let _ = (p.identifiers(), p.to_string());
        let back = Problem::from_json(&serde_json::to_vec(&p).unwrap());
        prop_assert_eq!(back.as_ref(), Some(&p));
    }
    serde_round_trip::<Problem>(body)?;
    serde_round_trip::<Order>(body)?;
    serde_round_trip::<Authorization>(body)?;
    serde_round_trip::<Challenge>(body)?;
    if let Ok(a) = serde_json::from_slice::<Authorization>(body) {
        let _ = a.problem();
    }
    if let Ok(info) = parse_renewal_info("https://ca.test/ari/x", body) {
        prop_assert!(info.start <= info.end);
        for r in [-0.5, 0.0, 0.4999, f64::NAN, f64::INFINITY, -1e300] {
            let _ = info.pick(r);
            let _ = schedule::ari_pick(info.start, info.end, r);
        }
    }
    // an error response with this body (what the client makes of any non-2xx answer)
    for status in [400u16, 429, 500, 503, 0, u16::MAX] {
        let resp = HttpResponse {
            status,
            headers: vec![
                ("Retry-After".into(), retry_after.into()),
                ("Link".into(), retry_after.into()),
                ("Content-Type".into(), retry_after.into()),
            ],
            body: body.to_vec(),
        };
        let e = md_core::acme::error_from_response("https://ca.test/x", &resp);
        let _ = (e.to_string(), e.retry_after(), e.is_retryable());
        let _ = (e.is_input_related(), e.apr_status(), e.status_class());
        let _ = (resp.links(), resp.content_type(), resp.is_success());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn acme_json_fuzz(
        body in prop_oneof![
            json_input(DIRECTORY_JSON),
            json_input(PROBLEM_JSON),
            json_input(ORDER_RESPONSE_JSON),
            json_input(AUTHZ_JSON),
            json_input(CHALLENGE_JSON),
            json_input(ARI_JSON),
        ],
        retry_after in prop_oneof![word(), date_string(), any::<u64>().prop_map(|n| n.to_string())],
    ) {
        check_acme_body(&body, &retry_after)?;
    }

    /// `Retry-After`: seconds or a date; never panics, a date in the past is zero, and huge
    /// values stay representable.
    #[test]
    fn retry_after_fuzz(
        v in prop_oneof![word(), date_string(), any::<u64>().prop_map(|n| n.to_string()),
                         "[0-9]{15,40}", "-[0-9]{1,20}"],
        now_secs in -62_000_000_000i64..250_000_000_000,
    ) {
        let now = Utc.timestamp_opt(now_secs, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC);
        if let Some(d) = parse_retry_after(&v, now) {
            let _ = d.as_secs();
        }
        let _ = parse_retry_after(&v, DateTime::<Utc>::MIN_UTC);
        let _ = parse_retry_after(&v, DateTime::<Utc>::MAX_UTC);
        let _ = parse_link_header(&v);
    }

    /// `Link` headers (RFC 8288) as a CA may send them.
    #[test]
    fn link_header_fuzz(
        parts in prop::collection::vec(
            prop_oneof![
                Just("<".to_string()), Just(">".to_string()), Just(";".to_string()),
                Just(",".to_string()), Just("rel=".to_string()), Just("\"".to_string()),
                Just(" up alternate ".to_string()), word()
            ],
            0..16,
        )
    ) {
        let v = parts.concat();
        for l in parse_link_header(&v) {
            prop_assert!(!l.rel.is_empty() && !l.rel.contains(char::is_whitespace));
            let quoted = format!("<{}>", l.url);
            prop_assert!(v.contains(&quoted));
        }
    }
}

#[test]
fn acme_json_truncated_and_deep() {
    for seed in DIRECTORY_JSON
        .iter()
        .chain(PROBLEM_JSON)
        .chain(ORDER_RESPONSE_JSON)
        .chain(AUTHZ_JSON)
        .chain(CHALLENGE_JSON)
        .chain(ARI_JSON)
    {
        for n in 0..=seed.len() {
            check_acme_body(&seed.as_bytes()[..n], "1").unwrap();
        }
    }
    for depth in [127, 128, 129, 100_000] {
        let v = deep(depth, "[", "]");
        for doc in [
            format!(r#"{{"type":"t","subproblems":{v}}}"#),
            format!(r#"{{"newNonce":"n","newAccount":"a","newOrder":"o","meta":{v}}}"#),
            format!(r#"{{"status":"x","identifiers":{v}}}"#),
            v.clone(),
        ] {
            check_acme_body(doc.as_bytes(), "1").unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Challenge material for a CA-given identifier

/// Identifier values as a (hostile) CA may send them in an authorization.
fn identifier_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[a-z0-9-]{1,8}",
        2 => prop::sample::select(vec![
            ".", "..", "/", "\\", "\0", "%2e%2e", "%2f", "*", "~", " ", "decoy", "challenges",
        ])
        .prop_map(String::from),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

/// All files below `dir` (relative), sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(config(128))]

    /// The identifier of an authorization comes from the CA. Setting up and tearing down its
    /// http-01 or tls-alpn-01 material writes and removes only `challenges/<one name>/`:
    /// everything beside `challenges/` stays as it was.
    #[test]
    fn challenge_material_stays_in_challenges(
        domain in identifier_value(),
        token in prop_oneof!["[A-Za-z0-9_-]{1,16}", any::<String>()],
        alpn in prop::bool::weighted(0.2),
    ) {
        use md_core::acme::{ChallengeResponder, ChallengeSetup, ChallengeType};
        use md_core::drive::responder::StoreResponder;
        use md_core::md::KeySpec;
        static ROOT: OnceLock<&'static Path> = OnceLock::new();
        let root = *ROOT.get_or_init(|| {
            let root = tmp_dir("responder");
            for d in ["decoy", "challenges/Keep.Dir", "store"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
                std::fs::write(root.join(d).join(HTTP01_FILE), "DECOY").unwrap();
            }
            root
        });
        let before = tree(root);
        let ct = if alpn { ChallengeType::TlsAlpn01 } else { ChallengeType::Http01 };
        let key = PrivateKey::generate(KeyType::Ec(EcCurve::P256)).unwrap();
        let Ok(setup) = ChallengeSetup::prepare(ct, &domain, &token, "https://ca.test/c", &key)
        else {
            return Ok(());
        };
        let log = md_core::log::NullSink;
        let responder = StoreResponder {
            md_name: "a.test".into(),
            acme_tls_1: vec![domain.clone()],
            challenges_dir: root.join("challenges"),
            key_specs: vec![KeySpec::Ec { curve: "P-256".into() }],
            dns01_cmd: None,
            dns01_version: 2,
            log: &log,
            on_setup: None,
        };
        let ok = responder.setup(&setup).is_ok();
        let during = tree(root);
        for p in during.iter().filter(|p| !before.contains(p)) {
            let mut parts = p.components();
            prop_assert_eq!(
                parts.next().map(|c| c.as_os_str().to_owned()),
                Some("challenges".into()),
                "{:?} written for {:?}", p, domain
            );
            let below = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned());
            prop_assert_eq!(below.as_deref(), Some(domain.as_str()), "{:?}", p);
        }
        if ok && !alpn {
            let file = root.join("challenges").join(&domain).join(HTTP01_FILE);
            prop_assert_eq!(std::fs::read_to_string(file).ok(), Some(setup.key_authorization.clone()));
        }
        responder.teardown(&setup);
        prop_assert_eq!(tree(root), before, "teardown for {:?}", domain);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The http-01 request path

struct Http01Fixture {
    mds: Vec<ManagedDomain>,
    index: md_core::md::MdIndex,
    challenges: PathBuf,
}

/// A store whose `challenges/` holds files for a few hosts, with decoys outside it that an
/// answer must never contain.
fn http01_fixture() -> &'static Http01Fixture {
    static FIX: OnceLock<Http01Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        let root = tmp_dir("http01");
        let challenges = root.join("store").join("challenges");
        for host in ["a.test", "www.a.test", "x.w.test", "manual.test"] {
            std::fs::create_dir_all(challenges.join(host)).unwrap();
            std::fs::write(
                challenges.join(host).join(HTTP01_FILE),
                format!("token-{host}.thumbprint"),
            )
            .unwrap();
        }
        // decoys: the group dir itself, the store root, a sibling of the store, a file named
        // like a token
        for dir in [
            challenges.clone(),
            root.join("store"),
            root.to_path_buf(),
            root.join("secret"),
            challenges.join("a.test").join("tok"),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(HTTP01_FILE), "SECRET").unwrap();
        }
        std::fs::write(challenges.join("a.test").join("tok123"), "SECRET").unwrap();
        // MDs as a config makes them (names are not DNS-checked, as in the C module)
        let (mut mc, mut main) = (ModConfig::default(), Settings::default());
        let ctx = Context::default();
        for line in [
            "MDomain a.test www.a.test",
            "MDomain *.w.test",
            "MDomain .. . secret store",
            "MDomain dns.test",
        ] {
            let w = line
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>();
            mc.apply(&mut main, &ctx, &w[0], ArgValue::Words(w[1..].to_vec()))
                .unwrap();
        }
        for (open, inner) in [
            ("manual.test>", "MDRenewMode manual"),
            ("dns.only.test>", "MDCAChallenges dns-01"),
        ] {
            mc.apply(&mut main, &ctx, "<MDomain", ArgValue::Raw(open.into()))
                .unwrap();
            let w = inner
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>();
            mc.apply(&mut main, &ctx, &w[0], ArgValue::Words(w[1..].to_vec()))
                .unwrap();
            mc.close_section();
        }
        // an MD named "" (an empty quoted word): the host "" must not reach challenges/ itself
        mc.apply(
            &mut main,
            &ctx,
            "MDomain",
            ArgValue::Words(vec![String::new()]),
        )
        .unwrap();
        let mds: Vec<ManagedDomain> = mc
            .mds
            .iter()
            .map(|d| ManagedDomain::resolve(d, &main, &mc))
            .collect();
        Http01Fixture {
            index: md_core::md::MdIndex::of(&mds),
            mds,
            challenges,
        }
    })
}

fn is_b64url_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Token-shaped text: base64url, traversal pieces, encodings, NUL and other bytes.
fn token() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[A-Za-z0-9_-]{1,12}",
        1 => prop::sample::select(vec![
            "..", ".", "/", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "\0", "%", "=",
            "+", "~", " ", "?", "#", ";", "%252e", "\u{ff0e}", "\u{2215}", "tok", "tok123",
        ])
        .prop_map(String::from),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

fn request_host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "a.test", "A.TEST", "www.a.test", "x.w.test", "X.W.Test", "y.w.test", "w.test",
            "manual.test", "dns.only.test", "dns.test", "", ".", "..", "secret", "store",
            "a.test.", "a.test:80", "x.w.test/..", "../a.test", "a.test\0", "a.test\\..",
            "%2e%2e", "*.w.test", ".w.test",
        ])
        .prop_map(String::from),
        1 => word(),
    ]
}

fn http01_path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => token().prop_map(|t| format!("{ACME_CHALLENGE_PREFIX}{t}")),
        1 => (word(), token()).prop_map(|(p, t)| format!("{p}{t}")),
        1 => token().prop_map(|t| format!("/.well-known/acme-challenge{t}")),
        1 => token().prop_map(|t| format!("/.WELL-KNOWN/acme-challenge/{t}")),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// An answer only for `/.well-known/acme-challenge/<base64url token>` on a host of an MD
    /// that may use http-01, with exactly that host's challenge file; never anything read
    /// outside `challenges/<host>/`.
    #[test]
    fn http01_answers_only_tokens_of_our_hosts(
        host in request_host(),
        path in http01_path(),
        is_get in any::<bool>(),
    ) {
        let fix = http01_fixture();
        let decision = serve::http01(&fix.mds, &fix.index, &fix.challenges, &host, &path, is_get);
        let token = path.strip_prefix(ACME_CHALLENGE_PREFIX);
        let answering = !matches!(decision, Http01::Decline);
        if answering {
            prop_assert!(
                token.is_some_and(is_b64url_token),
                "{:?} for path {:?} on {:?}", decision, path, host
            );
            prop_assert!(serve::md_for_host(&fix.mds, &fix.index, &host.to_ascii_lowercase()).is_some());
            prop_assert!(!host.is_empty() && !host.starts_with('.'));
            prop_assert!(!host.contains(['/', '\\', '\0']));
        }
        match &decision {
            Http01::Answer(body) => {
                prop_assert!(is_get);
                let expected = fix.challenges.join(host.to_ascii_lowercase()).join(HTTP01_FILE);
                prop_assert_eq!(Some(body.clone()), std::fs::read_to_string(expected).ok());
                prop_assert!(!body.contains("SECRET"), "{} for {:?} {:?}", body, host, path);
            }
            Http01::NotImplemented => prop_assert!(!is_get),
            Http01::Error(e) => prop_assert!(false, "error {} for {:?} {:?}", e, host, path),
            Http01::Decline | Http01::NotFound => {}
        }
    }
}

/// The traversal and encoding cases, spelled out.
#[test]
fn http01_refuses_traversal_and_encodings() {
    let fix = http01_fixture();
    for token in [
        "..",
        "../",
        "..%2f..%2fsecret",
        "%2e%2e",
        "%2E%2E%2Fstore",
        "%2f",
        "a%2fb",
        "tok\0",
        "\0",
        "tok.",
        ".tok",
        "tok%00",
        "tok?x=1",
        "tok#f",
        "tok\\..\\x",
        "tok+1",
        "tok=",
        "tok~",
        "\u{ff0e}\u{ff0e}",
    ] {
        for host in ["a.test", "x.w.test", "..", "", "secret"] {
            let path = format!("{ACME_CHALLENGE_PREFIX}{token}");
            let d = serve::http01(&fix.mds, &fix.index, &fix.challenges, host, &path, true);
            assert_eq!(d, Http01::Decline, "{token:?} on {host:?}");
        }
    }
    let ok = format!("{ACME_CHALLENGE_PREFIX}tok-123_AZ");
    assert_eq!(
        serve::http01(&fix.mds, &fix.index, &fix.challenges, "A.Test", &ok, true),
        Http01::Answer("token-a.test.thumbprint".into())
    );
    assert_eq!(
        serve::http01(
            &fix.mds,
            &fix.index,
            &fix.challenges,
            "x.w.test",
            &ok,
            false
        ),
        Http01::NotImplemented
    );
    assert_eq!(
        serve::http01(&fix.mds, &fix.index, &fix.challenges, "y.w.test", &ok, true),
        Http01::NotFound
    );
    for host in ["", "..", ".", "dns.only.test", "manual.test"] {
        let want = if host == "manual.test" {
            Http01::Answer("token-manual.test.thumbprint".into())
        } else {
            Http01::Decline
        };
        assert_eq!(
            serve::http01(&fix.mds, &fix.index, &fix.challenges, host, &ok, true),
            want,
            "{host:?}"
        );
    }
    // MDs named like the decoys outside challenges/: their own (missing) dirs, nothing else
    for host in ["secret", "store"] {
        assert_eq!(
            serve::http01(&fix.mds, &fix.index, &fix.challenges, host, &ok, true),
            Http01::NotFound,
            "{host:?}"
        );
    }
}
