//! Property tests for the codec: properties that must hold for every input, not just the
//! examples in the unit tests.
//!
//! - a valid chunked body, split anywhere into any number of pieces, is consumed exactly as when
//!   fed whole (same consumed total, payload and end), and bytes after it are never consumed;
//! - a generated valid request head parses, and every field reads back what was generated; every
//!   proper prefix of it is "incomplete", never an error;
//! - arbitrary bytes (and mutations of valid messages) never make any parser panic.
#![allow(clippy::unwrap_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use ringgate_http::codec::{
    parse_request_head, parse_response_head, BodyKind, ChunkedDecoder, ChunkedLimits, HeadLimits,
    HopByHop, MAX_HEADERS,
};

// ---------- chunked bodies ----------

/// A chunked body and the payload it carries.
#[derive(Debug, Clone)]
struct Chunked {
    wire: Vec<u8>,
    payload: Vec<u8>,
}

fn extension() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(";a".to_owned()),
        Just(" ; name = value".to_owned()),
        Just(";q=\"quoted \\\" ;= text\"".to_owned()),
        "[a-z]{1,8}".prop_map(|n| format!(";{n}")),
        ("[a-z]{1,8}", "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}").prop_map(|(n, v)| format!(";{n}={v}")),
    ]
}

fn chunk_size(len: usize) -> impl Strategy<Value = String> {
    (any::<bool>(), 0usize..3).prop_map(move |(upper, zeros)| {
        let hex = if upper {
            format!("{len:X}")
        } else {
            format!("{len:x}")
        };
        format!("{}{hex}", "0".repeat(zeros))
    })
}

fn chunk() -> impl Strategy<Value = (String, Vec<u8>, String)> {
    vec(any::<u8>(), 1..300).prop_flat_map(|data| (chunk_size(data.len()), Just(data), extension()))
}

fn trailers() -> impl Strategy<Value = Vec<(String, String)>> {
    vec(("x-[a-z0-9-]{1,10}", "[ -~]{0,20}"), 0..3)
}

fn chunked_body() -> impl Strategy<Value = Chunked> {
    (vec(chunk(), 0..6), extension(), trailers()).prop_map(|(chunks, last_ext, trailers)| {
        let mut wire = Vec::new();
        let mut payload = Vec::new();
        for (size, data, ext) in chunks {
            wire.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
            wire.extend_from_slice(&data);
            wire.extend_from_slice(b"\r\n");
            payload.extend_from_slice(&data);
        }
        wire.extend_from_slice(format!("0{last_ext}\r\n").as_bytes());
        for (name, value) in trailers {
            wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        Chunked { wire, payload }
    })
}

/// Feeds `pieces` in order, as the engine would: each call gets what is left of the current
/// read. Returns (consumed, done, payload).
fn feed_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (usize, bool, Vec<u8>) {
    let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
    let mut payload = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        let p = dec
            .feed_with(piece, |d| payload.extend_from_slice(d))
            .unwrap();
        consumed += p.consumed;
        assert_eq!(p.done, dec.is_done());
        if p.done {
            break;
        }
        assert_eq!(
            p.consumed,
            piece.len(),
            "consumed less than given before the end"
        );
    }
    assert_eq!(dec.payload_len(), payload.len() as u64);
    (consumed, dec.is_done(), payload)
}

/// Splits `buf` at the given points (taken modulo its length, sorted).
fn split_at_points(buf: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (buf.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(buf[start..cut].to_vec());
        start = cut;
    }
    pieces.push(buf[start..].to_vec());
    pieces
}

proptest! {
    #[test]
    fn chunked_body_split_anywhere_decodes_as_whole(
        body in chunked_body(),
        points in vec(any::<usize>(), 0..12),
        rest in vec(any::<u8>(), 0..16),
    ) {
        let mut input = body.wire.clone();
        input.extend_from_slice(&rest);

        let whole = feed_pieces([&input[..]]);
        prop_assert_eq!(whole.0, body.wire.len());
        prop_assert!(whole.1);
        prop_assert_eq!(&whole.2, &body.payload);

        let pieces = split_at_points(&input, &points);
        let split = feed_pieces(pieces.iter().map(Vec::as_slice));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn chunked_body_fed_byte_by_byte_decodes_as_whole(body in chunked_body()) {
        let split = feed_pieces(body.wire.chunks(1));
        prop_assert_eq!(split, (body.wire.len(), true, body.payload));
    }

    #[test]
    fn truncated_chunked_body_is_never_done(body in chunked_body(), cut in any::<usize>()) {
        let cut = cut % body.wire.len();
        let (consumed, done, _) = feed_pieces([&body.wire[..cut]]);
        prop_assert_eq!((consumed, done), (cut, false));
    }
}

// ---------- request heads ----------

/// What a generated request head says; the parse must read back exactly this.
#[derive(Debug, Clone)]
struct GenRequest {
    method: String,
    path: String,
    query: Option<String>,
    minor_version: u8,
    host: Option<String>,
    extra: Vec<(String, String)>,
    body: BodyKind,
    connection: Option<&'static str>,
    expect_continue: bool,
}

impl GenRequest {
    fn wire(&self) -> Vec<u8> {
        let mut s = format!("{} {}", self.method, self.path);
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s.push_str(&format!(" HTTP/1.{}\r\n", self.minor_version));
        if let Some(host) = &self.host {
            s.push_str(&format!("Host: {host}\r\n"));
        }
        for (name, value) in &self.extra {
            s.push_str(&format!("{name}:{value}\r\n"));
        }
        match self.body {
            BodyKind::Length(n) => s.push_str(&format!("Content-Length: {n}\r\n")),
            BodyKind::Chunked => s.push_str("Transfer-Encoding: chunked\r\n"),
            BodyKind::Empty | BodyKind::UntilClose => {}
        }
        if let Some(c) = self.connection {
            s.push_str(&format!("Connection: {c}\r\n"));
        }
        if self.expect_continue {
            s.push_str("Expect: 100-continue\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn header_count(&self) -> usize {
        usize::from(self.host.is_some())
            + self.extra.len()
            + usize::from(matches!(self.body, BodyKind::Length(_) | BodyKind::Chunked))
            + usize::from(self.connection.is_some())
            + usize::from(self.expect_continue)
    }

    fn keep_alive(&self) -> bool {
        match (self.minor_version, self.connection) {
            (_, Some("close")) => false,
            (1, _) => true,
            (_, Some("keep-alive")) => true,
            _ => false,
        }
    }
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]{2,6}){0,3}",
        "[a-z]{1,10}\\.example:[1-9][0-9]{0,3}",
        Just("127.0.0.1:8080".to_owned()),
        Just("[::1]:443".to_owned()),
    ]
}

fn request() -> impl Strategy<Value = GenRequest> {
    let method = prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("PUT".to_owned()),
        "[A-Z]{1,10}".prop_filter("CONNECT is refused", |m| m != "CONNECT"),
    ];
    let path = "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){1,4}";
    let query = proptest::option::of("[a-zA-Z0-9=&/?%._-]{0,20}");
    let extra = vec(
        (
            "x-[a-z0-9-]{1,12}",
            "( |\t)*[!-~]([ -~]{0,30}[!-~])?( |\t)*",
        ),
        0..20,
    );
    let body = prop_oneof![
        Just(BodyKind::Empty),
        (1u64..u64::MAX).prop_map(BodyKind::Length),
        Just(BodyKind::Chunked),
    ];
    let connection = proptest::option::of(prop_oneof![
        Just("close"),
        Just("keep-alive"),
        Just("x-custom")
    ]);
    (
        (method, path, query, 0u8..2, proptest::option::of(host())),
        (extra, body, connection, any::<bool>()),
    )
        .prop_map(
            |((method, path, query, minor_version, host), (extra, body, connection, expect))| {
                GenRequest {
                    method,
                    path,
                    query,
                    minor_version,
                    // HTTP/1.1 must carry a Host.
                    host: host.or_else(|| (minor_version == 1).then(|| "h".to_owned())),
                    extra,
                    // Transfer-Encoding is refused in HTTP/1.0.
                    body: if minor_version == 0 && body == BodyKind::Chunked {
                        BodyKind::Empty
                    } else {
                        body
                    },
                    connection,
                    expect_continue: expect,
                }
            },
        )
}

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 64 * 1024,
    max_uri_bytes: 8 * 1024,
};

proptest! {
    #[test]
    fn generated_request_head_round_trips(req in request(), body in vec(any::<u8>(), 0..32)) {
        let head = req.wire();
        let mut buf = head.clone();
        buf.extend_from_slice(&body);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = parse_request_head(&buf, &mut headers, &LIMITS).unwrap().unwrap();

        prop_assert_eq!(parsed.method, req.method.as_str());
        prop_assert_eq!(parsed.path, req.path.as_str());
        prop_assert_eq!(parsed.query, req.query.as_deref());
        let target = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        prop_assert_eq!(parsed.target, target.as_str());
        prop_assert_eq!(parsed.minor_version, req.minor_version);
        prop_assert_eq!(parsed.head_len, head.len());
        prop_assert_eq!(parsed.body, req.body);
        prop_assert_eq!(parsed.host, req.host.as_deref().map(str::as_bytes));
        prop_assert_eq!(parsed.keep_alive, req.keep_alive());
        prop_assert_eq!(parsed.expect_continue, req.expect_continue);
        prop_assert!(!parsed.upgrade);
        prop_assert_eq!(parsed.headers.len(), req.header_count());
        let offset = usize::from(req.host.is_some());
        for (h, (name, value)) in parsed.headers[offset..].iter().zip(&req.extra) {
            prop_assert_eq!(h.name, name.as_str());
            let trimmed = value.trim_matches([' ', '\t']);
            prop_assert_eq!(h.value, trimmed.as_bytes());
        }

        let hop = HopByHop::from_headers(parsed.headers).unwrap();
        prop_assert!(hop.contains("Connection"));
        prop_assert_eq!(hop.contains("x-custom"), req.connection == Some("x-custom"));
    }

    #[test]
    fn every_proper_prefix_of_a_valid_head_is_incomplete(req in request()) {
        let head = req.wire();
        for end in 0..head.len() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let r = parse_request_head(&head[..end], &mut headers, &LIMITS);
            prop_assert!(matches!(r, Ok(None)), "prefix {} gave {:?}", end, r);
        }
    }
}

// ---------- no input panics ----------

/// Runs every parser on `input`; only panics matter.
fn exercise(input: &[u8], sizes: &[usize]) {
    for (max_head_bytes, max_uri_bytes) in [(64 * 1024, 8 * 1024), (64, 16), (0, 0)] {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let limits = HeadLimits {
            max_head_bytes,
            max_uri_bytes,
        };
        if let Ok(Some(head)) = parse_request_head(input, &mut headers, &limits) {
            let _ = HopByHop::from_headers(head.headers).map(|h| h.contains("x"));
            assert!(head.head_len <= input.len());
        }
    }
    for request_was_head in [false, true] {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        if let Ok(Some(head)) = parse_response_head(input, &mut headers, request_was_head, 4096) {
            assert!(head.head_len <= input.len());
            let _ = HopByHop::from_headers(head.headers);
        }
    }
    let limits = ChunkedLimits {
        max_line_bytes: 64,
        max_trailer_bytes: 128,
    };
    let mut dec = ChunkedDecoder::new(limits);
    let mut rest = input;
    for &size in sizes.iter().cycle().take(64) {
        if rest.is_empty() {
            break;
        }
        let piece = &rest[..size.min(rest.len())];
        match dec.feed(piece) {
            Ok(p) => {
                assert!(p.consumed <= piece.len());
                rest = &rest[p.consumed..];
                if p.done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

/// Bytes that make the interesting states likely.
fn http_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            4 => any::<u8>(),
            2 => prop::sample::select(b"\r\n :;=\"\\/?#@[]0123456789abcdefABCDEF".to_vec()),
            1 => prop::sample::select(vec![b'\t', 0u8, 0x7f, 0xff]),
        ],
        0..512,
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in http_ish_bytes(), sizes in vec(1usize..64, 1..8)) {
        exercise(&input, &sizes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        req in request(),
        body in chunked_body(),
        flips in vec((any::<usize>(), any::<u8>()), 1..6),
        sizes in vec(1usize..64, 1..8),
    ) {
        let mut input = req.wire();
        input.extend_from_slice(&body.wire);
        for (at, byte) in flips {
            let at = at % input.len();
            input[at] = byte;
        }
        exercise(&input, &sizes);
        exercise(&body.wire, &sizes);
    }
}
