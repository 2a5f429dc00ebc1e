//! Turning one stored record into one JSON line, on the log thread.
//!
//! Nothing here is on a worker's path, so plain `write!` is fine for addresses; the line buffer
//! is reused by the caller, so formatting allocates only while that buffer is still growing.
//!
//! Strings are request bytes, not text: a client chooses them. They are escaped so that any byte
//! sequence gives one valid JSON string on one line, and so that nothing in it can drive a
//! terminal that displays the log:
//! - `"` and `\` are escaped as `\"` and `\\`;
//! - C0 controls (U+0000–U+001F), DEL (U+007F) and C1 controls (U+0080–U+009F) are written as
//!   `\u00XX` (so a newline is `\u000a`, an escape sequence's ESC is `\u001b`);
//! - other valid UTF-8 is copied as is;
//! - each byte that is not part of valid UTF-8 is written as `\u00XX` with that byte's value, so
//!   the byte survives (a lone `0xff` reads back as `ÿ`, U+00FF). The choice keeps every byte
//!   of an odd request visible for forensics, where U+FFFD would erase it; the price is that a
//!   reader of the decoded string cannot tell a lone invalid byte `0xe9` from a genuine `é`
//!   (which the raw line shows as the literal two-byte UTF-8 character, not as an escape).

use super::writer::{Fixed, Span};
use std::io::Write;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string, quotes included, escaped as the module documents.
pub(super) fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        push_valid(out, chunk.valid());
        for &b in chunk.invalid() {
            push_u00(out, b);
        }
    }
    out.push(b'"');
}

/// Appends valid UTF-8, escaping what JSON requires and the controls a terminal would act on.
fn push_valid(out: &mut Vec<u8>, s: &str) {
    // Runs of characters that need no escape are copied in one go.
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            _ => None,
        };
        let control = matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}');
        if escape.is_none() && !control {
            continue;
        }
        out.extend_from_slice(bytes.get(run_start..i).unwrap_or_default());
        match escape {
            Some(e) => out.extend_from_slice(e),
            // Controls are all below U+0100, so the code point fits in one byte.
            None => push_u00(out, u8::try_from(u32::from(c)).unwrap_or(b'?')),
        }
        run_start = i + c.len_utf8();
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
}

/// Appends `\u00XX` for the byte `b`.
fn push_u00(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0x0f)]);
}

/// Appends the decimal digits of `n`.
pub(super) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // n % 10 < 10, so the narrowing is exact.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `n` as exactly `width` digits, zero-padded (`n` must fit; wider values keep all
/// their digits).
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut probe = 10u64;
    for _ in 1..width {
        if n < probe {
            out.push(b'0');
        }
        probe = probe.saturating_mul(10);
    }
    push_u64(out, n);
}

/// The (year, month, day) of a day counted from 1970-01-01 ([`ringgate_model::calendar`]).
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let (y, m, d) =
        ringgate_model::calendar::civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    (y as u64, m as u64, d as u64)
}

/// Appends `micros` since the Unix epoch as an RFC 3339 UTC time with microseconds,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`. (Years past 9999, 8000 years out, would print more digits.)
pub(super) fn push_rfc3339_micros(out: &mut Vec<u8>, micros: u64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    push_padded(out, year, 4);
    out.push(b'-');
    push_padded(out, month, 2);
    out.push(b'-');
    push_padded(out, day, 2);
    out.push(b'T');
    push_padded(out, of_day / 3_600, 2);
    out.push(b':');
    push_padded(out, of_day % 3_600 / 60, 2);
    out.push(b':');
    push_padded(out, of_day % 60, 2);
    out.push(b'.');
    push_padded(out, frac, 6);
    out.push(b'Z');
}

/// The bytes of `span` in `arena` (empty if the span is out of range, which a batch never makes).
fn text(arena: &[u8], span: Span) -> &[u8] {
    arena
        .get(span.start..span.start.saturating_add(span.len))
        .unwrap_or_default()
}

/// Appends `,"key":` (or `"key":` right after the opening brace).
fn push_key(out: &mut Vec<u8>, key: &str) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends one record as a JSON object and a newline.
///
/// Keys, in order: `time`, `request_id`, `trace_id` (omitted when empty), `method`, `path`,
/// `route` (`null` when no route matched), `upstream` (`"ip:port"`, or `null`), `status`,
/// `bytes_in`, `bytes_out`, `duration_us`, `upstream_us` (`null` when no upstream answered),
/// `client_ip`, `identity` (omitted when anonymous), `reason` (omitted unless the gateway made
/// the response), `detail` (more about the reason, e.g. an upstream TLS failure's cause; omitted
/// when there is none), `cache` (what a cached route's cache did; omitted elsewhere), `worker`.
pub(super) fn push_line(out: &mut Vec<u8>, f: &Fixed, arena: &[u8]) {
    out.push(b'{');
    push_key(out, "time");
    out.push(b'"');
    push_rfc3339_micros(out, f.start_unix_micros);
    out.push(b'"');
    push_key(out, "request_id");
    push_json_str(out, text(arena, f.request_id));
    let trace_id = text(arena, f.trace_id);
    if !trace_id.is_empty() {
        push_key(out, "trace_id");
        push_json_str(out, trace_id);
    }
    push_key(out, "method");
    push_json_str(out, text(arena, f.method));
    push_key(out, "path");
    push_json_str(out, text(arena, f.path));
    push_key(out, "route");
    let route = text(arena, f.route);
    if route.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        push_json_str(out, route);
    }
    push_key(out, "upstream");
    match f.upstream {
        // A socket address prints as `1.2.3.4:80` or `[::1]:80`: nothing to escape.
        Some(addr) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "\"{addr}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    push_key(out, "status");
    push_u64(out, u64::from(f.status));
    push_key(out, "bytes_in");
    push_u64(out, f.bytes_in);
    push_key(out, "bytes_out");
    push_u64(out, f.bytes_out);
    push_key(out, "duration_us");
    push_u64(out, f.total_micros);
    push_key(out, "upstream_us");
    match f.upstream_micros {
        Some(us) => push_u64(out, us),
        None => out.extend_from_slice(b"null"),
    }
    push_key(out, "client_ip");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "\"{}\"", f.client_ip);
    let identity = text(arena, f.identity);
    if !identity.is_empty() {
        push_key(out, "identity");
        push_json_str(out, identity);
    }
    if !f.reason.is_empty() {
        push_key(out, "reason");
        push_json_str(out, f.reason.as_bytes());
        if !f.detail.is_empty() {
            push_key(out, "detail");
            push_json_str(out, f.detail.as_bytes());
        }
    }
    if !f.cache.is_empty() {
        push_key(out, "cache");
        push_json_str(out, f.cache.as_bytes());
    }
    push_key(out, "worker");
    push_u64(out, u64::from(f.worker));
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn time(micros: u64) -> String {
        let mut out = Vec::new();
        push_rfc3339_micros(&mut out, micros);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_times() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000000Z");
        // `date -u -d @1700000000` is Tue Nov 14 22:13:20 UTC 2023.
        assert_eq!(time(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        // 2000-02-29 (a leap day of a year divisible by 400) at 951782400.
        assert_eq!(time(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        // The last microsecond of 1999.
        assert_eq!(time(946_684_799_999_999), "1999-12-31T23:59:59.999999Z");
        // 2100 is not a leap year: 2100-02-28 (4107456000) is followed by 2100-03-01.
        assert_eq!(time(4_107_456_000_000_000), "2100-02-28T00:00:00.000000Z");
        assert_eq!(time(4_107_542_400_000_000), "2100-03-01T00:00:00.000000Z");
    }

    /// Walks the calendar one day at a time with the plain rules, from 1970 to past 2400, and
    /// checks every day against the closed-form conversion.
    #[test]
    fn civil_from_days_matches_a_day_by_day_calendar() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = |y: u64, m: u64| match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if leap(y) => 29,
            _ => 28,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..160_000u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert!(y > 2400);
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 99, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    fn escaped(s: &[u8]) -> String {
        let mut out = Vec::new();
        push_json_str(&mut out, s);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn escapes() {
        assert_eq!(escaped(b"plain"), r#""plain""#);
        assert_eq!(escaped(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            escaped(b"\n\r\t\x00\x1b"),
            r#""\u000a\u000d\u0009\u0000\u001b""#
        );
        assert_eq!(escaped(b"\x7f"), r#""\u007f""#);
        // U+009B (CSI) as valid UTF-8 is escaped; U+00A0 and up are not.
        assert_eq!(
            escaped("\u{9b}\u{a0}é€😀".as_bytes()),
            "\"\\u009b\u{a0}é€😀\""
        );
        // Invalid bytes keep their value.
        assert_eq!(escaped(b"a\xffb\xc3"), r#""a\u00ffb\u00c3""#);
        // A truncated sequence followed by a valid one.
        assert_eq!(escaped(b"\xe2\x82/\xe2\x82\xac"), "\"\\u00e2\\u0082/€\"");
    }

    /// What a reader gets back: valid UTF-8 as is, each invalid byte as the char of its value.
    /// Built with `from_utf8`'s error positions, not with `utf8_chunks` as the escaper is.
    fn expected_decoding(mut s: &[u8]) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(s) {
                Ok(v) => {
                    out.push_str(v);
                    return out;
                }
                Err(e) => {
                    let (good, rest) = s.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap());
                    let bad = e.error_len().unwrap_or(rest.len());
                    out.extend(rest[..bad].iter().map(|&b| char::from(b)));
                    s = &rest[bad..];
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_give_one_json_string(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let json = escaped(&bytes);
            prop_assert!(!json.bytes().any(|b| b < 0x20 || b == 0x7f));
            let back: String = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, expected_decoding(&bytes));
        }

        #[test]
        fn any_text_round_trips(s in "\\PC*|[\\x00-\\x1f\"\\\\]*") {
            let json = escaped(s.as_bytes());
            let back: String = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
