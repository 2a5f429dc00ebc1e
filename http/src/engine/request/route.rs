//! The route phase: the path normalized as the listener's policy says (one function for
//! HTTP/1.1 and HTTP/2), header names with `_` refused when the listener says so, the route
//! matched on the normalized path without `;parameters`, the upstream path rewritten, and the
//! hop-by-hop header names collected.

use super::stop::{Refuser, Stop};
use crate::codec::{normalize_path, strip_parameters, HopByHop, RequestHead};
use crate::error::Refusal;
use crate::gateway::{
    Gateway, ListenerPolicy, RequestPaths, RouteSettings, UnderscoreHeaders, UpstreamSet,
};

/// The connection's per-request path buffers (reused across requests).
pub(crate) struct Scratch<'a> {
    /// The normalized path.
    pub(crate) normalized: &'a mut Vec<u8>,
    /// The normalized path without `;parameters`, when it had some.
    pub(crate) matching: &'a mut Vec<u8>,
    /// The path sent upstream (rewritten).
    pub(crate) upstream: &'a mut Vec<u8>,
}

/// Where the request goes and under which listener policy.
pub(crate) struct Routed<'s, 'b> {
    pub(crate) route: &'s RouteSettings,
    /// The route's upstream (the first of a split's).
    pub(crate) upstream: &'s UpstreamSet,
    /// The listener's path and header-name policy.
    pub(crate) policy: ListenerPolicy,
    /// The request's hop-by-hop header names (not forwarded).
    pub(crate) hop: HopByHop<'b>,
}

/// Normalizes the path, applies the listener's header-name policy and routes the request.
pub(crate) fn route<'s, 'b, G: Gateway>(
    snap: &'s G,
    listener: usize,
    req: &RequestHead<'_, 'b>,
    paths: Scratch<'_>,
    refuser: Refuser,
) -> Result<Routed<'s, 'b>, Stop<'s>> {
    let policy = snap.listener_policy(listener);
    if let Err(e) = normalize_path(req.path.as_bytes(), &policy.path, paths.normalized) {
        return Err(refuser.refuse(Refusal::new(400, e.code()), None));
    }
    if policy.underscores == UnderscoreHeaders::Reject
        && req.headers.iter().any(|h| h.name.contains('_'))
    {
        return Err(refuser.refuse(Refusal::new(400, "underscore_in_header_name"), None));
    }
    let stripped = strip_parameters(paths.normalized, policy.path.merge_slashes, paths.matching);
    let matching = RequestPaths {
        normalized: paths.normalized,
        matching: if stripped {
            paths.matching
        } else {
            paths.normalized
        },
    };
    paths.upstream.clear();
    let found = snap
        .route(req, matching, paths.upstream)
        .map_err(|r| refuser.refuse(r, None))?;
    let hop = HopByHop::from_headers(req.headers).map_err(|e| Stop::Refuse {
        r: Refusal::from_codec(&e),
        consumed: 0,
        http10: req.minor_version == 0,
        route: Some(found.route),
        fallback: None,
    })?;
    Ok(Routed {
        route: found.route,
        upstream: found.upstream,
        policy,
        hop,
    })
}
