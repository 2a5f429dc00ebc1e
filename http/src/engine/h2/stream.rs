//! One HTTP/2 stream seen by the HTTP/1.1 request loop as if it were a client connection.
//!
//! The stream's request head goes to the pipeline as its typed head (`head.rs`), and its body is
//! given as HTTP/1.1 body bytes (framed by its `content-length` or else chunked, trailers as a
//! chunked trailer section), so the connection loop every HTTP/1.1 request runs through applies
//! routing, authentication, rate limits, retries, breakers, metrics and the access log unchanged.
//! What the loop writes back (an HTTP/1.1 response) is parsed into the stream's response head and
//! DATA frames, sent as the client's flow-control window allows, so a large body never piles up
//! in memory. (That response detour is what is left of the text rendering perf-reports/0006
//! measured.)

use super::head::H2Head;
use crate::codec::{prohibited_in_trailers, ChunkedDecoder, ChunkedLimits};
use crate::engine::io::ops::ReadFail;
use crate::tls::CertIdentity;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// Largest response head accepted from the loop (it wrote it, so this only bounds a bug).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Where the response is.
enum Out {
    /// Collecting the head.
    Head,
    /// Body of this many more bytes.
    Length(u64),
    /// Chunked body being decoded.
    Chunked(Box<ChunkedDecoder>),
    /// Body until the loop closes.
    UntilClose,
    /// A WebSocket over an extended CONNECT (RFC 8441), switched: raw bytes both ways.
    Tunnel,
    /// Sent completely.
    Done,
}

/// The stream as a client connection.
pub(crate) struct H2Stream {
    /// The request body (taken by an exchange that streams it itself: HTTP/2 upstreams).
    recv: Option<RecvStream>,
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    /// The request's head, lent to the pipeline as its typed head.
    head: H2Head,
    /// The body is rendered chunked.
    chunked: bool,
    /// Request data received and not yet given.
    pending: Bytes,
    /// The client ended its body (and, when chunked, the last chunk was given).
    body_given: bool,
    out: Out,
    resp_head: Vec<u8>,
    is_head: bool,
    /// The loop cut the response (it would have reset a TCP connection).
    aborted: bool,
    /// An extended CONNECT for a WebSocket (RFC 8441), rendered as an HTTP/1.1 upgrade.
    websocket: bool,
    /// The `Sec-WebSocket-Accept` the upstream must answer the generated key with (RFC 6455
    /// §4.1: the gateway is the HTTP/1.1 client here, so it checks the handshake).
    ws_accept: String,
    proto: &'static str,
    identity: Option<Rc<CertIdentity>>,
}

impl H2Stream {
    /// Takes a request the connection accepted. `Err`: it cannot be rendered; the caller
    /// answers with the status and error code given.
    pub(crate) fn new(
        req: Request<RecvStream>,
        respond: SendResponse<Bytes>,
        proto: &'static str,
        identity: Option<Rc<CertIdentity>>,
    ) -> Result<Self, (SendResponse<Bytes>, u16, &'static str)> {
        let (parts, recv) = req.into_parts();
        let method = parts.method.as_str();
        // RFC 8441: a WebSocket opened with an extended CONNECT goes upstream as the HTTP/1.1
        // upgrade the upstream knows; any other CONNECT is not served.
        let websocket = method == "CONNECT"
            && parts
                .extensions
                .get::<h2::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if method == "CONNECT" && !websocket {
            return Err((respond, 501, "connect_not_supported"));
        }
        // Defence in depth: the target and authority become a request target and a Host field
        // upstream, so no space or control byte may pass (the http crate rejects them too).
        let clean = |b: &[u8]| b.iter().all(|&c| c > b' ' && c != 0x7f);
        let target_ok = parts
            .uri
            .path_and_query()
            .is_none_or(|p| clean(p.as_str().as_bytes()));
        let authority_ok = parts
            .uri
            .authority()
            .is_none_or(|a| clean(a.as_str().as_bytes()));
        if !target_ok || !authority_ok {
            return Err((respond, 400, "bad_request"));
        }
        let is_head = method == "HEAD";
        // The HTTP/1.1 handshake needs a key; the upstream's accept value is for the gateway
        // alone (an HTTP/2 client gets a 200).
        let (ws_key, ws_accept) = if websocket {
            let Some(key) = websocket_key() else {
                return Err((respond, 500, "no_random_source"));
            };
            let accept = websocket_accept(&key);
            (key, accept)
        } else {
            (String::new(), String::new())
        };
        // A WebSocket's request has no body; its stream carries the tunnel once switched.
        let ended = websocket || recv.is_end_stream();
        let head = H2Head::new(parts, websocket, ws_key, ended);
        Ok(H2Stream {
            recv: Some(recv),
            respond: Some(respond),
            send: None,
            chunked: head.chunked(),
            head,
            pending: Bytes::new(),
            body_given: ended,
            out: Out::Head,
            resp_head: Vec::new(),
            is_head,
            aborted: false,
            websocket,
            ws_accept,
            proto,
            identity,
        })
    }

    /// The request's typed head.
    pub(crate) fn head(&self) -> &H2Head {
        &self.head
    }

    /// The head is still to be served.
    pub(crate) fn head_pending(&self) -> bool {
        self.head.pending()
    }

    /// The stream's request ended.
    pub(crate) fn head_done(&mut self) {
        self.head.done();
    }

    /// Takes the request body as HTTP/2 frames, for an exchange that relays it itself (an
    /// HTTP/2 upstream, concurrently with the response: bidirectional streaming). `None` once
    /// part of the body was given as HTTP/1.1 bytes, or when there is none.
    pub(crate) fn take_body(&mut self) -> Option<RecvStream> {
        if self.body_given || !self.pending.is_empty() {
            return None;
        }
        self.body_given = true;
        self.recv.take()
    }

    /// For a switched WebSocket: the stream's two directions, for the tunnel (`None` unless
    /// the upstream switched).
    pub(crate) fn into_tunnel(mut self) -> Option<(RecvStream, SendStream<Bytes>)> {
        if !matches!(self.out, Out::Tunnel) {
            return None;
        }
        Some((self.recv.take()?, self.send.take()?))
    }

    /// `https` or `http`, as the connection.
    pub(crate) fn proto(&self) -> &'static str {
        self.proto
    }

    /// The connection's client certificate identity.
    pub(crate) fn identity(&self) -> Option<&CertIdentity> {
        self.identity.as_deref()
    }

    /// Gives the loop the next request bytes: the body as rendered (the head goes to the
    /// pipeline typed: [`H2Stream::head`]); then EOF.
    pub(crate) async fn read_append(
        &mut self,
        mut buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        let start = buf.len();
        loop {
            if !self.pending.is_empty() {
                self.give_pending(&mut buf);
                return (Ok(buf.len() - start), buf);
            }
            if self.body_given {
                return (Err(ReadFail::Eof), buf);
            }
            let Some(recv) = self.recv.as_mut() else {
                return (Err(ReadFail::Eof), buf);
            };
            let next = std::future::poll_fn(|cx| recv.poll_data(cx));
            let got = match timeout {
                Some(t) => match monoio::time::timeout(t, next).await {
                    Ok(r) => r,
                    Err(_) => return (Err(ReadFail::Timeout), buf),
                },
                None => next.await,
            };
            match got {
                Some(Ok(data)) => {
                    // The window opens again as the loop takes the data: what the client may
                    // send unread stays bounded by the stream window.
                    let _ = recv.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    self.pending = if self.chunked {
                        Self::frame_chunk(&data)
                    } else {
                        data
                    };
                }
                Some(Err(e)) => return (Err(ReadFail::Io(io::Error::other(e))), buf),
                None => {
                    self.body_given = true;
                    if self.chunked {
                        let trailers = std::future::poll_fn(|cx| recv.poll_trailers(cx));
                        let trailers = match timeout {
                            Some(t) => monoio::time::timeout(t, trailers).await.ok(),
                            None => Some(trailers.await),
                        };
                        let mut last = b"0\r\n".to_vec();
                        if let Some(Ok(Some(map))) = trailers {
                            for (k, v) in &allowed_trailers(map) {
                                last.extend_from_slice(k.as_str().as_bytes());
                                last.extend_from_slice(b": ");
                                last.extend_from_slice(v.as_bytes());
                                last.extend_from_slice(b"\r\n");
                            }
                        }
                        last.extend_from_slice(b"\r\n");
                        self.pending = Bytes::from(last);
                        continue;
                    }
                    return (Err(ReadFail::Eof), buf);
                }
            }
        }
    }

    /// Copies pending request data into `buf`. A chunked body's data is framed as one chunk
    /// per DATA frame first (into `pending`), so any spare room, however small, takes bytes.
    fn give_pending(&mut self, buf: &mut Vec<u8>) {
        let n = (buf.capacity() - buf.len()).min(self.pending.len());
        buf.extend_from_slice(&self.pending.split_to(n));
    }

    /// Frames `data` as one chunk (`{size:x}\r\n data \r\n`).
    fn frame_chunk(data: &[u8]) -> Bytes {
        let mut framed = Vec::with_capacity(data.len() + 20);
        framed.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        Bytes::from(framed)
    }

    /// Takes response bytes from the loop: the head, then the body by its framing.
    pub(crate) async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        let res = self.take(&buf[start..end], timeout).await;
        (res, buf)
    }

    async fn take(&mut self, mut data: &[u8], t: Duration) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.out {
                Out::Head => {
                    self.resp_head.extend_from_slice(data);
                    data = &[];
                    if self.resp_head.len() > MAX_RESPONSE_HEAD {
                        return Err(io::Error::other("response head too large"));
                    }
                    let Some(rest) = self.start_response()? else {
                        return Ok(());
                    };
                    if !rest.is_empty() {
                        // Body bytes that came with the head.
                        Box::pin(self.take(&rest, t)).await?;
                    }
                }
                Out::Length(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    let last = *left == 0;
                    if last {
                        self.out = Out::Done;
                    }
                    self.send(Bytes::copy_from_slice(&data[..n]), last, t)
                        .await?;
                    data = &data[n..];
                    if last {
                        // Anything past the length is not this response's.
                        data = &[];
                    }
                }
                Out::Chunked(dec) => {
                    let mut body = BytesMut::new();
                    let prog = dec
                        .feed_with(data, |d| body.extend_from_slice(d))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    data = &data[prog.consumed..];
                    let trailers = if prog.done {
                        trailer_map(dec)
                    } else {
                        HeaderMap::new()
                    };
                    if prog.done {
                        self.out = Out::Done;
                    }
                    let end = prog.done && trailers.is_empty();
                    if !body.is_empty() || end {
                        self.send(body.freeze(), end, t).await?;
                    }
                    if prog.done && !trailers.is_empty() {
                        // Trailer fields (gRPC's status) end the stream as HTTP/2 trailers.
                        self.send
                            .as_mut()
                            .ok_or_else(|| io::Error::other("no response stream"))?
                            .send_trailers(trailers)
                            .map_err(io::Error::other)?;
                    }
                    if prog.done {
                        data = &[];
                    }
                }
                Out::UntilClose | Out::Tunnel => {
                    self.send(Bytes::copy_from_slice(data), false, t).await?;
                    data = &[];
                }
                Out::Done => data = &[],
            }
        }
        Ok(())
    }

    /// Parses the collected head; when complete, sends it and returns the bytes after it.
    fn start_response(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut hs = [httparse::EMPTY_HEADER; crate::codec::MAX_HEADERS];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(&self.resp_head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let code = r.code.unwrap_or(502);
        if code == 101 && self.websocket {
            let accepted = r.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("sec-websocket-accept")
                    && h.value.trim_ascii() == self.ws_accept.as_bytes()
            });
            if !accepted {
                // Not a WebSocket server's answer to our key: the client gets a 502 and the
                // loop's write fails, so the upstream connection is dropped, not tunnelled.
                if let Some(mut respond) = self.respond.take() {
                    refuse(&mut respond, 502, "bad_websocket_handshake");
                }
                self.out = Out::Done;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "upstream's Sec-WebSocket-Accept does not match the key",
                ));
            }
            // The upstream switched: the client's CONNECT succeeds (RFC 8441 §5).
            let respond = self
                .respond
                .as_mut()
                .ok_or_else(|| io::Error::other("response already started"))?;
            let send = respond
                .send_response(Response::new(()), false)
                .map_err(io::Error::other)?;
            self.respond = None;
            self.send = Some(send);
            self.out = Out::Tunnel;
            let rest = self.resp_head.split_off(n);
            self.resp_head = Vec::new();
            return Ok(Some(rest));
        }
        if code < 200 {
            // An interim response (never 101 here: no upgrade over HTTP/2): not relayed.
            let rest = self.resp_head.split_off(n);
            self.resp_head = rest;
            return self.start_response();
        }
        let mut map = HeaderMap::with_capacity(r.headers.len());
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for h in r.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            match name.as_str() {
                "connection" | "keep-alive" | "proxy-connection" | "upgrade" => continue,
                "transfer-encoding" => {
                    chunked = true;
                    continue;
                }
                "content-length" => {
                    length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                }
                _ => {}
            }
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                continue;
            };
            map.append(k, v);
        }
        let status = StatusCode::from_u16(code)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let no_body = self.is_head || code == 204 || code == 304;
        self.out = if no_body {
            Out::Done
        } else if chunked {
            Out::Chunked(Box::new(ChunkedDecoder::keeping_trailers(
                ChunkedLimits::default(),
            )))
        } else {
            match length {
                Some(0) => Out::Done,
                Some(n) => Out::Length(n),
                None => Out::UntilClose,
            }
        };
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = map;
        let respond = self
            .respond
            .as_mut()
            .ok_or_else(|| io::Error::other("response already started"))?;
        let end = matches!(self.out, Out::Done);
        let send = respond.send_response(resp, end).map_err(io::Error::other)?;
        self.respond = None;
        if !end {
            self.send = Some(send);
        }
        let rest = self.resp_head.split_off(n);
        self.resp_head = Vec::new();
        Ok(Some(rest))
    }

    /// Sends body bytes as the client's window allows (never buffering more than the window
    /// and the send buffer).
    async fn send(&mut self, data: Bytes, end: bool, t: Duration) -> io::Result<()> {
        let stream = self
            .send
            .as_mut()
            .ok_or_else(|| io::Error::other("no response stream"))?;
        send_within_window(stream, data, end, t).await
    }

    /// The loop cut the response: the stream will be reset, not ended.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
    }

    /// Ends the stream: cleanly when the response is complete (or ended by the loop closing),
    /// else with `RST_STREAM`.
    pub(crate) fn close(&mut self) {
        let clean = !self.aborted && matches!(self.out, Out::Done | Out::UntilClose | Out::Tunnel);
        if let Some(s) = self.send.as_mut() {
            if clean && matches!(self.out, Out::UntilClose | Out::Tunnel) {
                let _ = s.send_data(Bytes::new(), true);
            } else if !clean {
                s.send_reset(h2::Reason::INTERNAL_ERROR);
            }
        } else if let Some(r) = self.respond.as_mut() {
            r.send_reset(h2::Reason::INTERNAL_ERROR);
        }
        self.out = Out::Done;
    }
}

/// The trailer fields a chunked body ended with, as an HTTP/2 header map (names lower-cased;
/// prohibited and malformed fields left out: none of the first may be sent in a trailer section,
/// RFC 9110 §6.5.1, and they include everything HTTP/2 calls connection-specific).
pub(crate) fn trailer_map(dec: &ChunkedDecoder) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in dec.trailer_fields() {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(&k.to_ascii_lowercase()),
            HeaderValue::from_bytes(v),
        ) else {
            continue;
        };
        if prohibited_in_trailers(k.as_str().as_bytes()) {
            continue;
        }
        map.append(k, v);
    }
    map
}

/// `map` without the fields no trailer section may carry (trailers relayed between HTTP/2
/// streams, or from HTTP/2 into a chunked trailer section).
pub(crate) fn allowed_trailers(mut map: HeaderMap) -> HeaderMap {
    let drop: Vec<HeaderName> = map
        .keys()
        .filter(|k| prohibited_in_trailers(k.as_str().as_bytes()))
        .cloned()
        .collect();
    for k in drop {
        map.remove(&k);
    }
    map
}

pub(crate) use crate::h2head::connection_specific;

/// Sends `data` on an HTTP/2 stream as the peer's flow-control window allows: never more is
/// buffered than the window and the send buffer; each wait for window is bounded by `t`.
pub(crate) async fn send_within_window(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    t: Duration,
) -> io::Result<()> {
    if data.is_empty() {
        return if end {
            stream.send_data(data, true).map_err(io::Error::other)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let cap = std::future::poll_fn(|cx| stream.poll_capacity(cx));
        let cap = match monoio::time::timeout(t, cap).await {
            Ok(Some(Ok(c))) => c,
            Ok(Some(Err(e))) => return Err(io::Error::other(e)),
            Ok(None) => return Err(io::ErrorKind::BrokenPipe.into()),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        stream
            .send_data(piece, end && data.is_empty())
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from the OS's random source, in base64 (RFC 6455 §4.1
/// asks for a nonce chosen at random for each connection).
fn websocket_key() -> Option<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).ok()?;
    Some(BASE64.encode(raw))
}

/// The `Sec-WebSocket-Accept` a server answers `key` with: base64 of the SHA-1 of the key and
/// the protocol's GUID (RFC 6455 §4.2.2).
fn websocket_accept(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID.as_bytes());
    BASE64.encode(ctx.finish().as_ref())
}

/// Answers a stream the gateway refuses itself: the status and a JSON error body.
pub(crate) fn refuse(respond: &mut SendResponse<Bytes>, status: u16, code: &str) {
    let body = format!("{{\"error\":\"{code}\"}}\n");
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(mut s) = respond.send_response(resp, false) {
        let _ = s.send_data(Bytes::from(body), true);
    }
}

#[cfg(test)]
mod tests {
    use super::{websocket_accept, websocket_key};

    #[test]
    fn the_accept_value_is_the_one_rfc_6455_gives_for_its_sample_key() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_16_random_bytes_in_base64_and_differ() {
        let (a, b) = (websocket_key(), websocket_key());
        let a = a.unwrap_or_default();
        assert_eq!(a.len(), 24, "{a}");
        assert!(a.ends_with("=="), "{a}");
        assert_ne!(Some(a), b);
    }
}
