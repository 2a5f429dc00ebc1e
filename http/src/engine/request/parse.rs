//! The parse phase: the head parsed in place in the connection's buffer, and the request's
//! record begun (bytes in, request ids and trace context, the access log's method and path,
//! whether it is a gRPC call and its `grpc-timeout`).

use super::state::{Record, Tally};
use super::stop::Stop;
use crate::codec::{parse_request_head, CodecError, RequestHead};
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::Gateway;
use std::time::Duration;

/// Parses the head at the start of `buf` and begins its record; returns it with the client's
/// `grpc-timeout`. Stops for more bytes, or with the codec's refusal (400, 414, 431, 501...).
pub(crate) fn head<'b, 'h, 's, G: Gateway>(
    buf: &'b [u8],
    hs: &'h mut [httparse::Header<'b>],
    w: &Worker<G>,
    rec: &mut Record<'_>,
) -> Result<(RequestHead<'h, 'b>, Option<Duration>), Stop<'s>> {
    match parse_request_head(buf, hs, &w.settings.limits) {
        Ok(Some(r)) => begin(Ok(r), w, rec),
        Ok(None) => Err(Stop::NeedMore),
        Err(e) => begin(Err(e), w, rec),
    }
}

/// Begins the record of a head another framing gave already typed (an HTTP/2 stream's), or
/// refuses it with the codec's error.
pub(crate) fn begin<'b, 'h, 's, G: Gateway>(
    parsed: Result<RequestHead<'h, 'b>, CodecError>,
    w: &Worker<G>,
    rec: &mut Record<'_>,
) -> Result<(RequestHead<'h, 'b>, Option<Duration>), Stop<'s>> {
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            begin_unparsed(w, rec, 0);
            return Err(Stop::Refuse {
                r: Refusal::from_codec(&e),
                consumed: 0,
                http10: false,
                route: None,
                fallback: None,
            });
        }
    };
    *rec.tally = Tally {
        bytes_in: req.head_len as u64,
        ..Tally::default()
    };
    let mut grpc_timeout = None;
    *rec.grpc = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            *rec.grpc = h.value.starts_with(b"application/grpc");
        } else if h.name.eq_ignore_ascii_case("grpc-timeout") {
            grpc_timeout = crate::respond::parse_grpc_timeout(h.value.trim_ascii());
        }
    }
    if w.settings.trace {
        rec.trace.assign(req.headers, &mut w.ids.borrow_mut());
    }
    if w.log.borrow().is_some() {
        rec.meta.clear();
        rec.meta.extend_from_slice(req.method.as_bytes());
        *rec.meta_split = rec.meta.len();
        rec.meta.extend_from_slice(req.path.as_bytes());
    }
    Ok((req, grpc_timeout))
}

/// Starts the record of a request whose head could not be parsed (a 400, or a 408 on a partial
/// head): no method, path or client ids, so fresh ids.
pub(crate) fn begin_unparsed<G: Gateway>(w: &Worker<G>, rec: &mut Record<'_>, bytes_in: u64) {
    *rec.grpc = false;
    *rec.tally = Tally {
        bytes_in,
        ..Tally::default()
    };
    rec.meta.clear();
    *rec.meta_split = 0;
    if w.settings.trace {
        rec.trace.assign(&[], &mut w.ids.borrow_mut());
    }
}
