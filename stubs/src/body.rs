//! HTTP/1.1 message body framing shared by the stub upstream (request bodies) and the generator
//! (response bodies): bodies are read and thrown away, by Content-Length or by decoding chunked
//! transfer coding just far enough to find its end.
//! Sans-IO: fed byte slices, says how many it consumed and whether the body is complete.

use thiserror::Error;

/// A chunked body that does not follow RFC 9112 section 7.1.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    /// A chunk-size line with no hex digits, or one too large.
    #[error("bad chunk size line")]
    ChunkSize,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    /// A trailer section longer than the limit.
    #[error("trailer section too long")]
    Trailers,
}

const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { value: u64, digits: u8 },
    /// Skipping a chunk extension up to the end of the line.
    Extension { value: u64 },
    /// Saw CR after the size line, expecting LF.
    SizeLf { value: u64 },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Inside the trailer section: bytes on the current line, total trailer bytes.
    Trailer { line: usize, total: usize },
    /// The body is complete.
    Done,
}

/// How the rest of a request body is delimited, and how much of it is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodySkipper {
    kind: Kind,
    /// Payload bytes seen so far (chunk data only, framing excluded).
    pub payload: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(State),
}

impl BodySkipper {
    /// A body of exactly `n` bytes.
    pub fn length(n: u64) -> Self {
        Self {
            kind: Kind::Length(n),
            payload: 0,
        }
    }

    /// A chunked body.
    pub fn chunked() -> Self {
        Self {
            kind: Kind::Chunked(State::Size {
                value: 0,
                digits: 0,
            }),
            payload: 0,
        }
    }

    /// True when the whole body has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Length(0) | Kind::Chunked(State::Done))
    }

    /// Consumes body bytes from the front of `buf`; returns how many were body.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, BodyError> {
        match &mut self.kind {
            Kind::Length(left) => {
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                self.payload += take;
                Ok(take as usize)
            }
            Kind::Chunked(state) => {
                let mut i = 0;
                while i < buf.len() && *state != State::Done {
                    if let State::Data(left) = state {
                        let take = (*left).min((buf.len() - i) as u64);
                        *left -= take;
                        self.payload += take;
                        i += take as usize;
                        if *left == 0 {
                            *state = State::DataCr;
                        }
                        continue;
                    }
                    *state = step(*state, buf[i])?;
                    i += 1;
                }
                Ok(i)
            }
        }
    }
}

fn end_of_size_line(value: u64) -> State {
    if value == 0 {
        State::Trailer { line: 0, total: 0 }
    } else {
        State::Data(value)
    }
}

fn step(state: State, b: u8) -> Result<State, BodyError> {
    Ok(match state {
        State::Size { value, digits } => match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if digits >= 15 {
                    return Err(BodyError::ChunkSize);
                }
                let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                State::Size {
                    value: value * 16 + d,
                    digits: digits + 1,
                }
            }
            _ if digits == 0 => return Err(BodyError::ChunkSize),
            b';' | b' ' | b'\t' => State::Extension { value },
            b'\r' => State::SizeLf { value },
            b'\n' => end_of_size_line(value),
            _ => return Err(BodyError::ChunkSize),
        },
        State::Extension { value } => match b {
            b'\r' => State::SizeLf { value },
            b'\n' => end_of_size_line(value),
            _ => State::Extension { value },
        },
        State::SizeLf { value } => match b {
            b'\n' => end_of_size_line(value),
            _ => return Err(BodyError::ChunkSize),
        },
        State::DataCr => match b {
            b'\r' => State::DataLf,
            b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            _ => return Err(BodyError::ChunkEnd),
        },
        State::DataLf => match b {
            b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            _ => return Err(BodyError::ChunkEnd),
        },
        State::Trailer { line, total } => {
            if total > MAX_TRAILER_BYTES {
                return Err(BodyError::Trailers);
            }
            match b {
                b'\r' => State::Trailer {
                    line,
                    total: total + 1,
                },
                b'\n' if line == 0 => State::Done,
                b'\n' => State::Trailer {
                    line: 0,
                    total: total + 1,
                },
                _ => State::Trailer {
                    line: line + 1,
                    total: total + 1,
                },
            }
        }
        State::Data(_) | State::Done => state,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn feed_all(s: &mut BodySkipper, data: &[u8], step: usize) -> Result<usize, BodyError> {
        let mut used = 0;
        for piece in data.chunks(step) {
            let n = s.feed(piece)?;
            used += n;
            if s.is_done() {
                return Ok(used);
            }
            assert_eq!(n, piece.len());
        }
        Ok(used)
    }

    #[test]
    fn content_length_stops_at_its_end() {
        let mut s = BodySkipper::length(5);
        assert_eq!(s.feed(b"abc").unwrap(), 3);
        assert_eq!(s.feed(b"deGET /").unwrap(), 2);
        assert!(s.is_done());
        assert_eq!(s.payload, 5);
    }

    #[test]
    fn chunked_body_ends_after_trailers_whatever_the_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let mut s = BodySkipper::chunked();
            let used = feed_all(&mut s, body, step).unwrap();
            assert!(s.is_done(), "step {step}");
            assert_eq!(used, body.len() - 4, "step {step}");
            assert_eq!(s.payload, 15);
        }
    }

    #[test]
    fn chunked_without_trailers_and_bare_lf_is_accepted() {
        let mut s = BodySkipper::chunked();
        assert_eq!(s.feed(b"3\nabc\n0\n\n").unwrap(), 9);
        assert!(s.is_done());
    }

    #[test]
    fn malformed_chunks_are_rejected() {
        assert_eq!(
            BodySkipper::chunked().feed(b"zz\r\n"),
            Err(BodyError::ChunkSize)
        );
        assert_eq!(
            BodySkipper::chunked().feed(b"3\r\nabcX"),
            Err(BodyError::ChunkEnd)
        );
        assert_eq!(
            BodySkipper::chunked().feed(b"ffffffffffffffff\r\n"),
            Err(BodyError::ChunkSize)
        );
    }
}
