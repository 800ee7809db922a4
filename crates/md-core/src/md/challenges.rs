//! Which ACME challenge types an MD can use (SPEC 5.6): the configured list, or the automatic
//! `tls-alpn-01 http-01 dns-01` minus what the server cannot answer.

use crate::config::values::PortMap;

/// http-01.
pub const HTTP_01: &str = "http-01";
/// tls-alpn-01.
pub const TLS_ALPN_01: &str = "tls-alpn-01";
/// dns-01.
pub const DNS_01: &str = "dns-01";

/// Whether the CA can reach this server on public ports 80 and 443.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reachability {
    /// A listener is on the local port that public port 80 maps to.
    pub http: bool,
    /// A listener is on the local port that public port 443 maps to.
    pub https: bool,
}

impl Reachability {
    /// Decide from the ports httpd listens on and MDPortMap.
    pub fn from_listeners(listen_ports: &[u16], map: PortMap) -> Reachability {
        let open = |p: Option<u16>| p.is_some_and(|p| listen_ports.contains(&p));
        Reachability {
            http: open(map.http),
            https: open(map.https),
        }
    }
}

/// What the server offers for answering challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeSupport {
    /// Reachability on public ports 80/443.
    pub reach: Reachability,
    /// Some domain of the MD has an SSL vhost with `acme-tls/1` in `Protocols`.
    pub acme_tls_1: bool,
    /// A dns-01 command (MDChallengeDns01) is configured for the MD.
    pub dns01_cmd: bool,
}

/// The challenge types to try, in order. An explicit MDCAChallenges list is used as given (no
/// reachability filtering, as in the C module: it is the admin's word that the CA gets
/// through); what the server cannot answer at all (tls-alpn-01 without `acme-tls/1`, dns-01
/// without a command) is refused per domain at setup, and the next type is tried
/// (drive::responder). The automatic list drops what cannot work, and when nothing is left
/// the error explains each removal in the C module's words.
pub fn candidates(configured: &[String], support: ChallengeSupport) -> Result<Vec<String>, String> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let mut list = Vec::new();
    let mut why = Vec::new();
    if !support.reach.https {
        why.push(
            "The https: challenge 'tls-alpn-01' is disabled because the server seems not \
             reachable on public port 443.",
        );
    } else if !support.acme_tls_1 {
        why.push(
            "The https: challenge 'tls-alpn-01' is disabled because the Protocols \
             configuration does not include the 'acme-tls/1' protocol.",
        );
    } else {
        list.push(TLS_ALPN_01.to_string());
    }
    if support.reach.http {
        list.push(HTTP_01.to_string());
    } else {
        why.insert(
            0,
            "The http: challenge 'http-01' is disabled because the server seems not reachable \
             on public port 80.",
        );
    }
    if support.dns01_cmd {
        list.push(DNS_01.to_string());
    } else {
        why.push(
            "The DNS challenge 'dns-01' is disabled because the directive 'MDChallengeDns01' \
             is not configured.",
        );
    }
    if list.is_empty() {
        return Err(format!(
            "None of the ACME challenge methods configured for this domain are suitable. {}",
            why.join(" ")
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support(http: bool, https: bool, tls: bool, dns: bool) -> ChallengeSupport {
        ChallengeSupport {
            reach: Reachability { http, https },
            acme_tls_1: tls,
            dns01_cmd: dns,
        }
    }

    #[test]
    fn reachability_follows_port_map() {
        let map = PortMap {
            http: Some(8080),
            https: None,
        };
        assert_eq!(
            Reachability::from_listeners(&[8080, 443], map),
            Reachability {
                http: true,
                https: false
            }
        );
        assert_eq!(
            Reachability::from_listeners(&[80, 443], PortMap::default()),
            Reachability {
                http: true,
                https: true
            }
        );
    }

    #[test]
    fn automatic_list_in_order() {
        assert_eq!(
            candidates(&[], support(true, true, true, true)).unwrap(),
            vec![TLS_ALPN_01, HTTP_01, DNS_01]
        );
        assert_eq!(
            candidates(&[], support(true, true, false, false)).unwrap(),
            vec![HTTP_01]
        );
        assert_eq!(
            candidates(&[], support(false, false, false, true)).unwrap(),
            vec![DNS_01]
        );
    }

    #[test]
    fn explicit_list_is_not_filtered() {
        let conf = vec!["dns-01".to_string(), "http-01".to_string()];
        assert_eq!(
            candidates(&conf, support(false, false, false, false)).unwrap(),
            conf
        );
    }

    /// The exact text the C module 2.6 logs (AH10173) when nothing is left (observed).
    #[test]
    fn nothing_suitable_explains_each_type() {
        let e = candidates(&[], support(false, false, false, false)).unwrap_err();
        assert_eq!(
            e,
            "None of the ACME challenge methods configured for this domain are suitable. The \
             http: challenge 'http-01' is disabled because the server seems not reachable on \
             public port 80. The https: challenge 'tls-alpn-01' is disabled because the server \
             seems not reachable on public port 443. The DNS challenge 'dns-01' is disabled \
             because the directive 'MDChallengeDns01' is not configured."
        );
        let e = candidates(&[], support(false, true, false, false)).unwrap_err();
        assert!(e.contains(
            "The https: challenge 'tls-alpn-01' is disabled because the Protocols configuration \
             does not include the 'acme-tls/1' protocol."
        ));
    }
}
