//! Writing header lines: the one format every head the gateway builds uses (upstream requests,
//! client responses, identity headers from authentication), so no caller spells `": "` and
//! `"\r\n"` itself.

/// Appends `name: value\r\n`.
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_in_order() {
        let mut out = b"GET / HTTP/1.1\r\n".to_vec();
        push_header(&mut out, b"x-request-id", b"abc");
        push_header(&mut out, b"x-empty", b"");
        assert_eq!(out, b"GET / HTTP/1.1\r\nx-request-id: abc\r\nx-empty: \r\n");
    }
}
