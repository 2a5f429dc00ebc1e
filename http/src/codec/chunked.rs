//! A streaming validator for chunked bodies (RFC 9112 §7.1), resumable at any byte boundary.
//!
//! The engine forwards a chunked body verbatim: it reads bytes, feeds them here, and writes the
//! bytes this reports as consumed to the upstream. Nothing is re-encoded, so the validator is the
//! only thing between a client's framing and the upstream's reading of it, and it accepts exactly
//! the grammar, no more:
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size   = 1*HEXDIG                         ; here: at most 16 digits
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
//! ```
//!
//! Every lenient reading found in the wild is refused: bare LF, whitespace after the size that is
//! not followed by `;`, `0x` prefixes, signs, sizes that overflow, data not followed by CRLF,
//! malformed trailer fields. Size lines and the trailer section are bounded by
//! [`ChunkedLimits`]; the payload is not (the engine bounds it with
//! [`ChunkedDecoder::payload_len`]).
//!
//! # Design
//! A byte-at-a-time state machine for the lines (they are short) and a bulk copy-free skip over
//! chunk data (where the bytes are); the whole state is a few words, so the decoder lives in the
//! connection's state and resumes wherever the previous read ended. It never consumes past the
//! end of the body: the bytes after it belong to the next request on the connection.

use super::error::{CodecError, Kind};
use super::head::is_tchar;

/// Bounds on the parts of a chunked body that are not payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// The longest chunk-size line, extensions and CRLF included (default 4096).
    pub max_line_bytes: usize,
    /// The largest trailer section, from after the last-chunk line to the final CRLF included
    /// (default 16384).
    pub max_trailer_bytes: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        ChunkedLimits {
            max_line_bytes: 4096,
            max_trailer_bytes: 16384,
        }
    }
}

/// What one call to [`ChunkedDecoder::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// How many bytes from the start of the input belong to the body (forward exactly these).
    pub consumed: usize,
    /// Whether the body ended within them; the rest of the input is not the body's.
    pub done: bool,
}

/// Where in the grammar the decoder is. Only what the next byte needs is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a chunk-size.
    SizeStart,
    /// More hex digits, or what may follow them.
    Size,
    /// BWS after the size or an extension: only more BWS or ';' may follow.
    BwsBeforeSemi,
    /// After ';': BWS, then the first byte of an extension name.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// BWS after an extension name: '=', ';' or more BWS.
    BwsAfterName,
    /// After '=': BWS, then a token or a quoted-string.
    ExtValueStart,
    /// In a token value.
    ExtValueToken,
    /// In a quoted-string value.
    Quoted,
    /// After a backslash in a quoted-string.
    QuotedEscape,
    /// After the closing quote.
    AfterQuoted,
    /// After the CR of the size line.
    SizeLf,
    /// In chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: its CR.
    DataCr,
    /// After chunk data: its LF.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR of a trailer field line.
    TrailerLf,
    /// After the CR of the final empty line.
    FinalLf,
    /// The body has ended.
    Done,
}

/// A streaming, resumable chunked-body validator.
///
/// The proxy forwards the raw input bytes it consumed verbatim (pass-through), so the validator
/// is strict: what it accepts is exactly what the upstream will see. After an error the decoder
/// stays failed and returns the same error on every call.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    /// The chunk-size being read.
    size: u64,
    /// Hex digits read into `size`.
    digits: u8,
    /// Bytes of the current size line so far.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
    /// Payload bytes passed so far.
    payload_len: u64,
    /// Set once the input is refused.
    failed: Option<CodecError>,
    /// The trailer section's bytes, when asked to keep them.
    trailers: Option<Vec<u8>>,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            limits,
            state: State::SizeStart,
            size: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
            payload_len: 0,
            failed: None,
            trailers: None,
        }
    }

    /// A decoder that also keeps the trailer section (to relay trailer fields in another
    /// protocol: HTTP/2 trailers).
    pub fn keeping_trailers(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            trailers: Some(Vec::new()),
            ..Self::new(limits)
        }
    }

    /// The trailer fields kept so far (`name: value` lines without the final empty line), when
    /// made with [`keeping_trailers`](Self::keeping_trailers).
    pub fn trailer_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.trailers
            .as_deref()
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                Some((&line[..colon], line[colon + 1..].trim_ascii()))
            })
    }

    /// Validates the next bytes of the body. Consumes up to the end of the body, never past it.
    pub fn feed(&mut self, input: &[u8]) -> Result<ChunkProgress, CodecError> {
        self.feed_with(input, |_| {})
    }

    /// Like [`feed`](Self::feed), and hands each piece of payload (chunk data, without the
    /// framing) to `on_data` as a slice of `input`, in order. On an error, pieces before the
    /// error may already have been handed out.
    pub fn feed_with(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<ChunkProgress, CodecError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let avail = input.len() - pos;
                // Bounded by `avail`, so it fits a usize.
                let take = usize::try_from(left).map_or(avail, |left| left.min(avail));
                on_data(&input[pos..pos + take]);
                pos += take;
                self.payload_len = self.payload_len.saturating_add(take as u64);
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            if let Err(kind) = self.step(input[pos]) {
                let e = CodecError::from(kind);
                self.failed = Some(e);
                return Err(e);
            }
            pos += 1;
        }
        Ok(ChunkProgress {
            consumed: pos,
            done: self.state == State::Done,
        })
    }

    /// Total payload bytes passed so far (chunk data without framing).
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// Whether the whole body, trailer section and final CRLF included, has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), Kind> {
        use State::*;
        match self.state {
            SizeStart | Size | BwsBeforeSemi | ExtNameStart | ExtName | BwsAfterName
            | ExtValueStart | ExtValueToken | Quoted | QuotedEscape | AfterQuoted | SizeLf => {
                self.line_len += 1;
                if self.line_len > self.limits.max_line_bytes {
                    return Err(Kind::ChunkLineTooLong);
                }
                self.state = self.size_line(b)?;
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > self.limits.max_trailer_bytes {
                    return Err(Kind::TrailerTooLarge);
                }
                self.state = trailer(self.state, b)?;
                if let Some(t) = self.trailers.as_mut() {
                    t.push(b);
                }
            }
            DataCr => {
                self.state = if b == b'\r' {
                    DataLf
                } else {
                    return Err(Kind::ChunkDataEnding);
                }
            }
            DataLf => {
                if b != b'\n' {
                    return Err(Kind::ChunkDataEnding);
                }
                self.state = SizeStart;
                self.line_len = 0;
            }
            // `feed_with` handles data in bulk and stops at Done.
            Data(_) | Done => {}
        }
        Ok(())
    }

    /// The size line: chunk-size, extensions, CRLF.
    fn size_line(&mut self, b: u8) -> Result<State, Kind> {
        use State::*;
        if matches!(self.state, SizeStart | Size) {
            if let Some(d) = hex_value(b) {
                if self.state == SizeStart {
                    self.size = 0;
                    self.digits = 0;
                } else if self.digits == 16 {
                    return Err(Kind::ChunkSizeTooLong);
                }
                // At most 16 digits of 4 bits: the shift never drops a set bit.
                self.size = (self.size << 4) | u64::from(d);
                self.digits += 1;
                return Ok(Size);
            }
        }
        let next = match (self.state, b) {
            (SizeLf, b'\n') => {
                if self.size == 0 {
                    self.trailer_len = 0;
                    TrailerStart
                } else {
                    Data(self.size)
                }
            }
            (SizeLf, _) | (_, b'\n') => return Err(Kind::ChunkLineEnding),
            (SizeStart, _) => return Err(Kind::ChunkSize),
            (Size, b';') => ExtNameStart,
            (Size, b' ' | b'\t') => BwsBeforeSemi,
            (Size, b'\r') => SizeLf,
            (Size, _) => return Err(Kind::ChunkSize),
            (BwsBeforeSemi, b' ' | b'\t') => BwsBeforeSemi,
            (BwsBeforeSemi, b';') => ExtNameStart,
            (BwsBeforeSemi, b'\r') => return Err(Kind::ChunkSizeTrailingSpace),
            (ExtNameStart, b' ' | b'\t') => ExtNameStart,
            (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
            (ExtName, b' ' | b'\t') => BwsAfterName,
            (ExtName | BwsAfterName, b'=') => ExtValueStart,
            (ExtName | BwsAfterName, b';') => ExtNameStart,
            (ExtName, b'\r') => SizeLf,
            (BwsAfterName, b' ' | b'\t') => BwsAfterName,
            (ExtValueStart, b' ' | b'\t') => ExtValueStart,
            (ExtValueStart, b'"') => Quoted,
            (ExtValueStart | ExtValueToken, _) if is_tchar(b) => ExtValueToken,
            (ExtValueToken | AfterQuoted, b' ' | b'\t') => BwsBeforeSemi,
            (ExtValueToken | AfterQuoted, b';') => ExtNameStart,
            (ExtValueToken | AfterQuoted, b'\r') => SizeLf,
            (Quoted, b'"') => AfterQuoted,
            (Quoted, b'\\') => QuotedEscape,
            (Quoted, _) if is_qdtext(b) => Quoted,
            (QuotedEscape, _) if is_quoted_pair_char(b) => Quoted,
            _ => return Err(Kind::ChunkExtension),
        };
        Ok(next)
    }
}

/// The trailer section: field lines like a head's (token name, no whitespace before the colon,
/// value of VCHAR / obs-text / SP / HTAB), each ended by CRLF, then a final CRLF.
fn trailer(state: State, b: u8) -> Result<State, Kind> {
    use State::*;
    Ok(match (state, b) {
        (TrailerStart, b'\r') => FinalLf,
        (TrailerStart, _) if is_tchar(b) => TrailerName,
        (TrailerName, _) if is_tchar(b) => TrailerName,
        (TrailerName, b':') => TrailerValue,
        (TrailerValue, b'\r') => TrailerLf,
        (TrailerValue, _) if is_field_byte(b) => TrailerValue,
        (TrailerLf, b'\n') => TrailerStart,
        (FinalLf, b'\n') => Done,
        (TrailerLf | FinalLf, _) | (_, b'\n') => return Err(Kind::TrailerLineEnding),
        _ => return Err(Kind::TrailerField),
    })
}

/// The value of a hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `qdtext` of RFC 9110 §5.6.4.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// What may follow a backslash in a quoted-string.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// A byte of a field value: VCHAR, obs-text, SP, HTAB.
fn is_field_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `input` whole; returns (consumed, done, payload).
    fn run(input: &[u8]) -> Result<(usize, bool, Vec<u8>), Kind> {
        run_with(input, ChunkedLimits::default())
    }

    fn run_with(input: &[u8], limits: ChunkedLimits) -> Result<(usize, bool, Vec<u8>), Kind> {
        let mut dec = ChunkedDecoder::new(limits);
        let mut payload = Vec::new();
        let p = dec
            .feed_with(input, |d| payload.extend_from_slice(d))
            .map_err(|e| e.kind())?;
        assert_eq!(dec.payload_len(), payload.len() as u64);
        assert_eq!(dec.is_done(), p.done);
        Ok((p.consumed, p.done, payload))
    }

    /// The rule that refused `input`; panics if it was accepted.
    fn refused(input: &[u8]) -> Kind {
        match run(input) {
            Err(kind) => kind,
            Ok(r) => panic!("accepted {r:?}: {:?}", String::from_utf8_lossy(input)),
        }
    }

    /// Whether `input` is a whole, valid body.
    fn accepted(input: &[u8]) -> bool {
        matches!(run(input), Ok((n, true, _)) if n == input.len())
    }

    const BODY: &[u8] = b"5\r\nhello\r\n1a;x=y\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\n";

    #[test]
    fn decodes_a_valid_body_and_counts_its_payload() {
        let (consumed, done, payload) = run(BODY).unwrap();
        assert_eq!((consumed, done), (BODY.len(), true));
        assert_eq!(payload, b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn stops_at_the_end_of_the_body_and_leaves_the_rest() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(run(&input).unwrap().0, BODY.len());
    }

    #[test]
    fn feeding_after_the_end_consumes_nothing() {
        let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
        assert!(dec.feed(BODY).unwrap().done);
        let p = dec.feed(b"more").unwrap();
        assert_eq!(
            p,
            ChunkProgress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn resumes_at_every_byte_boundary() {
        for split in 0..=BODY.len() {
            let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
            let mut payload = Vec::new();
            let a = dec
                .feed_with(&BODY[..split], |d| payload.extend_from_slice(d))
                .unwrap();
            assert_eq!((a.consumed, a.done), (split, split == BODY.len()));
            let b = dec
                .feed_with(&BODY[split..], |d| payload.extend_from_slice(d))
                .unwrap();
            assert_eq!(
                (a.consumed + b.consumed, b.done),
                (BODY.len(), true),
                "split {split}"
            );
            assert_eq!(payload, b"helloabcdefghijklmnopqrstuvwxyz");
        }
        let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
        let consumed: usize = BODY.iter().map(|b| dec.feed(&[*b]).unwrap().consumed).sum();
        assert_eq!(
            (consumed, dec.is_done(), dec.payload_len()),
            (BODY.len(), true, 31)
        );
    }

    #[test]
    fn empty_body_is_just_the_last_chunk() {
        assert!(accepted(b"0\r\n\r\n"));
        assert!(accepted(b"000\r\n\r\n"));
        assert_eq!(run(b"0\r\n\r\n").unwrap().2, b"");
    }

    #[test]
    fn chunk_size_accepts_upper_and_lower_hex() {
        let mut body = b"aA\r\n".to_vec();
        body.extend_from_slice(&[b'x'; 0xaa]);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        assert!(accepted(&body));
    }

    #[test]
    fn chunk_size_of_16_hex_digits_is_accepted_and_17_rejected() {
        let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
        let p = dec.feed(b"FFFFFFFFFFFFFFFF\r\nabc").unwrap();
        assert_eq!((p.consumed, p.done, dec.payload_len()), (21, false, 3));
        assert_eq!(
            refused(b"00000000000000001\r\nx\r\n0\r\n\r\n"),
            Kind::ChunkSizeTooLong
        );
        assert_eq!(refused(b"10000000000000000\r\n"), Kind::ChunkSizeTooLong);
    }

    #[test]
    fn chunk_size_that_is_not_hex_digits_is_rejected() {
        for input in [
            &b"0x5\r\n"[..],
            b"+5\r\n",
            b"-5\r\n",
            b" 5\r\n",
            b"\r\n",
            b"g\r\n",
            b";a\r\n",
        ] {
            assert_eq!(
                refused(input),
                Kind::ChunkSize,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn whitespace_after_chunk_size_without_extension_is_rejected() {
        assert_eq!(
            refused(b"5 \r\nhello\r\n0\r\n\r\n"),
            Kind::ChunkSizeTrailingSpace
        );
        assert_eq!(refused(b"5\t\r\n"), Kind::ChunkSizeTrailingSpace);
        assert_eq!(refused(b"5 5\r\n"), Kind::ChunkExtension);
    }

    #[test]
    fn valid_chunk_extensions_are_accepted() {
        for ext in [
            "5;a",
            "5 ; a",
            "5;a=b",
            "5 ;\ta = b",
            "5;a;b=c;d",
            "5;a=\"\"",
            "5;a=\"q \\\" x;=\"",
            "5;a=\"x\" ;b",
            "5;a=b ;c",
        ] {
            let body = format!("{ext}\r\nhello\r\n0;last=1\r\n\r\n");
            assert!(accepted(body.as_bytes()), "{ext:?}");
        }
    }

    #[test]
    fn invalid_chunk_extensions_are_rejected() {
        for ext in [
            "5;",
            "5;=b",
            "5;a=",
            "5;a =",
            "5;a b",
            "5;a=b c",
            "5;a=\"x\"y",
            "5;a=\"\x01\"",
            "5;a=b,c",
            "5;a@b",
            "5;a=\"x",
            "5;a=\"x\\\x01\"",
            "5;a ",
        ] {
            let body = format!("{ext}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(refused(body.as_bytes()), Kind::ChunkExtension, "{ext:?}");
        }
    }

    #[test]
    fn size_line_longer_than_max_line_bytes_is_rejected() {
        let limits = ChunkedLimits {
            max_line_bytes: 8,
            ..ChunkedLimits::default()
        };
        assert!(run_with(b"5;abc\r\nhello\r\n0\r\n\r\n", limits).is_ok());
        assert!(run_with(b"5;abcd\r\nhello\r\n0\r\n\r\n", limits).is_ok());
        assert_eq!(
            run_with(b"5;abcde\r\nhello\r\n0\r\n\r\n", limits),
            Err(Kind::ChunkLineTooLong)
        );
        // The bound is per line: many short lines are fine.
        let many = "1;abc\r\nx\r\n".repeat(100) + "0\r\n\r\n";
        assert!(run_with(many.as_bytes(), limits).is_ok());
    }

    #[test]
    fn size_line_not_ended_by_crlf_is_rejected() {
        assert_eq!(refused(b"5\nhello\r\n0\r\n\r\n"), Kind::ChunkLineEnding);
        assert_eq!(refused(b"5\r\rhello\r\n"), Kind::ChunkLineEnding);
        assert_eq!(refused(b"5;a\nhello\r\n"), Kind::ChunkLineEnding);
        assert_eq!(refused(b"5;a=b\nhello\r\n"), Kind::ChunkLineEnding);
        assert_eq!(refused(b"0\n\r\n"), Kind::ChunkLineEnding);
    }

    #[test]
    fn chunk_data_not_followed_by_crlf_is_rejected() {
        assert_eq!(refused(b"5\r\nhelloX\r\n0\r\n\r\n"), Kind::ChunkDataEnding);
        assert_eq!(refused(b"5\r\nhello\n0\r\n\r\n"), Kind::ChunkDataEnding);
        assert_eq!(refused(b"5\r\nhello\r\r\n"), Kind::ChunkDataEnding);
        assert_eq!(refused(b"5\r\nhello0\r\n\r\n"), Kind::ChunkDataEnding);
    }

    #[test]
    fn valid_trailer_fields_are_accepted() {
        assert!(accepted(b"0\r\nX-Sum: abc\r\nEmpty:\r\nT:\tv w \r\n\r\n"));
        assert!(accepted(b"0\r\nX: \xff\xfe\r\n\r\n"));
    }

    #[test]
    fn kept_trailers_are_listed_as_fields() {
        let mut d = ChunkedDecoder::keeping_trailers(ChunkedLimits::default());
        let input = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok then\r\n\r\n";
        // Fed a byte at a time: the section is kept across calls.
        for b in input.iter() {
            d.feed(std::slice::from_ref(b)).expect("valid");
        }
        assert!(d.is_done());
        let fields: Vec<(&[u8], &[u8])> = d.trailer_fields().collect();
        assert_eq!(
            fields,
            vec![
                (&b"grpc-status"[..], &b"0"[..]),
                (&b"grpc-message"[..], &b"ok then"[..])
            ]
        );
        let mut plain = ChunkedDecoder::new(ChunkedLimits::default());
        plain.feed(input).expect("valid");
        assert_eq!(plain.trailer_fields().count(), 0);
    }

    #[test]
    fn invalid_trailer_fields_are_rejected() {
        for (input, kind) in [
            (&b"0\r\n X: y\r\n\r\n"[..], Kind::TrailerField),
            (b"0\r\nX : y\r\n\r\n", Kind::TrailerField),
            (b"0\r\n: y\r\n\r\n", Kind::TrailerField),
            (b"0\r\nX\r\n\r\n", Kind::TrailerField),
            (b"0\r\nX: a\x00b\r\n\r\n", Kind::TrailerField),
            (b"0\r\nX: a\x7fb\r\n\r\n", Kind::TrailerField),
            (b"0\r\nX: y\n\r\n", Kind::TrailerLineEnding),
            (b"0\r\nX: y\r\r\n", Kind::TrailerLineEnding),
            (b"0\r\n\n", Kind::TrailerLineEnding),
            (b"0\r\n\rX", Kind::TrailerLineEnding),
        ] {
            assert_eq!(refused(input), kind, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn trailer_section_larger_than_max_trailer_bytes_is_rejected() {
        let limits = ChunkedLimits {
            max_trailer_bytes: 10,
            ..ChunkedLimits::default()
        };
        // "X: 12345\r\n" + "\r\n" is 12 bytes.
        assert!(run_with(b"0\r\nX: 123\r\n\r\n", limits).is_ok());
        assert_eq!(
            run_with(b"0\r\nX: 12345\r\n\r\n", limits),
            Err(Kind::TrailerTooLarge)
        );
    }

    #[test]
    fn an_error_is_sticky() {
        let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
        let e = dec.feed(b"5\nhello").unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        assert_eq!(dec.feed(b"0\r\n\r\n"), Err(e));
        assert!(!dec.is_done());
    }

    #[test]
    fn payload_slices_point_into_the_input_and_skip_the_framing() {
        let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
        let mut pieces = Vec::new();
        dec.feed_with(b"3\r\nabc\r\n2\r\nde", |d| pieces.push(d.to_vec()))
            .unwrap();
        dec.feed_with(b"\r\n0\r\n\r\n", |d| pieces.push(d.to_vec()))
            .unwrap();
        assert_eq!(pieces, [b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(dec.payload_len(), 5);
    }
}
