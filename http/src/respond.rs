//! Gateway-made responses: a status line, a JSON body with a stable `error` code, and framing.
//!
//! Written into a reused buffer with no formatting machinery beyond integer printing, because a
//! 404 or 429 storm must stay cheap.

use crate::error::Refusal;

/// Appends a whole gateway-made response for `r` to `out`.
///
/// `close` says the gateway closes the connection after it; `http10_keep_alive` says an HTTP/1.0
/// client's connection stays open (it assumes a close unless told otherwise); `extra` holds header
/// lines to add (each `name: value\r\n`).
pub fn write_refusal(
    out: &mut Vec<u8>,
    r: &Refusal,
    close: bool,
    http10_keep_alive: bool,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(r.status));
    out.push(b' ');
    out.extend_from_slice(r.reason().as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    let body_len = br#"{"error":""}"#.len() + r.code.len();
    push_u64(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10_keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n{\"error\":\"");
    out.extend_from_slice(r.code.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// The interim response sent before reading a body the client holds back (`Expect: 100-continue`).
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends the decimal digits of `v`.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_json_with_exact_length() {
        let mut out = Vec::new();
        write_refusal(&mut out, &Refusal::NO_ROUTE, false, false, b"");
        let text = String::from_utf8(out).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head end");
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert_eq!(body, r#"{"error":"no_route"}"#);
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(!head.contains("connection: close"));
    }

    #[test]
    fn closing_refusal_says_so() {
        let mut out = Vec::new();
        write_refusal(&mut out, &Refusal::REQUEST_TIMEOUT, true, false, b"");
        assert!(String::from_utf8_lossy(&out).contains("\r\nconnection: close\r\n"));
    }

    #[test]
    fn kept_http10_connection_is_announced() {
        let mut out = Vec::new();
        write_refusal(&mut out, &Refusal::NO_ROUTE, false, true, b"");
        assert!(String::from_utf8_lossy(&out).contains("\r\nconnection: keep-alive\r\n"));
    }

    #[test]
    fn integers_print() {
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(String::from_utf8(out).expect("utf8"), v.to_string());
        }
    }
}
