//! Certificate download (RFC 8555 §7.4.2): PEM chains, DER with `Link: rel="up"`, and
//! alternate chains (`Link: rel="alternate"`) for selection by issuer.

use super::{AccountKey, AcmeClient, OrderError, RequestError};
use crate::crypt::{Certificate, CertificateChain};
use crate::http::HttpResponse;

/// Most issuer links followed for a DER certificate (SPEC 5.5 step 7).
const MAX_UP_LINKS: usize = 10;

/// A downloaded certificate chain and the alternatives the CA offers.
#[derive(Debug, Clone)]
pub struct DownloadedCertificate {
    /// URL it was downloaded from.
    pub url: String,
    /// Leaf first.
    pub chain: CertificateChain,
    /// URLs of alternate chains for the same certificate.
    pub alternates: Vec<String>,
}

/// Resolve a `Link` target against the URL of the response carrying it.
fn resolve(base: &str, target: &str) -> String {
    if target.contains("://") {
        return target.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    if target.starts_with('/') {
        format!("{}{}", &base[..host_end], target)
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= host_end)
            .unwrap_or(host_end);
        format!("{}/{}", &base[..dir_end], target)
    }
}

impl AcmeClient {
    /// Download the certificate at `url` (POST-as-GET).
    pub fn download_certificate(
        &self,
        acct: &AccountKey,
        url: &str,
    ) -> Result<DownloadedCertificate, OrderError> {
        let bad = |m: &str| OrderError::BadCertificate {
            url: url.to_string(),
            message: m.into(),
        };
        let resp = self.post(url, &acct.key, acct.key_ref(), None)?;
        let alternates = resp
            .links_with_rel("alternate")
            .into_iter()
            .map(|l| resolve(url, &l))
            .collect();
        let ct = resp.content_type().unwrap_or_default();
        let chain = if ct == "application/pkix-cert" {
            let leaf = Certificate::from_der(&resp.body).map_err(|e| bad(&e.to_string()))?;
            let mut certs = vec![leaf];
            self.follow_up_links(acct, url, &resp, &mut certs)?;
            if certs.len() < 2 {
                return Err(bad("a single certificate without issuer link"));
            }
            CertificateChain { certs }
        } else {
            // application/pem-certificate-chain; text/plain and unknown types as a last resort.
            CertificateChain::from_pem(&resp.body).map_err(|e| bad(&e.to_string()))?
        };
        Ok(DownloadedCertificate {
            url: url.to_string(),
            chain,
            alternates,
        })
    }

    fn follow_up_links(
        &self,
        acct: &AccountKey,
        url: &str,
        first: &HttpResponse,
        certs: &mut Vec<Certificate>,
    ) -> Result<(), OrderError> {
        let mut seen = vec![url.to_string()];
        let mut next = first.links_with_rel("up").first().map(|l| resolve(url, l));
        while let Some(up) = next.take() {
            if seen.contains(&up) || seen.len() > MAX_UP_LINKS {
                break;
            }
            seen.push(up.clone());
            let resp = self.post(&up, &acct.key, acct.key_ref(), None)?;
            let ct = resp.content_type().unwrap_or_default();
            if ct == "application/x-pkcs7-mime" {
                break;
            }
            let c = if ct == "application/pkix-cert" {
                Certificate::from_der(&resp.body)
            } else {
                Certificate::from_pem(&resp.body)
            };
            let c = c.map_err(|e| RequestError::BadResponse {
                url: up.clone(),
                message: e.to_string(),
            })?;
            certs.push(c);
            next = resp.links_with_rel("up").first().map(|l| resolve(&up, l));
        }
        Ok(())
    }

    /// Among the downloaded chain and its alternates, return the first whose topmost issuer
    /// common name (or oneline issuer name) equals `issuer`, case-insensitively. Falls back to
    /// the downloaded chain when none matches (like MDCertificateChain-less mod_md: the
    /// default chain is always acceptable).
    pub fn select_chain(
        &self,
        acct: &AccountKey,
        downloaded: DownloadedCertificate,
        issuer: &str,
    ) -> Result<DownloadedCertificate, OrderError> {
        let matches = |c: &CertificateChain| {
            c.certs.iter().any(|x| {
                x.issuer_cn()
                    .is_some_and(|cn| cn.eq_ignore_ascii_case(issuer))
                    || x.issuer_name().eq_ignore_ascii_case(issuer)
            })
        };
        if matches(&downloaded.chain) {
            return Ok(downloaded);
        }
        for alt in &downloaded.alternates {
            let d = self.download_certificate(acct, alt)?;
            if matches(&d.chain) {
                return Ok(DownloadedCertificate {
                    alternates: downloaded.alternates.clone(),
                    ..d
                });
            }
        }
        Ok(downloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn link_resolution() {
        assert_eq!(resolve("https://ca:1/cert/1", "https://x/y"), "https://x/y");
        assert_eq!(
            resolve("https://ca:1/cert/1", "/chain/2"),
            "https://ca:1/chain/2"
        );
        assert_eq!(
            resolve("https://ca:1/cert/1", "alt/0"),
            "https://ca:1/cert/alt/0"
        );
    }
}
