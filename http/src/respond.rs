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

/// Appends a gateway-made refusal for a gRPC request: gRPC clients read the outcome from
/// `grpc-status`, not from the HTTP status, so it is a `200` with no body whose status fields end
/// the call (over HTTP/2, a trailers-only response). The HTTP status maps to the gRPC code the
/// gRPC spec gives it, with the gateway's own meanings for 413/429 (RESOURCE_EXHAUSTED) and 504
/// (DEADLINE_EXCEEDED); `grpc-message` is the error code.
pub fn write_grpc_refusal(out: &mut Vec<u8>, r: &Refusal, close: bool, extra: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: ");
    push_u64(out, u64::from(grpc_code(r.status)));
    out.extend_from_slice(b"\r\ngrpc-message: ");
    out.extend_from_slice(r.code.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: 0\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The gRPC status code for a gateway-made HTTP status.
pub fn grpc_code(status: u16) -> u8 {
    match status {
        400 => 13,       // INTERNAL
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 | 501 => 12, // UNIMPLEMENTED
        408 | 504 => 4,  // DEADLINE_EXCEEDED
        413 | 429 => 8,  // RESOURCE_EXHAUSTED
        502 | 503 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// Parses a `grpc-timeout` value (`1S`, `250m`, `100u`: up to 8 digits and a unit).
pub fn parse_grpc_timeout(v: &[u8]) -> Option<std::time::Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        b"H" => D::from_secs(n * 3600),
        b"M" => D::from_secs(n * 60),
        b"S" => D::from_secs(n),
        b"m" => D::from_millis(n),
        b"u" => D::from_micros(n),
        b"n" => D::from_nanos(n),
        _ => return None,
    })
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
    fn grpc_timeouts_parse_by_unit_and_reject_junk() {
        use std::time::Duration as D;
        assert_eq!(parse_grpc_timeout(b"1S"), Some(D::from_secs(1)));
        assert_eq!(parse_grpc_timeout(b"250m"), Some(D::from_millis(250)));
        assert_eq!(parse_grpc_timeout(b"2H"), Some(D::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout(b"99999999n"),
            Some(D::from_nanos(99_999_999))
        );
        for bad in [&b""[..], b"S", b"123456789S", b"1s", b"-1S", b"1.5S", b"10"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_refusal_carries_the_status_in_fields() {
        let mut out = Vec::new();
        write_grpc_refusal(&mut out, &Refusal::new(429, "rate_limited"), false, b"");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("grpc-status: 8\r\n"), "{text}");
        assert!(text.contains("grpc-message: rate_limited\r\n"), "{text}");
        assert!(text.ends_with("content-length: 0\r\n\r\n"), "{text}");
        assert_eq!(grpc_code(503), 14);
        assert_eq!(grpc_code(504), 4);
    }

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
