//! Finding MDs by name without going through all of them: linking thousands of vhosts and
//! MDs is not quadratic, and per-request look-ups (http-01 and tls-alpn-01 answers,
//! `/.httpd/certificate-status`, md-status of one MD) cost the same with 10 or 10,000 MDs.

use std::collections::HashMap;

/// Which MDs have a name that may cover a host name, or be covered by one: an index over the
/// MDs' names. It narrows the candidates; the linking decides with
/// [`crate::config::vhosts::domain_covers`].
#[derive(Debug, Default, Clone)]
pub(crate) struct NameIndex {
    /// Lower-cased name -> MDs with that name.
    exact: HashMap<String, Vec<usize>>,
    /// `s` of a `*.s` name -> MDs with that wildcard.
    wild: HashMap<String, Vec<usize>>,
    /// `rest` of a `label.rest` name (the part a wildcard would have to equal) -> MDs.
    parent: HashMap<String, Vec<usize>>,
}

/// `rest` of `label.rest` (non-empty label), lower-cased: what `*.rest` covers.
fn parent_of(name: &str) -> Option<String> {
    name.split_once('.')
        .filter(|(label, _)| !label.is_empty())
        .map(|(_, rest)| rest.to_ascii_lowercase())
}

impl NameIndex {
    pub(crate) fn new<'a>(names: impl Iterator<Item = (usize, &'a [String])>) -> NameIndex {
        let mut ix = NameIndex::default();
        for (i, domains) in names {
            for d in domains {
                ix.exact.entry(d.to_ascii_lowercase()).or_default().push(i);
                if let Some(s) = d.strip_prefix("*.") {
                    ix.wild.entry(s.to_ascii_lowercase()).or_default().push(i);
                }
                if let Some(p) = parent_of(d) {
                    ix.parent.entry(p).or_default().push(i);
                }
            }
        }
        ix
    }

    /// MDs that may have a name `d` with `domain_covers(d, host)`.
    pub(crate) fn covering(&self, host: &str, out: &mut Vec<usize>) {
        let get = |m: &HashMap<String, Vec<usize>>, k: &str| {
            m.get(k).map(Vec::as_slice).unwrap_or_default().to_vec()
        };
        out.extend(get(&self.exact, &host.to_ascii_lowercase()));
        if let Some(p) = parent_of(host) {
            out.extend(get(&self.wild, &p));
        }
    }

    /// MDs that may have a name `y` with `domain_covers(y, x) || domain_covers(x, y)`.
    pub(crate) fn overlapping(&self, x: &str, out: &mut Vec<usize>) {
        self.covering(x, out);
        if let Some(s) = x.strip_prefix("*.") {
            if let Some(v) = self.parent.get(&s.to_ascii_lowercase()) {
                out.extend(v);
            }
        }
    }

    /// The first MD (lowest index) with a name covering `host`: equal to it, or `*.rest`
    /// where `rest` is the host's part after its first dot. `empty_label` lets a host that
    /// starts with a dot match a wildcard (md-status's rule, the C module's `md_dns_matches`;
    /// answering challenges wants a label).
    fn first_covering(&self, host: &str, empty_label: bool) -> Option<usize> {
        let host = host.to_ascii_lowercase();
        let first = |m: &HashMap<String, Vec<usize>>, k: &str| m.get(k)?.first().copied();
        let exact = first(&self.exact, &host);
        let wild = host
            .split_once('.')
            .filter(|(label, _)| empty_label || !label.is_empty())
            .and_then(|(_, rest)| first(&self.wild, rest));
        exact.into_iter().chain(wild).min()
    }
}

/// MD positions by MD name and by the names they cover, in configuration order: the answers
/// of a search through all MDs in order, at the cost of a hash look-up.
#[derive(Debug, Default, Clone)]
pub struct MdIndex {
    names: HashMap<String, usize>,
    domains: NameIndex,
}

impl MdIndex {
    /// Index MDs given as (MD name, its domains), in configuration order.
    pub fn new<'a>(mds: impl IntoIterator<Item = (&'a str, &'a [String])>) -> MdIndex {
        let mds: Vec<_> = mds.into_iter().collect();
        let mut names = HashMap::new();
        for (i, (name, _)) in mds.iter().enumerate() {
            // the first MD of a name wins, as in a search in order
            names.entry(name.to_ascii_lowercase()).or_insert(i);
        }
        MdIndex {
            names,
            domains: NameIndex::new(mds.into_iter().map(|(_, d)| d).enumerate()),
        }
    }

    /// Index `mds`.
    pub fn of(mds: &[super::ManagedDomain]) -> MdIndex {
        MdIndex::new(mds.iter().map(|m| (m.name.as_str(), m.domains.as_slice())))
    }

    /// The MD named `name` (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.names.get(&name.to_ascii_lowercase()).copied()
    }

    /// The first MD with a domain covering `host` (see [`NameIndex::first_covering`] for
    /// `empty_label`).
    pub fn covering(&self, host: &str, empty_label: bool) -> Option<usize> {
        self.domains.first_covering(host, empty_label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vhosts::domain_covers;
    use proptest::prelude::*;

    fn owned(mds: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        mds.iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn index(mds: &[(String, Vec<String>)]) -> MdIndex {
        MdIndex::new(mds.iter().map(|(n, d)| (n.as_str(), d.as_slice())))
    }

    #[test]
    fn first_md_in_order_wins() {
        let mds = owned(&[
            ("a", &["a.test", "*.w.test"]),
            ("b", &["x.w.test", "b.test"]),
            ("A", &["a.test"]),
        ]);
        let ix = index(&mds);
        assert_eq!(ix.by_name("A"), Some(0));
        assert_eq!(ix.covering("A.TEST", false), Some(0));
        // the wildcard of the first MD before the exact name of the second
        assert_eq!(ix.covering("x.w.test", false), Some(0));
        assert_eq!(ix.covering("b.test", false), Some(1));
        assert_eq!(ix.covering("w.test", false), None);
        assert_eq!(ix.covering("y.x.w.test", false), None);
        assert_eq!(ix.covering(".w.test", false), None);
        assert_eq!(ix.covering(".w.test", true), Some(0));
        // the literal wildcard name is a name like any other
        assert_eq!(ix.covering("*.w.test", false), Some(0));
        assert_eq!(ix.by_name("c"), None);
    }

    /// md-status's matching rule, written out as the C module states it.
    fn dns_matches(pattern: &str, name: &str) -> bool {
        pattern.eq_ignore_ascii_case(name)
            || match (pattern.strip_prefix('*'), name.find('.')) {
                (Some(rest), Some(dot)) => {
                    rest.starts_with('.') && rest.eq_ignore_ascii_case(&name[dot..])
                }
                _ => false,
            }
    }

    fn label() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("B"), Just("b"), Just("*"), Just("")]
    }

    /// Few labels from a tiny alphabet, so names collide and wildcards hit.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(label(), 1..4).prop_map(|l| l.join(".")),
            proptest::collection::vec(label(), 1..3).prop_map(|l| format!("*.{}", l.join("."))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The index answers exactly as a search through all MDs in order.
        #[test]
        fn answers_as_a_search_in_order(
            mds in proptest::collection::vec(
                (name(), proptest::collection::vec(name(), 0..4)), 0..6),
            first in label(),
            rest in name(),
        ) {
            // a name as drawn, or one label more in front of it
            let host = if first == "B" { rest } else { format!("{first}.{rest}") };
            let ix = index(&mds);
            let serve = mds.iter().position(|(_, d)| d.iter().any(|d| domain_covers(d, &host)));
            prop_assert_eq!(ix.covering(&host, false), serve);
            let status = mds.iter().position(|(_, d)| d.iter().any(|d| dns_matches(d, &host)));
            prop_assert_eq!(ix.covering(&host, true), status);
            let named = mds.iter().position(|(n, _)| n.eq_ignore_ascii_case(&host));
            prop_assert_eq!(ix.by_name(&host), named);
        }
    }
}
