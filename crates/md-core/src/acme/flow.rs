//! One complete certificate order (SPEC 5.5): new order, authorizations and challenges,
//! finalize, download, key check. The renewal driver can also run the steps itself.

use super::{
    select_and_setup, AccountKey, AcmeClient, ChallengeResponder, ChallengeSetup, ChallengeType,
    Identifier, NewOrder, Order, OrderError, RequestError,
};
use crate::crypt::{make_csr, CertificateChain, CsrOptions, PrivateKey};
use crate::http::HttpError;

/// What certificate to obtain.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// DNS names and IP addresses; the first is the CN when it fits.
    pub names: Vec<String>,
    /// Challenge types in order of preference.
    pub challenges: Vec<ChallengeType>,
    /// CA profile.
    pub profile: Option<String>,
    /// ARI id of the certificate being replaced.
    pub replaces: Option<String>,
    /// Request the must-staple extension.
    pub must_staple: bool,
    /// Preferred chain by issuer name (an alternate chain is chosen when it matches).
    pub preferred_chain: Option<String>,
    /// URL of an order started earlier for the same names and key (a renewal killed midway):
    /// it is continued unless the CA has given up on it, so a restart does not order again.
    pub resume: Option<String>,
}

impl CertificateRequest {
    /// A request for `names` with the default challenge preference.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        CertificateRequest {
            names: names.into_iter().map(Into::into).collect(),
            challenges: ChallengeType::DEFAULT_PREFERENCE.to_vec(),
            profile: None,
            replaces: None,
            must_staple: false,
            preferred_chain: None,
            resume: None,
        }
    }
}

/// The result of [`AcmeClient::obtain_certificate`].
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The final (valid) order.
    pub order: Order,
    /// Leaf first.
    pub chain: CertificateChain,
    /// Certificate URL.
    pub cert_url: String,
    /// Alternate chain URLs offered by the CA.
    pub alternates: Vec<String>,
    /// `challenge-setups` records of the challenges answered.
    pub challenge_setups: Vec<String>,
}

/// Tears down challenge material whatever way the order ends.
struct Teardown<'a> {
    responder: &'a dyn ChallengeResponder,
    setups: Vec<ChallengeSetup>,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        for s in &self.setups {
            self.responder.teardown(s);
        }
    }
}

impl AcmeClient {
    /// Obtain a certificate for `key` covering `req.names`, answering challenges through
    /// `responder` (all material is torn down before returning, except the local material of
    /// a challenge whose answer from the CA was lost: the CA may be validating it).
    pub fn obtain_certificate(
        &self,
        acct: &AccountKey,
        key: &PrivateKey,
        req: &CertificateRequest,
        responder: &dyn ChallengeResponder,
    ) -> Result<IssuedCertificate, OrderError> {
        self.obtain_certificate_with(acct, key, req, responder, &|_| {})
    }

    /// As [`AcmeClient::obtain_certificate`]; `on_order` sees the order as soon as it exists
    /// (new or resumed), so the caller can record its URL before any challenge is answered.
    pub fn obtain_certificate_with(
        &self,
        acct: &AccountKey,
        key: &PrivateKey,
        req: &CertificateRequest,
        responder: &dyn ChallengeResponder,
        on_order: &dyn Fn(&Order),
    ) -> Result<IssuedCertificate, OrderError> {
        let new = NewOrder {
            identifiers: req.names.iter().map(|n| Identifier::from_name(n)).collect(),
            profile: req.profile.clone(),
            replaces: req.replaces.clone(),
        };
        // Only a definite answer about the order to resume (gone, not ours, invalid, other
        // names) makes a new one: a CA or network hiccup on this fetch ends the run, and the
        // next one resumes (a new order per hiccup would count against the CA's limits).
        let resumed = match req.resume.as_deref().map(|url| self.get_order(acct, url)) {
            None => None,
            Some(Ok(o)) => Some(o),
            Some(Err(OrderError::Request(e))) if e.is_retryable() && !e.is_not_found() => {
                return Err(OrderError::Request(e))
            }
            Some(Err(_)) => None,
        }
        .filter(|o| o.status != "invalid" && same_identifiers(&o.identifiers, &new.identifiers));
        let order = match resumed {
            Some(o) => o,
            None => self.new_order(acct, &new)?,
        };
        on_order(&order);
        let mut td = Teardown {
            responder,
            setups: Vec::new(),
        };
        let mut pending = Vec::new();
        // Set up and trigger every pending authorization first, then wait for all: the CA
        // validates them in parallel.
        for url in &order.authorizations {
            let authz = self.get_authorization(acct, url)?;
            match authz.status.as_str() {
                "valid" => continue,
                "pending" => {}
                _ => {
                    return Err(OrderError::AuthorizationInvalid {
                        domain: authz.identifier.value.clone(),
                        problem: authz.problem().cloned(),
                    })
                }
            }
            let setup = select_and_setup(&authz, &req.challenges, &acct.key, responder)?;
            let chal_url = setup.challenge_url.clone();
            td.setups.push(setup);
            // A resumed order may have answered this challenge already: the CA validates it
            // (the material is in place again); answering twice is an error at some CAs.
            let answered = authz
                .challenges
                .iter()
                .any(|c| c.url == chal_url && c.status != "pending");
            if !answered {
                if let Err(e) = self.respond_challenge(acct, &chal_url) {
                    // The CA may have taken the challenge although its answer was lost on the
                    // way (cut off, garbled, timed out): it validates now. Local material
                    // (the http-01 file, the tls-alpn-01 certificate) stays for it, so the
                    // next run resumes the order and finds the authorization valid, instead
                    // of a failed validation and a new order. dns-01 records are the admin
                    // script's: torn down as always.
                    if answer_may_be_lost(&e)
                        && td
                            .setups
                            .last()
                            .is_some_and(|s| s.challenge_type != ChallengeType::Dns01)
                    {
                        td.setups.pop();
                    }
                    return Err(e);
                }
            }
            pending.push(url.clone());
        }
        for url in &pending {
            self.await_authorization(acct, url)?;
        }
        let csr = make_csr(
            key,
            &req.names,
            &CsrOptions {
                must_staple: req.must_staple,
            },
        )?;
        // Every authorization is valid now, so the order is ready (RFC 8555 §7.1.6): it is
        // finalized at once rather than fetched first (one request less per certificate). A
        // CA that has not caught up answers orderNotReady, and an answer may be lost on the
        // way: then the order is awaited and finalized as it stands.
        let order = match order.status.as_str() {
            "pending" | "ready" => match self.finalize_order(acct, &order, &csr) {
                Err(e) if not_ready(&e) || answer_may_be_lost(&e) => {
                    self.finalize_when_ready(acct, &order.url, &csr)?
                }
                r => r?,
            },
            // a resumed order that was finalized already
            _ => self.finalize_when_ready(acct, &order.url, &csr)?,
        };
        let order = if order.status == "valid" && order.certificate.is_some() {
            order
        } else {
            self.await_order(acct, &order.url, &["valid"])?
        };
        let cert_url = order
            .certificate
            .clone()
            .ok_or_else(|| OrderError::BadCertificate {
                url: order.url.clone(),
                message: "valid order without certificate URL".into(),
            })?;
        let mut dl = self.download_certificate(acct, &cert_url)?;
        if let Some(issuer) = &req.preferred_chain {
            dl = self.select_chain(acct, dl, issuer)?;
        }
        if !dl.chain.leaf().matches_key(key) {
            return Err(OrderError::KeyMismatch { url: cert_url });
        }
        let challenge_setups = td.setups.iter().map(ChallengeSetup::record).collect();
        Ok(IssuedCertificate {
            order,
            chain: dl.chain,
            cert_url,
            alternates: dl.alternates,
            challenge_setups,
        })
    }

    /// Wait until the order is ready (then finalize it with `csr`), processing or valid.
    fn finalize_when_ready(
        &self,
        acct: &AccountKey,
        url: &str,
        csr: &[u8],
    ) -> Result<Order, OrderError> {
        let order = self.await_order(acct, url, &["ready", "processing", "valid"])?;
        if order.status == "ready" {
            self.finalize_order(acct, &order, csr)
        } else {
            Ok(order)
        }
    }
}

/// The CA refused to finalize an order that is not ready (yet).
fn not_ready(e: &OrderError) -> bool {
    matches!(e, OrderError::Request(r) if r.problem().is_some_and(|p| p.is("orderNotReady")))
}

/// A request failed after it was sent: the CA may have acted on it (its answer was cut off,
/// unreadable, or did not come in time). A refused connection or an answer of the CA (a
/// status, a problem) is not such a case.
fn answer_may_be_lost(e: &OrderError) -> bool {
    matches!(
        e,
        OrderError::Request(
            RequestError::BadResponse { .. }
                | RequestError::Http(HttpError::Body { .. } | HttpError::Timeout { .. })
        )
    )
}

/// The same identifiers in any order.
fn same_identifiers(a: &[Identifier], b: &[Identifier]) -> bool {
    let key = |i: &Identifier| (i.id_type.to_ascii_lowercase(), i.value.to_ascii_lowercase());
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}
