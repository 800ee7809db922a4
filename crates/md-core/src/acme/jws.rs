//! JSON Web Signatures in flattened JSON serialization (RFC 7515 §7.2.2, RFC 8555 §6.2).

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::{json, Map, Value};

use crate::crypt::{b64url, CryptError, PrivateKey};

/// How the JWS names its key (RFC 8555 §6.2).
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// The account URL (all requests after registration).
    Kid(&'a str),
    /// The public key itself (newAccount, and revocation by certificate key).
    Jwk,
}

/// Build a signed request body. `payload` `None` means POST-as-GET: an empty payload string
/// (RFC 8555 §6.3).
pub fn sign(
    key: &PrivateKey,
    key_ref: KeyRef<'_>,
    nonce: &str,
    url: &str,
    payload: Option<&Value>,
) -> Result<Value, CryptError> {
    let mut protected = Map::new();
    protected.insert("alg".into(), key.jws_alg()?.into());
    match key_ref {
        KeyRef::Kid(kid) => protected.insert("kid".into(), kid.into()),
        KeyRef::Jwk => protected.insert("jwk".into(), key.jwk()?),
    };
    protected.insert("nonce".into(), nonce.into());
    protected.insert("url".into(), url.into());
    let protected = b64url(Value::Object(protected).to_string().as_bytes());
    let payload = match payload {
        Some(p) => b64url(p.to_string().as_bytes()),
        None => String::new(),
    };
    let sig = key.sign_jws(format!("{protected}.{payload}").as_bytes())?;
    Ok(json!({"protected": protected, "payload": payload, "signature": b64url(&sig)}))
}

/// The External Account Binding JWS (RFC 8555 §7.3.4): HS256 over the account's JWK, keyed
/// with the base64url-decoded MAC key the CA issued, with no nonce.
pub fn sign_eab(
    account_key: &PrivateKey,
    eab_kid: &str,
    hmac_key: &[u8],
    new_account_url: &str,
) -> Result<Value, CryptError> {
    let protected = json!({"alg": "HS256", "kid": eab_kid, "url": new_account_url});
    let protected = b64url(protected.to_string().as_bytes());
    let payload = b64url(account_key.jwk_json()?.as_bytes());
    let mac_key = PKey::hmac(hmac_key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &mac_key)?;
    signer.update(format!("{protected}.{payload}").as_bytes())?;
    let sig = signer.sign_to_vec()?;
    Ok(json!({"protected": protected, "payload": payload, "signature": b64url(&sig)}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::{b64url_decode, KeyType};

    fn decode(v: &Value, k: &str) -> Value {
        let s = v[k].as_str().unwrap();
        serde_json::from_slice(&b64url_decode(s).unwrap()).unwrap_or(Value::Null)
    }

    #[test]
    fn rs256_with_jwk_and_kid() {
        let k = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        let j = sign(
            &k,
            KeyRef::Jwk,
            "N1",
            "https://ca/new-acct",
            Some(&json!({"a":1})),
        )
        .unwrap();
        let p = decode(&j, "protected");
        assert_eq!(p["alg"], "RS256");
        assert_eq!(p["jwk"]["kty"], "RSA");
        assert_eq!(p["nonce"], "N1");
        assert!(p.get("kid").is_none());
        assert_eq!(decode(&j, "payload"), json!({"a":1}));
        // Verify the signature with the public key.
        let data = format!(
            "{}.{}",
            j["protected"].as_str().unwrap(),
            j["payload"].as_str().unwrap()
        );
        let sig = b64url_decode(j["signature"].as_str().unwrap()).unwrap();
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), k.pkey()).unwrap();
        v.update(data.as_bytes()).unwrap();
        assert!(v.verify(&sig).unwrap());

        let j = sign(
            &k,
            KeyRef::Kid("https://ca/acct/1"),
            "N2",
            "https://ca/o",
            None,
        )
        .unwrap();
        assert_eq!(j["payload"], "");
        let p = decode(&j, "protected");
        assert_eq!(p["kid"], "https://ca/acct/1");
        assert!(p.get("jwk").is_none());
    }

    #[test]
    fn eab_is_hs256_over_jwk() {
        let k = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        let j = sign_eab(&k, "kid-1", b"secret", "https://ca/new-acct").unwrap();
        let p = decode(&j, "protected");
        assert_eq!(
            p,
            json!({"alg":"HS256","kid":"kid-1","url":"https://ca/new-acct"})
        );
        assert_eq!(decode(&j, "payload"), k.jwk().unwrap());
        assert_eq!(
            b64url_decode(j["signature"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}
