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
    /// How many bytes from the start of the input belong to the body.
    pub consumed: usize,
    /// Whether the body ended within them; the rest of the input is not the body's.
    pub done: bool,
    /// How many bytes from the start of the input to forward as they are: `consumed`, except
    /// for a decoder [dropping prohibited trailer fields](ChunkedDecoder::dropping_prohibited_trailers),
    /// which holds the trailer section back and, once done, hands out what is left of it
    /// ([`ChunkedDecoder::settle`] does both for a caller's buffer).
    pub forward: usize,
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
    /// Hold the trailer section back and forward it without prohibited fields.
    filter: bool,
    /// Trailer bytes held back by earlier calls (filtering).
    held_before: usize,
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
            filter: false,
            held_before: 0,
        }
    }

    /// A pass-through decoder that drops the trailer fields no trailer section may carry
    /// (framing, routing, authentication, controls: [`super::trailers::prohibited_in_trailers`]).
    /// The trailer section is held back until the body ends; see [`ChunkProgress::forward`].
    pub fn dropping_prohibited_trailers(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            trailers: Some(Vec::new()),
            filter: true,
            ..Self::new(limits)
        }
    }

    /// The trailer section as it is to be forwarded: the kept field lines as received, then the
    /// final CRLF (with [`dropping_prohibited_trailers`](Self::dropping_prohibited_trailers)).
    pub fn kept_trailer_section(&self) -> Vec<u8> {
        super::trailers::kept_section(self.trailers.as_deref().unwrap_or_default())
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
        // Where in this input the held-back trailer section starts, when filtering.
        let mut held_from = (self.filter && in_trailer(self.state)).then_some(0);
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
            let before = self.state;
            if let Err(kind) = self.step(input[pos]) {
                let e = CodecError::from(kind);
                self.failed = Some(e);
                return Err(e);
            }
            pos += 1;
            if self.filter && !in_trailer(before) && in_trailer(self.state) {
                held_from = Some(pos);
            }
        }
        let done = self.state == State::Done;
        Ok(ChunkProgress {
            consumed: pos,
            done,
            forward: self.forward_len(held_from, pos, done),
        })
    }

    /// What of this call's `consumed` bytes goes on as it is (filtering): everything before the
    /// held trailer section, or all of it when the whole section came in this call and drops
    /// nothing.
    fn forward_len(&mut self, held_from: Option<usize>, consumed: usize, done: bool) -> usize {
        let Some(from) = held_from else {
            return consumed;
        };
        if !done {
            self.held_before += consumed - from;
            return from;
        }
        let section = self.trailers.as_deref().unwrap_or_default();
        if self.held_before == 0 && !super::trailers::any_prohibited(section) {
            consumed
        } else {
            from
        }
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

/// In the trailer section (or its final CRLF).
fn in_trailer(s: State) -> bool {
    use State::*;
    matches!(
        s,
        TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
    )
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
#[path = "chunked_tests.rs"]
mod tests;
