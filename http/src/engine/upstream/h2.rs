//! HTTP/2 to upstreams marked `protocol = "h2"` (gRPC services): per-core multiplexed
//! connections, each carrying up to the upstream's stream cap, and the exchange of one request
//! over a stream of one of them.
//!
//! The pipeline has already planned the request and made its upstream head as an HTTP/2
//! request from the typed head (header hygiene, identity and forwarding fields applied:
//! `crate::h2head`); that head becomes the stream's HEADERS. The body is streamed from the client as DATA frames, under the upstream's flow
//! control. The response goes back to the client as an HTTP/1.1 response with chunked framing,
//! its trailers (gRPC's `grpc-status`) as the chunked trailer section, which an HTTP/2 client
//! receives again as trailers. A `grpc-timeout` from the client bounds the whole call.
//!
//! Connections (`h2pool.rs`, opened by `h2connect.rs`) are opened on demand, driven by one task
//! each, and dropped from the pool when their driver ends (GOAWAY, error) or when they had no
//! stream for the pool's idle timeout.

use crate::codec::{BodyKind, ChunkedDecoder, ChunkedLimits};
use crate::engine::h2::stream::{
    allowed_trailers, connection_specific, send_within_window, trailer_map,
};
use crate::engine::io::body_deadline::BodyClock;
use crate::engine::io::stream::ByteStream;
use crate::engine::request::state::{Conn, Outcome, Plan};
use crate::engine::upstream::attempt::count;
use crate::engine::upstream::fail::fail_before_response;
use crate::engine::upstream::h2connect::acquire;
use crate::engine::upstream::request_body::read_client_more;
use crate::engine::upstream::response::fill_response_extra;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::hygiene::push_header;
use bytes::{Bytes, BytesMut};
use std::io;
use std::time::{Duration, Instant};

/// Runs the planned request over HTTP/2 to the upstream.
pub(crate) async fn exchange<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    max_streams: u32,
) -> Outcome {
    let io_t = w.settings.body_io_timeout;
    let mut deadline = Instant::now()
        + p.route
            .response_timeout
            .unwrap_or(w.settings.response_timeout);
    if let Some(total) = p.route.total_timeout {
        deadline = deadline.min(p.start + total);
    }
    if let Some(g) = p.grpc_timeout {
        deadline = deadline.min(p.start + g);
    }
    // Made from the typed head by the prepare phase.
    let req = match c.h2_head.take() {
        Some(r) => r,
        None => {
            let e = ProxyError::UpstreamIo(io::Error::other("upstream request"));
            return fail_before_response(c, w, p, &e, None).await;
        }
    };
    // The client's bytes after the head are the body (and pipelined requests).
    c.cbuf.drain(..p.head_len.min(c.cbuf.len()));
    let t0 = Instant::now();
    c.tally.upstream = Some(p.endpoint);
    c.tally.upstream_start = Some(t0);
    let connect_t = p
        .route
        .connect_timeout
        .unwrap_or(w.settings.connect_timeout);
    let (lease, reused) = match acquire(w, p.upstream, p.endpoint, max_streams, connect_t).await {
        Ok(l) => l,
        Err(e) => {
            crate::engine::upstream::attempt::connect_failed(&mut c.tally, w, p, &e);
            c.tally.upstream_ok = Some(false);
            return fail_before_response(c, w, p, &ProxyError::Connect(e), None).await;
        }
    };
    count(w, p, |u| {
        if reused {
            u.reused += 1
        } else {
            u.connects += 1
        }
    });
    let ready = monoio::time::timeout(connect_t, lease.send.clone().ready()).await;
    let mut send = match ready {
        Ok(Ok(s)) => s,
        _ => {
            c.tally.upstream_ok = Some(false);
            let e = ProxyError::UpstreamIo(io::Error::other("h2 connection not ready"));
            return fail_before_response(c, w, p, &e, None).await;
        }
    };
    let no_body = matches!(p.body, BodyKind::Empty);
    let (resp, mut body_tx) = match send.send_request(req, no_body) {
        Ok(x) => x,
        Err(e) => {
            c.tally.upstream_ok = Some(false);
            let e = ProxyError::UpstreamIo(io::Error::other(e));
            return fail_before_response(c, w, p, &e, None).await;
        }
    };
    // An HTTP/2 client's body goes as frames, at the same time as the response comes back
    // (bidirectional streaming); an HTTP/1.1 client's is sent whole first.
    let frames = if no_body {
        None
    } else {
        c.stream.take_h2_body()
    };
    if let Some(mut recv) = frames {
        let outcome = {
            let pump = std::pin::pin!(pump_frames(&mut recv, &mut body_tx, io_t));
            let mut answer = std::pin::pin!(answer(c, w, p, resp, deadline));
            monoio::select! {
                // The response is complete: what is left of the client's stream is not needed.
                o = &mut answer => o,
                // The client's stream ended (or broke): the response goes on alone.
                _ = pump => answer.await,
            }
        };
        drop(lease);
        return outcome;
    }
    if !no_body {
        let limits = w.settings.body.with_route(p.route);
        let mut clock = BodyClock::new(p.start, limits, c.cbuf.len() as u64);
        if let Err(e) = send_body(c, p, &mut body_tx, &mut clock, io_t).await {
            body_tx.send_reset(h2::Reason::CANCEL);
            c.tally.upstream_ok = Some(false);
            return fail_before_response(c, w, p, &e, None).await;
        }
    }
    let outcome = answer(c, w, p, resp, deadline).await;
    drop(lease);
    outcome
}

/// Waits for the response head (by `deadline`) and relays the response.
async fn answer<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    resp: h2::client::ResponseFuture,
    deadline: Instant,
) -> Outcome {
    let left = deadline.saturating_duration_since(Instant::now());
    let resp = match monoio::time::timeout(left, resp).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            c.tally.upstream_ok = Some(false);
            let e = ProxyError::UpstreamIo(io::Error::other(e));
            return fail_before_response(c, w, p, &e, None).await;
        }
        Err(_) => {
            c.tally.upstream_ok = Some(false);
            return fail_before_response(c, w, p, &ProxyError::UpstreamTimeout, None).await;
        }
    };
    c.tally.upstream_ok = Some(resp.status().as_u16() < 500);
    let outcome = relay(c, w, p, resp, deadline).await;
    if let Some(t) = c.tally.upstream_start {
        let d = t.elapsed();
        c.tally.upstream_us = Some(d.as_micros() as u64);
        // The same histogram as HTTP/1.1 upstreams: request sent to the end of the response.
        count(w, p, |u| u.duration.record(d));
    }
    outcome
}

/// Relays an HTTP/2 client's body frames (and trailers) to the upstream stream as they come.
async fn pump_frames(
    recv: &mut h2::RecvStream,
    tx: &mut h2::SendStream<Bytes>,
    t: Duration,
) -> io::Result<()> {
    loop {
        // No deadline of its own: the call's deadline ends the exchange (and drops this).
        match std::future::poll_fn(|cx| recv.poll_data(cx)).await {
            Some(Ok(data)) => {
                let n = data.len();
                send_within_window(tx, data, false, t).await?;
                let _ = recv.flow_control().release_capacity(n);
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => break,
        }
    }
    match std::future::poll_fn(|cx| recv.poll_trailers(cx)).await {
        Ok(Some(map)) => tx
            .send_trailers(allowed_trailers(map))
            .map_err(io::Error::other),
        Ok(None) => tx.send_data(Bytes::new(), true).map_err(io::Error::other),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Streams the request body from the client to the upstream stream.
async fn send_body(
    c: &mut Conn,
    p: &Plan<'_>,
    tx: &mut h2::SendStream<Bytes>,
    clock: &mut BodyClock,
    t: Duration,
) -> Result<(), ProxyError> {
    // A chunked body's trailer fields go on as the stream's HTTP/2 trailers.
    let mut decoder = match p.body {
        BodyKind::Chunked => Some(ChunkedDecoder::keeping_trailers(ChunkedLimits::default())),
        _ => None,
    };
    let mut left = match p.body {
        BodyKind::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        // Take what the buffer holds of the body.
        let (data, consumed, done) = match decoder.as_mut() {
            Some(d) => {
                let mut out = BytesMut::new();
                let prog = d.feed_with(&c.cbuf, |x| out.extend_from_slice(x))?;
                (out.freeze(), prog.consumed, prog.done)
            }
            None => {
                let n = (c.cbuf.len() as u64).min(left) as usize;
                left -= n as u64;
                (Bytes::copy_from_slice(&c.cbuf[..n]), n, left == 0)
            }
        };
        c.cbuf.drain(..consumed);
        c.tally.bytes_in += consumed as u64;
        let trailers = match decoder.as_ref() {
            Some(d) if done => Some(trailer_map(d)).filter(|m| !m.is_empty()),
            _ => None,
        };
        send_within_window(tx, data, done && trailers.is_none(), t)
            .await
            .map_err(ProxyError::UpstreamIo)?;
        if let Some(map) = trailers {
            tx.send_trailers(map)
                .map_err(|e| ProxyError::UpstreamIo(io::Error::other(e)))?;
        }
        if done {
            return Ok(());
        }
        read_client_more(c, clock, t).await?;
    }
}

/// Writes `c.wbuf` to the client and counts it; false when the client is gone.
async fn write_wbuf(c: &mut Conn, t: Duration) -> bool {
    let n = c.wbuf.len();
    let (res, buf) = c
        .stream
        .write_range(std::mem::take(&mut c.wbuf), 0, n, t)
        .await;
    c.wbuf = buf;
    if res.is_ok() {
        c.tally.bytes_out += n as u64;
    }
    res.is_ok()
}

/// How an HTTP/2 upstream's response reaches an HTTP/1.1 client.
struct Framing {
    /// The body goes chunked (its trailers in the chunked trailer section).
    chunked: bool,
    /// No body goes (HEAD, 204, 304, or a trailers-only response).
    no_body: bool,
    /// The response ended with its headers (gRPC's trailers-only form).
    trailers_only: bool,
    /// The client connection closes after it.
    close: bool,
}

/// Writes the response to the client: the head, the body chunked, the trailers.
async fn relay<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    resp: http::Response<h2::RecvStream>,
    deadline: Instant,
) -> Outcome {
    let t = w.settings.body_io_timeout;
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    count(w, p, |u| u.responses[crate::metrics::class_of(status)] += 1);
    c.tally.status = status;
    fill_response_extra(&mut c.extra, &c.trace, &c.tally, w, p);
    c.extra.extend_from_slice(&c.admit.policy_headers);
    // A response that ended with its headers (gRPC's trailers-only form: the status is in
    // them) goes on as one, with no body framing to turn into DATA frames downstream.
    let trailers_only = body.is_end_stream();
    let no_body = p.is_head || status == 204 || status == 304 || trailers_only;
    let f = Framing {
        // HTTP/1.0 clients know no chunked framing: the body ends with the connection.
        chunked: !no_body && !p.http10,
        no_body,
        trailers_only,
        close: !p.keep_alive || p.http10 || w.shutdown.is_stopping(),
    };
    write_head(c, &parts, p.is_head, &f);
    if !write_wbuf(c, t).await {
        return Outcome::Close;
    }
    if f.no_body {
        return if f.close {
            Outcome::Close
        } else {
            Outcome::KeepAlive
        };
    }
    if relay_data(c, &mut body, f.chunked, deadline, t)
        .await
        .is_err()
    {
        return Outcome::Close;
    }
    let trailers = std::future::poll_fn(|cx| body.poll_trailers(cx));
    let trailers = match monoio::time::timeout(t, trailers).await {
        Ok(Ok(tr)) => tr,
        _ => {
            c.stream.reset_on_close();
            return Outcome::Close;
        }
    };
    if f.chunked {
        c.wbuf.clear();
        c.wbuf.extend_from_slice(b"0\r\n");
        if let Some(map) = trailers.map(allowed_trailers) {
            for (k, v) in &map {
                push_header(&mut c.wbuf, k.as_str().as_bytes(), v.as_bytes());
            }
        }
        c.wbuf.extend_from_slice(b"\r\n");
        if !write_wbuf(c, t).await {
            return Outcome::Close;
        }
    }
    if f.close || !f.chunked {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

/// Writes the client's HTTP/1.1 response head into `c.wbuf`.
fn write_head(c: &mut Conn, parts: &http::response::Parts, is_head: bool, f: &Framing) {
    c.wbuf.clear();
    c.wbuf.extend_from_slice(b"HTTP/1.1 ");
    crate::respond::push_u64(&mut c.wbuf, u64::from(parts.status.as_u16()));
    c.wbuf.push(b' ');
    c.wbuf
        .extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    c.wbuf.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        if connection_specific(k.as_str()) || k == http::header::CONTENT_LENGTH {
            continue;
        }
        push_header(&mut c.wbuf, k.as_str().as_bytes(), v.as_bytes());
    }
    if f.chunked {
        c.wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if f.trailers_only && !is_head {
        c.wbuf.extend_from_slice(b"content-length: 0\r\n");
    } else if f.no_body {
        if let Some(v) = parts.headers.get(http::header::CONTENT_LENGTH) {
            push_header(&mut c.wbuf, b"content-length", v.as_bytes());
        }
    }
    c.wbuf.extend_from_slice(&c.extra);
    if f.close {
        c.wbuf.extend_from_slice(b"connection: close\r\n");
    }
    c.wbuf.extend_from_slice(b"\r\n");
}

/// Relays the response's DATA frames to the client as they come (chunked when `chunked`), each
/// within the body I/O time and the call's `deadline`. `Err`: the relay broke (the connection
/// then closes, with a reset when the upstream failed or stalled).
async fn relay_data(
    c: &mut Conn,
    body: &mut h2::RecvStream,
    chunked: bool,
    deadline: Instant,
    t: Duration,
) -> Result<(), ()> {
    loop {
        let left = deadline
            .max(Instant::now() + t)
            .saturating_duration_since(Instant::now());
        let next = std::future::poll_fn(|cx| body.poll_data(cx));
        let got = match monoio::time::timeout(left.min(t), next).await {
            Ok(g) => g,
            Err(_) => {
                c.stream.reset_on_close();
                return Err(());
            }
        };
        match got {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                if data.is_empty() {
                    continue;
                }
                c.wbuf.clear();
                if chunked {
                    use std::io::Write as _;
                    let _ = write!(c.wbuf, "{:x}\r\n", data.len());
                }
                c.wbuf.extend_from_slice(&data);
                if chunked {
                    c.wbuf.extend_from_slice(b"\r\n");
                }
                if !write_wbuf(c, t).await {
                    return Err(());
                }
            }
            Some(Err(_)) => {
                c.tally.upstream_ok = Some(false);
                c.stream.reset_on_close();
                return Err(());
            }
            None => return Ok(()),
        }
    }
}
