//! One `[[upstreams]]` entry compiled: endpoints resolved, balancing, resilience policy, TLS and
//! the HTTP/2 stream cap, for the snapshot's upstream set and policy.

use super::{fingerprint_of, hash_on};
use crate::config::discovery::DiscoveryKind;
use crate::config::{parse_lb, resolve, UpstreamConfig};
use crate::discovery::{EndpointSet, Found};
use ringgate_http::gateway::{HostRewrite, UpstreamSet};
use ringgate_http::metrics::Registry;
use ringgate_policies::balance::{BreakerConfig, LbKind, OutlierConfig, UpstreamPolicy};
use std::net::SocketAddr;

/// Compiles upstream number `i`; every problem is pushed to `errs` with its path.
///
/// A dynamic upstream's endpoints are `found` (its source's latest answer, sorted by the hub), or
/// none yet; a static one's are resolved here.
pub(super) fn compile(
    i: usize,
    u: &UpstreamConfig,
    found: Option<&EndpointSet>,
    errs: &mut Vec<String>,
) -> (UpstreamSet, UpstreamPolicy) {
    let (endpoints, keys, weights) = endpoints_of(i, u, found, errs);
    let host = host_rewrite(u);
    let lb = u
        .balance
        .as_deref()
        .and_then(parse_lb)
        // Weights written in the config, or coming with SRV records or etcd values, are
        // followed by default.
        .unwrap_or(
            if u.weights.is_empty()
                && !matches!(u.discovery, DiscoveryKind::DnsSrv | DiscoveryKind::Etcd)
            {
                LbKind::RoundRobin
            } else {
                LbKind::WeightedRoundRobin
            },
        );
    let h2_streams = match u.protocol.as_deref() {
        None | Some("http1") => None,
        Some("h2") => Some(u.max_streams_per_connection.unwrap_or(100).max(1)),
        Some(other) => {
            errs.push(format!(
                "upstreams[{i}].protocol: {other:?} is not \"http1\" or \"h2\""
            ));
            None
        }
    };
    let tls = upstream_tls(u, i, &host, h2_streams.is_some(), errs);
    let resolved_all = if u.discovery.is_dynamic() {
        !endpoints.is_empty()
    } else {
        endpoints.len() == u.endpoints.len()
    };
    let health = u.health_check.as_ref().filter(|_| resolved_all).map(|hc| {
        crate::health::board_for(&u.name, &endpoints, hc, tls.as_ref(), h2_streams.is_some())
    });
    let policy = UpstreamPolicy {
        lb,
        keys,
        weights,
        outlier: u.outlier.as_ref().map(|o| OutlierConfig {
            consecutive_5xx: o.consecutive_5xx,
            consecutive_connect_failures: o.consecutive_connect_failures,
            base_ejection: o.base_ejection,
            max_ejection: o.max_ejection,
            max_ejected_percent: o.max_ejected_percent,
        }),
        breaker: u.circuit_breaker.as_ref().map(|b| BreakerConfig {
            window: b.window,
            min_requests: b.min_requests,
            error_ratio: b.error_ratio,
            open_for: b.open_for,
            half_open_probes: b.half_open_probes,
        }),
        health,
    };
    let fingerprint = fingerprint_of(&(
        &endpoints,
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            policy.lb, policy.weights, u.outlier, u.circuit_breaker, u.health_check
        ),
    ));
    let set = UpstreamSet {
        index: i,
        name: u.name.as_str().into(),
        endpoints,
        host,
        metric: Registry::with(|r| r.upstream(&u.name)),
        hash_on: u.hash_on.as_ref().map(hash_on).unwrap_or_default(),
        max_requests: u.max_requests,
        max_connections: u.max_connections,
        tls,
        h2_streams,
        fingerprint,
    };
    (set, policy)
}

/// An upstream's endpoints, their identities (consistent-hash keys) and weights, in one order.
fn endpoints_of(
    i: usize,
    u: &UpstreamConfig,
    found: Option<&EndpointSet>,
    errs: &mut Vec<String>,
) -> (Vec<SocketAddr>, Vec<String>, Vec<u32>) {
    if u.discovery.is_dynamic() {
        let found = found.map_or(&[][..], |f| f.endpoints.as_slice());
        let weight_of = |f: &Found| f.weight.max(1);
        return (
            found.iter().map(|f| f.addr).collect(),
            found.iter().map(|f| f.addr.to_string()).collect(),
            found.iter().map(weight_of).collect(),
        );
    }
    let mut endpoints = Vec::with_capacity(u.endpoints.len());
    for (j, e) in u.endpoints.iter().enumerate() {
        match resolve(e) {
            Ok(a) => endpoints.push(a),
            Err(why) => errs.push(format!("upstreams[{i}].endpoints[{j}]: {why}")),
        }
    }
    let weights = if u.weights.is_empty() {
        vec![1; u.endpoints.len()]
    } else {
        u.weights.clone()
    };
    (endpoints, u.endpoints.clone(), weights)
}

/// How an upstream's `host_header` rewrites the Host sent to it.
pub(super) fn host_rewrite(u: &UpstreamConfig) -> HostRewrite {
    match u.host_header.as_deref() {
        None | Some("keep") => HostRewrite::Keep,
        Some("endpoint") => HostRewrite::Endpoint,
        Some(v) => HostRewrite::Set(v.into()),
    }
}

/// Compiles an upstream's `tls` (upstream number `i`), if it has one.
pub(super) fn upstream_tls(
    u: &UpstreamConfig,
    i: usize,
    host: &HostRewrite,
    h2: bool,
    errs: &mut Vec<String>,
) -> Option<ringgate_http::gateway::UpstreamTls> {
    let t = u.tls.as_ref()?;
    // The name to verify: the Host sent upstream when it is fixed, else the first endpoint's
    // host as the operator wrote it (when that is a name).
    let from_host = match host {
        HostRewrite::Set(v) => Some(v.split(':').next().unwrap_or(v).to_string()),
        _ => None,
    };
    // (Never a discovered address: a `dns` upstream's name is written here, an SRV or etcd
    // upstream must name its server in `tls.server_name` or `host_header`.)
    let from_endpoint = u
        .endpoints
        .first()
        .filter(|_| matches!(u.discovery, DiscoveryKind::Static | DiscoveryKind::Dns));
    let from_endpoint = from_endpoint.and_then(|e| {
        e.rsplit_once(':')
            .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
    });
    let default_name = from_host.or(from_endpoint);
    crate::tls::compile_upstream(t, i, default_name.as_deref(), h2, errs)
}
