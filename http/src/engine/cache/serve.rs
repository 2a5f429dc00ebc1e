//! A stored response written to the client: its status and stored fields, `Age`, `Cache-Status`,
//! `Content-Length`, the gateway's own fields (request id, the policies' `RateLimit-*`), then its
//! body (not for `HEAD`); or `304 Not Modified` with its fields when the client's validators
//! match. Bodies are copied from the shared stored bytes into the connection's buffer a piece at
//! a time (a stored body is never lent to the ring: it may be served by many connections at
//! once).

use super::state::Cached;
use crate::cache::CacheZone;
use crate::engine::io::stream::ByteStream;
use crate::engine::request::state::Conn;
use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use crate::hygiene::push_header;
use crate::respond::push_u64;
use ringgate_cache::status::{write_field, Outcome};
use ringgate_cache::store::Object;
use std::rc::Rc;
use std::time::Instant;

/// Bytes of body sent with the head in one write, and per write after it.
const PIECE: usize = 64 * 1024;

/// What is served and how.
pub(crate) struct Answer {
    pub(crate) obj: Rc<Object>,
    pub(crate) outcome: Outcome,
    pub(crate) ttl: i64,
    pub(crate) detail: &'static str,
    pub(crate) not_modified: bool,
    pub(crate) head_only: bool,
    pub(crate) close: bool,
    pub(crate) http10: bool,
}

impl Answer {
    /// The answer for a request the cache phase answered.
    pub(crate) fn of(c: &Cached<'_>, close: bool) -> Self {
        Answer {
            obj: c.obj.clone(),
            outcome: c.outcome,
            ttl: c.ttl,
            detail: c.detail,
            not_modified: c.not_modified,
            head_only: c.head_only,
            close,
            http10: c.http10,
        }
    }
}

/// Writes `a` to the client; returns whether all of it went out.
pub(crate) async fn send<G: Gateway>(c: &mut Conn, w: &Worker<G>, a: &Answer) -> bool {
    let obj = &a.obj;
    let status = if a.not_modified { 304 } else { obj.status };
    c.wbuf.clear();
    c.wbuf.extend_from_slice(b"HTTP/1.1 ");
    push_u64(&mut c.wbuf, u64::from(status));
    c.wbuf.push(b' ');
    c.wbuf
        .extend_from_slice(crate::error::reason_phrase(status).as_bytes());
    c.wbuf.extend_from_slice(b"\r\n");
    c.wbuf.extend_from_slice(&obj.fields);
    c.wbuf.extend_from_slice(b"age: ");
    push_u64(
        &mut c.wbuf,
        obj.fresh.age(obj.stored_at, Instant::now()).as_secs(),
    );
    c.wbuf.extend_from_slice(b"\r\n");
    write_field(&mut c.wbuf, a.outcome, Some(a.ttl), a.detail);
    let bodiless = a.not_modified || status == 204 || status == 304;
    if !bodiless {
        c.wbuf.extend_from_slice(b"content-length: ");
        push_u64(&mut c.wbuf, obj.body.len() as u64);
        c.wbuf.extend_from_slice(b"\r\n");
    }
    if w.settings.trace {
        push_header(&mut c.wbuf, b"x-request-id", c.trace.request_id());
    }
    c.wbuf.extend_from_slice(&c.admit.policy_headers);
    c.admit.policy_headers.clear();
    if a.close {
        c.wbuf.extend_from_slice(b"connection: close\r\n");
    } else if a.http10 {
        c.wbuf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    c.wbuf.extend_from_slice(b"\r\n");
    c.tally.status = status;
    c.cache.outcome = Some(a.outcome);
    c.cache.detail = a.detail;
    let body: &[u8] = if bodiless || a.head_only {
        &[]
    } else {
        &obj.body
    };
    let first = body.len().min(PIECE);
    c.wbuf.extend_from_slice(&body[..first]);
    let t = w.settings.body_io_timeout;
    let mut sent = 0;
    loop {
        let n = c.wbuf.len();
        let (res, buf) = c.stream.write_all(std::mem::take(&mut c.wbuf), t).await;
        c.wbuf = buf;
        if res.is_err() {
            return false;
        }
        c.tally.bytes_out += n as u64;
        sent += if sent == 0 { first } else { n };
        if sent >= body.len() {
            return true;
        }
        let end = (sent + PIECE).min(body.len());
        c.wbuf.clear();
        c.wbuf.extend_from_slice(&body[sent..end]);
    }
}

/// Counts one request on a cached route of `zone` by what the cache did.
pub(crate) fn record<G: crate::gateway::Gateway>(
    w: &crate::engine::worker::Worker<G>,
    zone: &CacheZone,
    o: Outcome,
) {
    if !w.settings.metrics {
        return;
    }
    let i = crate::metrics::CACHE_OUTCOMES
        .iter()
        .position(|x| *x == o.word())
        .unwrap_or(0);
    w.metrics.borrow_mut().cache_zone(&zone.name).outcomes[i] += 1;
}
