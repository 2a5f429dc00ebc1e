//! The prepare phase: the upstream head made once for the upstream's protocol (HTTP/1.1 text in
//! the connection's head buffer, or an HTTP/2 request) from the typed head, with managed headers
//! replaced, hop-by-hop ones dropped, forwarding headers and identity added; the request's retry
//! eligibility decided; and the [`Plan`] the exchange runs.

use super::choose::Choice;
use super::route::Routed;
use super::state::{AdmitState, Plan};
use crate::codec::RequestHead;
use crate::gateway::{Gateway, UnderscoreHeaders};
use crate::h2head::h2_request_head;
use crate::hygiene::{write_request_head, ForwardContext};
use crate::trace::RequestTrace;
use std::time::{Duration, Instant};

/// What the upstream head carries from the connection and from admission.
pub(crate) struct Forward<'a> {
    /// The client's IP as text (`X-Forwarded-For`).
    pub(crate) peer_ip: &'a [u8],
    /// `http` or `https` (`X-Forwarded-Proto`).
    pub(crate) proto: &'static str,
    /// What admission gave the request (identity headers, credential stripping).
    pub(crate) auth: &'a AdmitState,
    /// The listener's policy for header names with `_`.
    pub(crate) underscores: UnderscoreHeaders,
    /// The request's ids, when the gateway assigns them.
    pub(crate) trace: Option<&'a RequestTrace>,
    /// The request is a gRPC call (an HTTP/2 upstream is then told the client takes trailers).
    pub(crate) grpc: bool,
}

/// Where the upstream head goes: HTTP/1.1 text into the connection's head buffer, or an HTTP/2
/// request, made once from the typed head for the upstream's protocol.
pub(crate) struct UpstreamHead<'a> {
    /// The rewritten upstream path.
    pub(crate) path: &'a [u8],
    pub(crate) text: &'a mut Vec<u8>,
    pub(crate) h2: &'a mut Option<http::Request<()>>,
}

/// Writes the upstream head into `wbuf` (with the rewritten `path`) and makes the plan.
pub(crate) fn plan<'s, G: Gateway>(
    snap: &'s G,
    req: &RequestHead<'_, '_>,
    routed: &Routed<'s, '_>,
    choice: Choice<'s>,
    fwd: Forward<'_>,
    out: UpstreamHead<'_>,
    grpc_timeout: Option<Duration>,
) -> Plan<'s> {
    let route = routed.route;
    let up = choice.upstream;
    let endpoint = up.endpoints[choice.endpoint_index];
    let idempotent = matches!(
        req.method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    let retry_ok = idempotent
        || route
            .retry
            .as_ref()
            .and_then(|r| r.idempotency_header.as_deref())
            .is_some_and(|h| req.headers.iter().any(|x| x.name.eq_ignore_ascii_case(h)));
    out.text.clear();
    let ctx = ForwardContext {
        client_ip: fwd.peer_ip,
        proto: fwd.proto,
        host: &up.host,
        endpoint,
        trace: fwd.trace,
        extra: &fwd.auth.auth.headers,
        drop: snap.managed_headers(),
        strip_credential: fwd.auth.auth.strip_credential,
        upgrade: choice.websocket.then_some("websocket"),
        drop_underscores: fwd.underscores == UnderscoreHeaders::Drop,
    };
    *out.h2 = None;
    if up.h2_streams.is_some() {
        let scheme = if up.tls.is_some() { "https" } else { "http" };
        // A head the `http` crate refuses is left out; the exchange answers 502 for it.
        *out.h2 = h2_request_head(req, &routed.hop, out.path, &ctx, scheme, fwd.grpc).ok();
    } else {
        write_request_head(out.text, req, &routed.hop, out.path, &ctx);
    }
    Plan {
        head_len: req.head_len,
        body: req.body,
        keep_alive: req.keep_alive,
        http10: req.minor_version == 0,
        // An HTTP/1.0 client does not know 100 Continue: its expectation is ignored (RFC 9110
        // §10.1.1) and its body read as it comes.
        expect_continue: req.expect_continue && req.minor_version == 1,
        idempotent,
        is_head: req.method == "HEAD",
        route,
        endpoint,
        endpoint_index: choice.endpoint_index,
        upstream: up,
        admission: choice.admission,
        key: choice.key,
        retry_ok,
        upstream_metric: up.metric,
        start: Instant::now(),
        websocket: choice.websocket,
        grpc_timeout,
    }
}
