//! The identity of a stapled certificate (SPEC 6): SHA-1 over the certificate's DER, in hex.
//!
//! Assumption (no file written by the C module is in /work/shared/reference): the hex is
//! **lower case**, as the C module's other hex outputs (`sha256-fingerprint`) are, so the
//! file is `ocsp/<md name or "other">/ocsp-<40 lowercase hex digits>.json`. Readers accept
//! either case (see [`parse_response_file_name`]).

use openssl::x509::X509Ref;

use crate::crypt::hex_lower;

/// The directory under `ocsp/` for certificates that belong to no MD (MDStapleOthers).
pub const OTHER_GROUP: &str = "other";

/// The certificate id: lowercase hex of SHA-1(cert DER).
pub fn cert_id(cert: &X509Ref) -> Result<String, openssl::error::ErrorStack> {
    Ok(cert_id_of_der(&cert.to_der()?))
}

/// The certificate id of a DER certificate.
pub fn cert_id_of_der(der: &[u8]) -> String {
    hex_lower(&openssl::sha::sha1(der))
}

/// The response file's name for a certificate id: `ocsp-<id>.json`.
pub fn response_file_name(id: &str) -> String {
    format!("ocsp-{id}.json")
}

/// The directory name under `ocsp/`: the MD name, or `other`.
pub fn group_dir(md_name: Option<&str>) -> &str {
    md_name.unwrap_or(OTHER_GROUP)
}

/// The response file's path relative to the store directory:
/// `ocsp/<md name or "other">/ocsp-<id>.json` (SPEC 3.1).
pub fn response_store_path(md_name: Option<&str>, id: &str) -> std::path::PathBuf {
    ["ocsp", group_dir(md_name), &response_file_name(id)]
        .iter()
        .collect()
}

/// The certificate id in a response file name (`ocsp-<40 hex>.json`), lower-cased; `None` for
/// any other file (`job.json`, temporary files).
pub fn parse_response_file_name(name: &str) -> Option<String> {
    let hex = name.strip_prefix("ocsp-")?.strip_suffix(".json")?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_lowercase_sha1_hex() {
        // SHA-1("abc"), FIPS 180 test vector.
        assert_eq!(
            cert_id_of_der(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn file_names() {
        let id = cert_id_of_der(b"abc");
        let name = response_file_name(&id);
        assert_eq!(name, "ocsp-a9993e364706816aba3e25717850c26c9cd0d89d.json");
        assert_eq!(parse_response_file_name(&name), Some(id.clone()));
        assert_eq!(
            parse_response_file_name(
                &name
                    .to_ascii_uppercase()
                    .replace("OCSP-", "ocsp-")
                    .replace(".JSON", ".json")
            ),
            Some(id)
        );
        assert_eq!(parse_response_file_name("job.json"), None);
        assert_eq!(parse_response_file_name("ocsp-abc.json"), None);
        assert_eq!(group_dir(None), "other");
        assert_eq!(group_dir(Some("example.org")), "example.org");
        assert_eq!(
            response_store_path(None, "ab"),
            std::path::Path::new("ocsp/other/ocsp-ab.json")
        );
        assert_eq!(
            response_store_path(Some("example.org"), "ab"),
            std::path::Path::new("ocsp/example.org/ocsp-ab.json")
        );
    }
}
