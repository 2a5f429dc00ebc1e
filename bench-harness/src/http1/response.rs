//! The generator's response reader: fed the bytes read from a connection, it finds where each
//! response ends (Content-Length, chunked, or end of connection) and reports the status and
//! whether the server will close. Bodies are skipped, never stored. Interim 1xx responses are
//! passed over.

use thiserror::Error;

use super::body::{BodyError, BodySkipper};

/// Most response headers accepted.
const MAX_HEADERS: usize = 64;

/// A response that cannot be framed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    /// httparse rejected the head.
    #[error("malformed response head: {0}")]
    Head(String),
    /// A Content-Length that is not a number, or two that differ.
    #[error("bad content-length")]
    ContentLength,
    /// Broken chunked coding.
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// One complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Complete {
    /// Status code.
    pub status: u16,
    /// The server will close the connection after it (or already did).
    pub close: bool,
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        skipper: BodySkipper,
        done: Complete,
    },
    UntilEof {
        status: u16,
    },
}

/// Frames consecutive responses on one connection.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self { state: State::Head }
    }
}

struct HeadInfo {
    len: usize,
    status: u16,
    close: bool,
    length: Option<u64>,
    chunked: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<HeadInfo>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Head(e.to_string())),
    };
    let mut info = HeadInfo {
        len,
        status: resp.code.unwrap_or(0),
        close: resp.version == Some(0),
        length: None,
        chunked: false,
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(ResponseError::ContentLength)?;
            if info.length.is_some_and(|l| l != n) {
                return Err(ResponseError::ContentLength);
            }
            info.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            info.chunked = h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    info.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    info.close = false;
                }
            }
        }
    }
    Ok(Some(info))
}

impl ResponseReader {
    /// Consumes bytes from the front of `buf`. Returns how many were used and, when a response
    /// ended within them, its summary. Call again with the rest after a completion.
    /// `no_body`: the request was HEAD (the response has no body whatever its headers say).
    pub fn feed(
        &mut self,
        buf: &[u8],
        no_body: bool,
    ) -> Result<(usize, Option<Complete>), ResponseError> {
        let mut used = 0;
        loop {
            match &mut self.state {
                State::Head => {
                    let Some(h) = parse_head(&buf[used..])? else {
                        return Ok((used, None));
                    };
                    used += h.len;
                    if (100..200).contains(&h.status) && h.status != 101 {
                        continue;
                    }
                    let done = Complete {
                        status: h.status,
                        close: h.close,
                    };
                    let bodiless = no_body || h.status == 204 || h.status == 304;
                    if bodiless || (!h.chunked && h.length == Some(0)) {
                        return Ok((used, Some(done)));
                    }
                    self.state = if h.chunked {
                        State::Body {
                            skipper: BodySkipper::chunked(),
                            done,
                        }
                    } else if let Some(n) = h.length {
                        State::Body {
                            skipper: BodySkipper::length(n),
                            done,
                        }
                    } else {
                        State::UntilEof { status: h.status }
                    };
                }
                State::Body { skipper, done } => {
                    used += skipper.feed(&buf[used..])?;
                    if skipper.is_done() {
                        let done = *done;
                        self.state = State::Head;
                        return Ok((used, Some(done)));
                    }
                    return Ok((used, None));
                }
                State::UntilEof { .. } => return Ok((buf.len(), None)),
            }
        }
    }

    /// The connection reached end of file: a body delimited by the close ends here.
    pub fn eof(&mut self) -> Option<Complete> {
        match std::mem::replace(&mut self.state, State::Head) {
            State::UntilEof { status } => Some(Complete {
                status,
                close: true,
            }),
            _ => None,
        }
    }

    /// True between responses (nothing of the next one read yet).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_length_responses_are_framed_back_to_back() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 503 X\r\ncontent-length: 0\r\n\r\n";
        let mut r = ResponseReader::default();
        let (n, done) = r.feed(raw, false).unwrap();
        assert_eq!(
            done,
            Some(Complete {
                status: 200,
                close: false
            })
        );
        let (m, done) = r.feed(&raw[n..], false).unwrap();
        assert_eq!(
            done,
            Some(Complete {
                status: 503,
                close: false
            })
        );
        assert_eq!(n + m, raw.len());
    }

    #[test]
    fn split_chunked_response_completes_on_the_last_piece() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n";
        for split in 1..raw.len() {
            let mut r = ResponseReader::default();
            let mut buf = raw[..split].to_vec();
            let (n, done) = r.feed(&buf, false).unwrap();
            assert!(done.is_none());
            buf.drain(..n);
            buf.extend_from_slice(&raw[split..]);
            let (_, done) = r.feed(&buf, false).unwrap();
            assert_eq!(
                done,
                Some(Complete {
                    status: 200,
                    close: true
                }),
                "split {split}"
            );
        }
    }

    #[test]
    fn interim_responses_and_head_requests_are_handled() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let mut r = ResponseReader::default();
        let (n, done) = r.feed(raw, true).unwrap();
        assert_eq!(n, raw.len());
        assert_eq!(done.unwrap().status, 200);
    }

    #[test]
    fn body_until_close_ends_at_eof() {
        let mut r = ResponseReader::default();
        let (_, done) = r.feed(b"HTTP/1.0 200 OK\r\n\r\nsome body", false).unwrap();
        assert!(done.is_none());
        assert_eq!(
            r.eof(),
            Some(Complete {
                status: 200,
                close: true
            })
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let mut r = ResponseReader::default();
        assert!(r.feed(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }
}
