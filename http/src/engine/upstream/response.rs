//! The response head: read within the route's timeouts (interim 1xx skipped; a 101 only for a
//! WebSocket upgrade the gateway asked for), and the client head written from it with the
//! gateway's own fields (request id, `Server-Timing`, the policies' `RateLimit-*`). Also the
//! answer of an upstream that stopped taking the request part way.

use crate::codec::{parse_response_head, BodyKind, HopByHop, ResponseHead, MAX_HEADERS};
use crate::engine::io::ops::ReadFail;
use crate::engine::io::stream::ByteStream;
use crate::engine::request::state::{Conn, Plan};
use crate::engine::upstream::attempt::count;
use crate::engine::upstream::request_body::RequestBody;
use crate::engine::upstream::stream::UpStream;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::hygiene::{push_header, write_response_head, write_switch_head, ClientFraming};
use crate::metrics::class_of;
use std::time::Instant;

/// What the response head said.
pub(crate) struct ResponsePlan {
    pub(crate) status: u16,
    pub(crate) head_len: usize,
    pub(crate) body: BodyKind,
    pub(crate) framing: ClientFraming,
    pub(crate) upstream_keep_alive: bool,
    pub(crate) client_close: bool,
}

pub(crate) enum HeadFail {
    /// The connection died before any response byte: safe to retry when the request allows.
    BeforeFirstByte(ProxyError),
    Other(ProxyError),
}

/// The response of an upstream that stopped taking the request part way (typically an error
/// status decided from the head, then a close), if it sent one before the connection failed.
///
/// Only a connection failure is worth a look: the answer is then already in the socket's receive
/// queue (a reset still lets queued bytes be read first). A timeout means the upstream stalled,
/// and waiting again for a head would only double the client's wait. The client connection
/// closes after such a response unless its request was wholly read, and the upstream
/// connection is never reused (it did not read the whole request).
pub(crate) async fn early_response<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: &mut UpStream,
    body: &RequestBody,
    e: &ProxyError,
) -> Option<ResponsePlan> {
    if !matches!(e, ProxyError::UpstreamIo(_)) {
        return None;
    }
    let mut r = read_response_head(c, w, p, up, !body.complete).await.ok()?;
    r.upstream_keep_alive = false;
    Some(r)
}

/// Reads the response head (skipping interim 1xx responses) within the route's timeout and
/// writes the client head into `c.wbuf`; `force_close` closes the client connection after it.
pub(crate) async fn read_response_head<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: &mut UpStream,
    force_close: bool,
) -> Result<ResponsePlan, HeadFail> {
    let timeout = p
        .route
        .response_timeout
        .unwrap_or(w.settings.response_timeout);
    let mut deadline = Instant::now() + timeout;
    if let Some(total) = p.route.total_timeout {
        deadline = deadline.min(p.start + total);
    }
    if let Some(g) = p.grpc_timeout {
        deadline = deadline.min(p.start + g);
    }
    let max_head = w.settings.limits.max_head_bytes.max(16 * 1024);
    c.ubuf.clear();
    let mut seen_any = false;
    loop {
        if !c.ubuf.is_empty() {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response_head(&c.ubuf, &mut hs, p.is_head, max_head) {
                Ok(Some(resp)) if (100..200).contains(&resp.status) && resp.status != 101 => {
                    // Interim response (we answered any 100-continue ourselves): drop it.
                    let n = resp.head_len;
                    c.ubuf.drain(..n);
                    continue;
                }
                Ok(Some(resp)) if resp.status == 101 => {
                    let to_websocket = resp.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("upgrade")
                            && h.value.trim_ascii().eq_ignore_ascii_case(b"websocket")
                    });
                    if !p.websocket || !to_websocket {
                        return Err(HeadFail::Other(ProxyError::UpstreamIo(
                            std::io::Error::other(
                                "upstream switched protocols without a websocket upgrade request",
                            ),
                        )));
                    }
                    count(w, p, |u| u.responses[class_of(101)] += 1);
                    c.tally.status = 101;
                    fill_response_extra(&mut c.extra, &c.trace, &c.tally, w, p);
                    let hop = HopByHop::from_headers(resp.headers)
                        .map_err(|e| HeadFail::Other(ProxyError::UpstreamProtocol(e)))?;
                    c.wbuf.clear();
                    write_switch_head(&mut c.wbuf, &resp, &hop, "websocket", &c.extra);
                    return Ok(ResponsePlan {
                        status: 101,
                        head_len: resp.head_len,
                        body: BodyKind::Empty,
                        framing: ClientFraming::AsIs,
                        upstream_keep_alive: false,
                        client_close: true,
                    });
                }
                Ok(Some(resp)) => {
                    count(w, p, |u| u.responses[class_of(resp.status)] += 1);
                    c.tally.status = resp.status;
                    fill_response_extra(&mut c.extra, &c.trace, &c.tally, w, p);
                    c.extra.extend_from_slice(&c.admit.policy_headers);
                    crate::engine::cache::fill::on_head(&mut c.cache, &mut c.extra, w, &resp);
                    return client_response(&mut c.wbuf, &c.extra, w, p, &resp, force_close);
                }
                Ok(None) => {}
                Err(e) => return Err(HeadFail::Other(ProxyError::UpstreamProtocol(e))),
            }
            if c.ubuf.len() == c.ubuf.capacity() {
                return Err(HeadFail::Other(ProxyError::UpstreamIo(
                    std::io::Error::other("upstream response head too large"),
                )));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let (res, buf) = up
            .read_append(std::mem::take(&mut c.ubuf), Some(left))
            .await;
        c.ubuf = buf;
        match res {
            Ok(_) => seen_any = true,
            Err(ReadFail::Timeout) => return Err(HeadFail::Other(ProxyError::UpstreamTimeout)),
            Err(ReadFail::Eof) if !seen_any => {
                return Err(HeadFail::BeforeFirstByte(ProxyError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )))
            }
            Err(ReadFail::Io(e)) if !seen_any => {
                return Err(HeadFail::BeforeFirstByte(ProxyError::UpstreamIo(e)))
            }
            Err(ReadFail::Eof) => {
                return Err(HeadFail::Other(ProxyError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )))
            }
            Err(ReadFail::Io(e)) => return Err(HeadFail::Other(ProxyError::UpstreamIo(e))),
        }
    }
}

/// Fills `c.extra` with the header lines the gateway adds to the response: the request id, and
/// `Server-Timing` when the route asks for it.
pub(crate) fn fill_response_extra<G: Gateway>(
    extra: &mut Vec<u8>,
    trace: &crate::trace::RequestTrace,
    tally: &crate::engine::request::state::Tally,
    w: &Worker<G>,
    p: &Plan<'_>,
) {
    extra.clear();
    if w.settings.trace {
        push_header(extra, b"x-request-id", trace.request_id());
    }
    if p.route.server_timing {
        let total = p.start.elapsed();
        let upstream = tally
            .upstream_start
            .map_or(std::time::Duration::ZERO, |t| t.elapsed());
        let gateway = total.saturating_sub(upstream);
        use std::io::Write as _;
        let _ = write!(
            extra,
            "server-timing: gateway;dur={:.3}, upstream;dur={:.3}\r\n",
            gateway.as_secs_f64() * 1e3,
            upstream.as_secs_f64() * 1e3
        );
    }
}

/// Decides how the final response `resp` reaches the client and writes the client head into
/// `wbuf`, with the gateway's `extra` header lines; `force_close` closes the client connection
/// after it.
pub(crate) fn client_response<G: Gateway>(
    wbuf: &mut Vec<u8>,
    extra: &[u8],
    w: &Worker<G>,
    p: &Plan<'_>,
    resp: &ResponseHead<'_, '_>,
    force_close: bool,
) -> Result<ResponsePlan, HeadFail> {
    let hop = HopByHop::from_headers(resp.headers)
        .map_err(|e| HeadFail::Other(ProxyError::UpstreamProtocol(e)))?;
    let framing = match resp.body {
        BodyKind::Chunked if p.http10 => ClientFraming::Dechunk,
        BodyKind::UntilClose => ClientFraming::UntilClose,
        _ => ClientFraming::AsIs,
    };
    let client_close =
        force_close || !p.keep_alive || framing != ClientFraming::AsIs || w.shutdown.is_stopping();
    // A HEAD response shows the header fields GET would (RFC 9110 §9.3.2), so a chunked
    // resource keeps its (hop-by-hop, hence rewritten) Transfer-Encoding; HTTP/1.0 clients and
    // 204s are never shown one (RFC 9112 §6.1).
    let mut shown = *resp;
    if p.is_head
        && !p.http10
        && resp.status != 204
        && resp
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        shown.body = BodyKind::Chunked;
    }
    wbuf.clear();
    write_response_head(
        wbuf,
        &shown,
        &hop,
        framing,
        client_close,
        p.http10 && !client_close,
        extra,
    );
    Ok(ResponsePlan {
        status: resp.status,
        head_len: resp.head_len,
        body: resp.body,
        framing,
        upstream_keep_alive: resp.keep_alive,
        client_close,
    })
}
