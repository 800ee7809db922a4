//! A minimal DER reader/writer for what the `openssl` crate cannot do without `unsafe`:
//! adding the nonce extension to an OCSP request and reading the nonce of a response (RFC 6960
//! 4.4.1); also what the quick certificate/key check (`crypt/quick_pair.rs`) reads of keys and
//! certificates. Only definite lengths, as DER requires.

/// One DER element: its tag byte, its content and the bytes after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

/// Read the element at the start of `input`; returns it and the rest.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High tag numbers (0x1f) never occur in the structures we read.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// All elements of a constructed content, in order; `None` if any is malformed.
pub(crate) fn children(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read(content)?;
        out.push(tlv);
        content = rest;
    }
    Some(out)
}

/// Encode one element.
pub(crate) fn write(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;

/// id-pkix-ocsp-nonce, 1.3.6.1.5.5.7.48.1.2 (RFC 6960 4.4.1), content bytes of the OID.
pub(crate) const OID_OCSP_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![0xab; len];
            let enc = write(OCTET_STRING, &content);
            let (tlv, rest) = read(&enc).unwrap();
            assert_eq!(tlv.tag, OCTET_STRING);
            assert_eq!(tlv.content.len(), len);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let enc = write(SEQUENCE, &[1, 2, 3]);
        assert!(read(&enc[..enc.len() - 1]).is_none());
        assert!(read(&[0x30, 0x82, 0x01]).is_none());
        assert!(read(&[]).is_none());
    }
}
