//! Fuzzes the request framing path as the engine drives it: parse a request head from the input,
//! then feed what follows to a ChunkedDecoder in pieces whose sizes come from the input; also
//! parse the input as a response head.
//!
//! Input layout: byte 0 picks the head limits, bytes 1..5 are four piece sizes, the rest is the
//! message. Besides "never panics", it checks the decoder's contract: it consumes at most what
//! it is given, reports payload it handed out, and stops at the end of the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringgate_http::codec::{
    parse_request_head, parse_response_head, BodyKind, ChunkedDecoder, ChunkedLimits, HeadLimits,
    HopByHop, MAX_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    let [mode, s0, s1, s2, s3, message @ ..] = data else {
        return;
    };
    let sizes = [s0, s1, s2, s3].map(|s| usize::from(*s).max(1));
    let limits = match mode % 3 {
        0 => HeadLimits {
            max_head_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
        },
        1 => HeadLimits {
            max_head_bytes: 256,
            max_uri_bytes: 32,
        },
        _ => HeadLimits {
            max_head_bytes: 16,
            max_uri_bytes: 0,
        },
    };

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    // A head that does not parse still exercises the decoder on the raw bytes.
    let (body, chunked) = match parse_request_head(message, &mut headers, &limits) {
        Ok(Some(head)) => {
            assert!(head.head_len <= message.len());
            assert!(head.head_len <= limits.max_head_bytes);
            assert!(head.target.len() <= limits.max_uri_bytes);
            assert_ne!(head.body, BodyKind::UntilClose);
            assert_ne!(head.body, BodyKind::Length(0));
            let _ = HopByHop::from_headers(head.headers).map(|h| h.contains("connection"));
            (&message[head.head_len..], head.body == BodyKind::Chunked)
        }
        _ => (message, false),
    };
    if chunked || mode & 0x80 != 0 {
        feed_chunked(body, &sizes);
    }

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(Some(head)) = parse_response_head(message, &mut headers, mode & 0x40 != 0, 4096) {
        assert!(head.head_len <= message.len());
        assert!(head.status >= 100);
        assert!(!(head.body == BodyKind::UntilClose && head.keep_alive));
    }
});

fn feed_chunked(mut body: &[u8], sizes: &[usize; 4]) {
    let limits = ChunkedLimits {
        max_line_bytes: 64,
        max_trailer_bytes: 256,
    };
    let mut dec = ChunkedDecoder::new(limits);
    let mut payload = 0u64;
    for &size in sizes.iter().cycle() {
        if body.is_empty() {
            break;
        }
        let piece = &body[..size.min(body.len())];
        match dec.feed_with(piece, |d| payload += d.len() as u64) {
            Ok(p) => {
                assert!(p.consumed <= piece.len());
                assert_eq!(p.done, dec.is_done());
                assert_eq!(dec.payload_len(), payload);
                if !p.done {
                    assert_eq!(p.consumed, piece.len());
                }
                body = &body[p.consumed..];
                if p.done {
                    break;
                }
            }
            Err(e) => {
                assert_eq!(e.status(), 400);
                break;
            }
        }
    }
}
