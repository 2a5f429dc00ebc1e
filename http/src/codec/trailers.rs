//! Which fields a trailer section may not carry, and forwarding one without them.
//!
//! RFC 9110 §6.5.1: a field whose meaning is needed before the content is processed has no
//! place after it. A recipient that merged such a trailer field into the header section (or an
//! HTTP/2 peer that treats trailers as headers) could be told a second `Content-Length`, another
//! `Host`, credentials the gateway never checked. The gateway drops them in every direction: a
//! chunked body passed through from HTTP/1.1 to HTTP/1.1 (the decoder holds its trailer section
//! back and [`ChunkedDecoder::settle`] writes what is left of it), and trailers crossing between
//! HTTP/1.1 and HTTP/2 (the engine filters the field map with [`prohibited_in_trailers`]).

use super::chunked::{ChunkProgress, ChunkedDecoder};

/// The names no trailer section may carry (lower case): framing, connection management,
/// routing, request modifiers and controls, authentication, content format, response controls.
const PROHIBITED: [&str; 34] = [
    // Framing and connection management.
    "content-length",
    "transfer-encoding",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    // Routing.
    "host",
    // Request modifiers and controls.
    "cache-control",
    "expect",
    "max-forwards",
    "pragma",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    // Authentication and state.
    "authorization",
    "proxy-authorization",
    "proxy-authenticate",
    "www-authenticate",
    "cookie",
    "set-cookie",
    // Content format.
    "content-encoding",
    "content-type",
    "content-range",
    // Response controls.
    "age",
    "expires",
    "date",
    "location",
    "retry-after",
    "vary",
];

/// Whether a field named `name` (any case) must not be forwarded in a trailer section.
pub fn prohibited_in_trailers(name: &[u8]) -> bool {
    PROHIBITED
        .iter()
        .any(|p| p.as_bytes().eq_ignore_ascii_case(name))
}

/// The field lines of a raw trailer section (each with its line ending), paired with their names.
fn lines(section: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    section.split_inclusive(|&b| b == b'\n').filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line))
    })
}

/// Whether the raw trailer section holds a field to drop.
pub(super) fn any_prohibited(section: &[u8]) -> bool {
    lines(section).any(|(name, _)| prohibited_in_trailers(name))
}

/// The raw trailer section without its prohibited field lines, ended by the final CRLF.
pub(super) fn kept_section(section: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(section.len());
    for (name, line) in lines(section) {
        if !prohibited_in_trailers(name) {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Where a fed piece of a chunked body stands in the caller's buffer once settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Forward `buf[at..write_end]`.
    pub write_end: usize,
    /// The body's bytes end here in `buf` (what follows belongs to the next message); equal to
    /// `write_end` once the body is done.
    pub next: usize,
}

impl ChunkedDecoder {
    /// Settles `prog`, the result of feeding `buf[at..]`, in `buf`: once the body is done, the
    /// held trailer section is rewritten in place without its prohibited fields (the bytes after
    /// the body move with it). Before that, only the bytes up to the held section are to be
    /// forwarded; the held ones are kept by the decoder.
    pub fn settle(&self, buf: &mut Vec<u8>, at: usize, prog: ChunkProgress) -> Settled {
        let consumed_end = at + prog.consumed;
        if prog.forward == prog.consumed {
            return Settled {
                write_end: consumed_end,
                next: consumed_end,
            };
        }
        let forward_end = at + prog.forward;
        if !prog.done {
            return Settled {
                write_end: forward_end,
                next: consumed_end,
            };
        }
        let kept = self.kept_trailer_section();
        let end = forward_end + kept.len();
        buf.splice(forward_end..consumed_end, kept);
        Settled {
            write_end: end,
            next: end,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::ChunkedLimits;
    use super::*;

    /// Passes `body` (then `rest`) through a filtering decoder fed in pieces of `step` bytes, as
    /// the engine does; returns what would be forwarded, and what is left in the last buffer
    /// after the body.
    fn pass(body: &[u8], rest: &[u8], step: usize) -> (Vec<u8>, Vec<u8>) {
        let mut d = ChunkedDecoder::dropping_prohibited_trailers(ChunkedLimits::default());
        let mut input = body.to_vec();
        input.extend_from_slice(rest);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let end = (pos + step).min(input.len());
            let mut buf = input[pos..end].to_vec();
            let prog = d.feed(&buf).unwrap();
            let s = d.settle(&mut buf, 0, prog);
            out.extend_from_slice(&buf[..s.write_end]);
            if prog.done {
                return (out, buf[s.next..].to_vec());
            }
            pos += prog.consumed;
            assert!(pos < input.len(), "the body never ended");
        }
    }

    #[test]
    fn framing_and_routing_fields_are_dropped_from_trailers() {
        let body = b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\nContent-Length: 2\r\nhost: evil\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer x\r\nserver-timing: db;dur=3\r\n\r\n";
        let want = b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\nserver-timing: db;dur=3\r\n\r\n";
        for step in [1, 2, 3, 7, 13, body.len() + 5] {
            let (out, rest) = pass(body, b"GET / HTTP/1.1\r\n", step);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(want),
                "step {step}"
            );
            let whole_tail = b"GET / HTTP/1.1\r\n";
            assert!(whole_tail.starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn a_clean_trailer_section_goes_through_untouched() {
        for body in [
            &b"3\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n",
        ] {
            let mut d = ChunkedDecoder::dropping_prohibited_trailers(ChunkedLimits::default());
            let prog = d.feed(body).unwrap();
            assert_eq!(prog.forward, prog.consumed, "forwarded as is, no rewrite");
            for step in [1, 4] {
                assert_eq!(pass(body, b"", step).0, body, "step {step}");
            }
        }
    }

    #[test]
    fn only_the_trailer_section_is_held_back() {
        let mut d = ChunkedDecoder::dropping_prohibited_trailers(ChunkedLimits::default());
        let prog = d.feed(b"3\r\nabc\r\n0\r\nX-A: 1\r\n").unwrap();
        assert!(!prog.done);
        assert_eq!(prog.forward, b"3\r\nabc\r\n0\r\n".len());
        let prog = d.feed(b"Content-Length: 9\r\n\r\n").unwrap();
        assert!(prog.done);
        assert_eq!(prog.forward, 0);
        assert_eq!(d.kept_trailer_section(), b"X-A: 1\r\n\r\n");
    }

    #[test]
    fn the_list_is_case_blind() {
        assert!(prohibited_in_trailers(b"CONTENT-LENGTH"));
        assert!(prohibited_in_trailers(b"Host"));
        assert!(!prohibited_in_trailers(b"grpc-status"));
        assert!(!prohibited_in_trailers(b"x-checksum"));
    }
}
