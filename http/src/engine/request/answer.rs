//! The gateway's own answers: a refusal (status, reason code, the policies' headers; a gRPC call
//! gets a `grpc-status` trailer-only answer) or a route's fallback response, written to the
//! client and recorded in the request's tally.

use super::state::Conn;
use crate::engine::io::stream::ByteStream;
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::Gateway;
use crate::hygiene::push_header;
use crate::resilience::Fallback;
use crate::respond::write_refusal;

/// Answers with a route's fallback response (instead of a refusal `r`, which names the reason in
/// metrics and logs).
pub(crate) async fn respond_fallback<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    f: &Fallback,
    r: Refusal,
    close: bool,
    http10: bool,
) -> bool {
    use crate::respond::push_u64;
    c.wbuf.clear();
    c.wbuf.extend_from_slice(b"HTTP/1.1 ");
    push_u64(&mut c.wbuf, u64::from(f.status));
    c.wbuf.push(b' ');
    c.wbuf
        .extend_from_slice(crate::error::reason_phrase(f.status).as_bytes());
    c.wbuf.extend_from_slice(b"\r\ncontent-type: ");
    c.wbuf.extend_from_slice(f.content_type.as_bytes());
    c.wbuf.extend_from_slice(b"\r\ncontent-length: ");
    push_u64(&mut c.wbuf, f.body.len() as u64);
    c.wbuf.extend_from_slice(b"\r\n");
    if w.settings.trace {
        push_header(&mut c.wbuf, b"x-request-id", c.trace.request_id());
    }
    if close {
        c.wbuf.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        c.wbuf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    c.wbuf.extend_from_slice(b"\r\n");
    c.wbuf.extend_from_slice(&f.body);
    send_made(c, w, f.status, r.code).await
}

/// Sends a gateway-made response (`close` adds `Connection: close`; a kept HTTP/1.0 connection,
/// `http10`, gets `Connection: keep-alive`). Returns whether it was written.
pub(crate) async fn refuse<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    r: Refusal,
    close: bool,
    http10: bool,
) -> bool {
    c.wbuf.clear();
    c.extra.clear();
    if w.settings.trace {
        push_header(&mut c.extra, b"x-request-id", c.trace.request_id());
    }
    c.extra.extend_from_slice(&c.admit.policy_headers);
    c.admit.policy_headers.clear();
    if c.grpc {
        crate::respond::write_grpc_refusal(&mut c.wbuf, &r, close, &c.extra);
    } else {
        write_refusal(&mut c.wbuf, &r, close, http10 && !close, &c.extra);
    }
    send_made(c, w, r.status, r.code).await
}

/// Writes the gateway-made response in `c.wbuf` and records it (`status`, reason `code`).
async fn send_made<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    status: u16,
    code: &'static str,
) -> bool {
    c.tally.status = status;
    c.tally.reason = code;
    let n = c.wbuf.len() as u64;
    let (res, buf) = c
        .stream
        .write_all(std::mem::take(&mut c.wbuf), w.settings.body_io_timeout)
        .await;
    c.wbuf = buf;
    if res.is_ok() {
        c.tally.bytes_out += n;
    }
    res.is_ok()
}
