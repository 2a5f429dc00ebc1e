//! Failures before any response byte reached the client: the error answered (502, 503, 504,
//! 408, 413...) and the connection kept when the request was wholly read.

use crate::engine::request::answer::refuse;
use crate::engine::request::state::Outcome;
use crate::engine::request::state::{Conn, Plan};
use crate::engine::upstream::attempt::count;
use crate::engine::upstream::request_body::RequestBody;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;

/// Answers a failure that happened before any response byte reached the client. When the
/// request's body was fully consumed (`consumed_to` is where it ended) and the client keeps
/// alive, the connection goes on after the error response; otherwise it closes.
pub(crate) async fn fail_before_response<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    e: &ProxyError,
    consumed_to: Option<usize>,
) -> Outcome {
    if matches!(
        e,
        ProxyError::UpstreamIo(_) | ProxyError::UpstreamTimeout | ProxyError::UpstreamProtocol(_)
    ) {
        count(w, p, |u| u.failures += 1);
    }
    let Some(r) = e.refusal() else {
        return Outcome::Close;
    };
    let keep = !r.close && p.keep_alive && !w.shutdown.is_stopping();
    match consumed_to {
        Some(end) if keep => {
            if refuse(c, w, r, false, p.http10).await {
                c.cbuf.drain(..end.min(c.cbuf.len()));
                Outcome::KeepAlive
            } else {
                Outcome::Close
            }
        }
        _ => {
            let _ = refuse(c, w, r, true, p.http10).await;
            Outcome::Close
        }
    }
}

/// Answers 503 `upstream_overloaded` before anything was sent.
pub(crate) async fn refuse_overloaded<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    body: &RequestBody,
) -> Outcome {
    let end = body.complete.then_some(body.end);
    fail_before_response(c, w, p, &ProxyError::Overloaded, end).await
}
