//! The choose phase: what the request becomes and where it goes. A WebSocket handshake becomes
//! an upgrade (within the core's tunnel cap); a split route picks its upstream (by the override
//! header, or by a key); the upstream's bulkhead and breaker admit the request and its balancer
//! picks the endpoint. A breaker that is open answers with the route's fallback when it has one.

use super::route::Routed;
use super::stop::{Refuser, Stop};
use crate::codec::{BodyKind, RequestHead};
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::{Gateway, RouteSettings, UpstreamSet};
use crate::resilience::{
    cookie_value, key_hash, Admission, HashOn, RouteRuntime, RouteSplit, UpstreamRuntime,
};
use std::net::SocketAddr;
use std::time::Instant;

/// Where the request goes.
pub(crate) struct Choice<'s> {
    /// The upstream (the route's, or the split backend chosen).
    pub(crate) upstream: &'s UpstreamSet,
    /// The upstream's admission of the request (breaker).
    pub(crate) admission: Admission,
    /// Index of the endpoint in the upstream's endpoints.
    pub(crate) endpoint_index: usize,
    /// The request's consistent-hash key.
    pub(crate) key: Option<u64>,
    /// A WebSocket upgrade the upstream is asked for.
    pub(crate) websocket: bool,
}

/// Chooses the upstream and endpoint of a routed request (`identity`: the key authentication
/// gave, for splits and hashing by identity).
pub(crate) fn choose<'s, G: Gateway>(
    w: &Worker<G>,
    snap: &'s G,
    routed: &Routed<'s, '_>,
    req: &RequestHead<'_, '_>,
    peer: SocketAddr,
    identity: Option<u64>,
    refuser: Refuser,
) -> Result<Choice<'s>, Stop<'s>> {
    let route = routed.route;
    let websocket = route.websocket && is_websocket_handshake(req);
    if websocket && w.tunnels.get() >= w.settings.max_tunnels {
        return Err(refuser.refuse(Refusal::new(503, "tunnel_limit"), Some(route)));
    }
    let up = match &route.split {
        None => routed.upstream,
        Some(split) => {
            split_upstream(w, snap, route, split, req, (peer, identity)).unwrap_or(routed.upstream)
        }
    };
    if up.endpoints.is_empty() {
        return Err(refuser.refuse(Refusal::NO_ENDPOINT, Some(route)));
    }
    let key = request_key(&up.hash_on, req, peer, identity);
    let now = Instant::now();
    let picked = w.with_upstream(snap, up, |s| {
        if up.max_requests.is_some_and(|m| s.inflight >= m) {
            return Err(Refusal::UPSTREAM_OVERLOADED);
        }
        let a = s.rt.admit(now)?;
        match s.rt.pick(key, 0, now) {
            Some(i) if i < up.endpoints.len() => {
                s.inflight += 1;
                Ok((a, i))
            }
            _ => {
                s.rt.release(a, false, now);
                Err(Refusal::NO_ENDPOINT)
            }
        }
    });
    let (admission, endpoint_index) = picked.map_err(|r| {
        let fallback = route
            .fallback
            .as_ref()
            .filter(|_| r == Refusal::UPSTREAM_UNAVAILABLE);
        refuser.answer(r, Some(route), fallback)
    })?;
    if route.retry.is_some() {
        w.with_route(snap, route, |r| r.record_request(now));
    }
    Ok(Choice {
        upstream: up,
        admission,
        endpoint_index,
        key,
        websocket,
    })
}

/// A WebSocket handshake (RFC 6455 §4.1: a bodiless HTTP/1.1 GET asking to upgrade to
/// `websocket`); any other upgrade (h2c...) is dropped and the request goes as a plain one.
fn is_websocket_handshake(req: &RequestHead<'_, '_>) -> bool {
    req.upgrade
        && req.method == "GET"
        && req.minor_version == 1
        && req.body == BodyKind::Empty
        && req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("upgrade")
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        })
}

/// The upstream a split route sends the request to: the one the override header names, else
/// the one the route's per-core split picks by the request's key (`None`: the route's own).
fn split_upstream<'s, G: Gateway>(
    w: &Worker<G>,
    snap: &'s G,
    route: &RouteSettings,
    split: &RouteSplit,
    req: &RequestHead<'_, '_>,
    (peer, identity): (SocketAddr, Option<u64>),
) -> Option<&'s UpstreamSet> {
    let forced = split.override_header.as_deref().and_then(|h| {
        let v = req
            .headers
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(h))?
            .value;
        split
            .upstreams
            .iter()
            .filter_map(|&i| snap.upstream(i))
            .find(|u| u.name.as_bytes() == v.trim_ascii())
    });
    if forced.is_some() {
        return forced;
    }
    let key = request_key(&split.on, req, peer, identity).unwrap_or_else(|| ip_key(peer));
    let pick = w.with_route(snap, route, |r| r.split(key));
    split.upstreams.get(pick).and_then(|&i| snap.upstream(i))
}

/// The consistent-hash key of a request, per `on`.
fn request_key(
    on: &HashOn,
    req: &RequestHead<'_, '_>,
    peer: SocketAddr,
    identity: Option<u64>,
) -> Option<u64> {
    match on {
        HashOn::None => None,
        HashOn::Identity => identity,
        HashOn::ClientIp => Some(ip_key(peer)),
        HashOn::Header(name) => req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| key_hash(h.value)),
        HashOn::Cookie(name) => cookie_value(req.headers, name).map(key_hash),
    }
}

fn ip_key(peer: SocketAddr) -> u64 {
    match peer.ip() {
        std::net::IpAddr::V4(a) => key_hash(&a.octets()),
        std::net::IpAddr::V6(a) => key_hash(&a.octets()),
    }
}
