//! `[[upstreams]]`: where requests go, how endpoints are balanced and how much each core sends.
//!
//! The resilience settings an upstream carries (health checks, outlier ejection, the circuit
//! breaker) are in [`super::resilience`].

use super::discovery::DiscoveryKind;
use super::{is_token_byte, Problems, Slots};
use super::{BreakerSettings, HealthCheckConfig, OutlierSettings};
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};

/// `[[upstreams]]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name routes refer to.
    pub name: String,
    /// `host:port` endpoints (names are resolved when the config is loaded, off the hot path);
    /// with `discovery`, the names to watch (none for etcd).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// `"keep"` (the client's Host, the default), `"endpoint"` (the endpoint's `ip:port`), or any
    /// other value to send as the Host.
    #[serde(default)]
    pub host_header: Option<String>,
    /// Endpoint weights, in endpoint order (default: all 1).
    #[serde(default)]
    pub weights: Vec<u32>,
    /// `round_robin` (default), `weighted_round_robin`, `least_requests`, `peak_ewma`,
    /// `consistent_hash`.
    #[serde(default)]
    pub balance: Option<String>,
    /// What `consistent_hash` keys on: `{ client_ip = true }`, `{ header = "x-user" }` or
    /// `{ cookie = "sid" }`.
    #[serde(default)]
    pub hash_on: Option<HashOnConfig>,
    /// Requests in flight per core before 503 `upstream_overloaded` (`max_requests_per_core`;
    /// the old name `max_requests` is accepted: each core keeps its own count).
    #[serde(default, rename = "max_requests_per_core", alias = "max_requests")]
    pub max_requests: Option<u32>,
    /// Connections (in use and idle) per core before 503 `upstream_overloaded`
    /// (`max_connections_per_core`; `max_connections` is accepted).
    #[serde(
        default,
        rename = "max_connections_per_core",
        alias = "max_connections"
    )]
    pub max_connections: Option<u32>,
    /// TLS to the endpoints.
    #[serde(default)]
    pub tls: Option<crate::tls::UpstreamTlsConfig>,
    /// `"http1"` (default) or `"h2"`: HTTP/2 to the endpoints (h2c with prior knowledge, or
    /// ALPN `h2` with `tls`), multiplexed (gRPC services).
    #[serde(default)]
    pub protocol: Option<String>,
    /// With `protocol = "h2"`: streams per connection before another is opened (default 100).
    #[serde(default)]
    pub max_streams_per_connection: Option<u32>,
    /// Active health checks (once per process, off the workers).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier ejection (per core).
    #[serde(default)]
    pub outlier: Option<OutlierSettings>,
    /// The circuit breaker (per core).
    #[serde(default)]
    pub circuit_breaker: Option<BreakerSettings>,
    /// Where the endpoints come from: `static` (default), `dns`, `dns_srv` or `etcd` (see
    /// [`super::discovery`]).
    #[serde(default)]
    pub discovery: DiscoveryKind,
    /// With `discovery = "etcd"`: the key prefix whose keys hold the endpoints.
    #[serde(default)]
    pub etcd_prefix: Option<String>,
}

/// What a request is hashed on.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HashOnConfig {
    /// The client's IP.
    #[serde(default)]
    pub client_ip: bool,
    /// A request header.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The authenticated identity (client id, else subject), on routes with `auth`.
    #[serde(default)]
    pub identity: bool,
}

impl UpstreamConfig {
    /// This upstream's own checks (names across upstreams: [`check_names`]); `at` is its path
    /// (`upstreams[1]`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        self.validate_endpoints(at, p);
        if !self.weights.is_empty() && self.weights.len() != self.endpoints.len() {
            p.at(
                format_args!("{at}.weights"),
                format_args!(
                    "give one weight per endpoint ({} endpoints)",
                    self.endpoints.len()
                ),
            );
        }
        if let Some(b) = &self.balance {
            if parse_lb(b).is_none() {
                p.at(format_args!("{at}.balance"), format_args!("{b:?} is not one of round_robin, weighted_round_robin, least_requests, peak_ewma, consistent_hash"));
            }
        }
        if let Some(h) = &self.hash_on {
            if let Err(e) = check_hash_on(h) {
                p.at(format_args!("{at}.hash_on"), e);
            }
        }
        if self.max_requests == Some(0) || self.max_connections == Some(0) {
            p.at(
                at,
                "max_requests_per_core and max_connections_per_core must be at least 1",
            );
        }
        if let Some(proto) = self.protocol.as_deref() {
            if !matches!(proto, "http1" | "h2") {
                p.at(
                    format_args!("{at}.protocol"),
                    format_args!("{proto:?} is not \"http1\" or \"h2\""),
                );
            }
        }
        let h2 = self.protocol.as_deref() == Some("h2");
        if let Some(hc) = &self.health_check {
            hc.validate(&format!("{at}.health_check"), h2, p);
        }
        if let Some(o) = &self.outlier {
            o.validate(&format!("{at}.outlier"), p);
        }
        if let Some(b) = &self.circuit_breaker {
            b.validate(&format!("{at}.circuit_breaker"), p);
        }
        if let Some(h) = &self.host_header {
            if h.is_empty()
                || h.bytes().any(|b| {
                    b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/' || b == b'@'
                })
            {
                p.at(
                    format_args!("{at}.host_header"),
                    format_args!("{h:?} is not a valid host"),
                );
            }
        }
    }
}

impl UpstreamConfig {
    /// The endpoints as the upstream's `discovery` reads them.
    fn validate_endpoints(&self, at: &str, p: &mut Problems) {
        match self.discovery {
            DiscoveryKind::Etcd => {
                if !self.endpoints.is_empty() {
                    p.at(
                        format_args!("{at}.endpoints"),
                        "an etcd upstream's endpoints are the keys under etcd_prefix",
                    );
                }
                match self.etcd_prefix.as_deref() {
                    Some(pre) if !pre.is_empty() => {}
                    _ => p.at(
                        format_args!("{at}.etcd_prefix"),
                        "discovery = \"etcd\" needs the key prefix holding the endpoints",
                    ),
                }
            }
            DiscoveryKind::DnsSrv => {
                if self.endpoints.is_empty() {
                    p.at(
                        format_args!("{at}.endpoints"),
                        "at least one SRV name is needed",
                    );
                }
                for (j, e) in self.endpoints.iter().enumerate() {
                    if e.is_empty() || e.contains(':') || e.bytes().any(|b| b.is_ascii_whitespace())
                    {
                        p.at(
                            format_args!("{at}.endpoints[{j}]"),
                            format_args!("{e:?} is not an SRV name (_service._proto.name)"),
                        );
                    }
                }
            }
            DiscoveryKind::Static | DiscoveryKind::Dns => {
                if self.endpoints.is_empty() {
                    p.at(
                        format_args!("{at}.endpoints"),
                        "at least one endpoint is needed",
                    );
                }
                for (j, e) in self.endpoints.iter().enumerate() {
                    // Shape only: names are resolved when the snapshot is built (static) or by
                    // the resolver thread (dns).
                    if let Err(why) = check_endpoint(e) {
                        p.at(format_args!("{at}.endpoints[{j}]"), why);
                    }
                }
            }
        }
        if self.discovery != DiscoveryKind::Etcd && self.etcd_prefix.is_some() {
            p.at(
                format_args!("{at}.etcd_prefix"),
                "only for discovery = \"etcd\"",
            );
        }
        if !self.weights.is_empty()
            && matches!(self.discovery, DiscoveryKind::DnsSrv | DiscoveryKind::Etcd)
        {
            p.at(
                format_args!("{at}.weights"),
                "weights come from the SRV records or the etcd values",
            );
        }
    }
}

/// Every upstream has a name, and no two the same one.
pub(super) fn check_names(upstreams: &[UpstreamConfig], at: &Slots, p: &mut Problems) {
    let mut names = std::collections::HashSet::new();
    for (i, u) in upstreams.iter().enumerate() {
        let i = at.of(i);
        if u.name.is_empty() {
            p.at(format_args!("upstreams[{i}].name"), "must not be empty");
        }
        if !names.insert(u.name.as_str()) {
            p.at(
                format_args!("upstreams[{i}].name"),
                format_args!("{:?} is defined twice", u.name),
            );
        }
    }
}

/// The balancing algorithm a config name stands for.
pub fn parse_lb(name: &str) -> Option<ringgate_policies::balance::LbKind> {
    use ringgate_policies::balance::LbKind;
    Some(match name {
        "round_robin" => LbKind::RoundRobin,
        "weighted_round_robin" => LbKind::WeightedRoundRobin,
        "least_requests" => LbKind::LeastRequests,
        "peak_ewma" => LbKind::PeakEwma,
        "consistent_hash" => LbKind::ConsistentHash,
        _ => return None,
    })
}

/// Exactly one thing to hash on (an upstream's `hash_on`, a route's `split_on`).
pub(super) fn check_hash_on(h: &HashOnConfig) -> Result<(), String> {
    let n = usize::from(h.client_ip)
        + usize::from(h.header.is_some())
        + usize::from(h.cookie.is_some())
        + usize::from(h.identity);
    if n != 1 {
        return Err("give exactly one of client_ip = true, identity = true, header, cookie".into());
    }
    if h.header
        .as_deref()
        .is_some_and(|v| v.is_empty() || !v.bytes().all(is_token_byte))
    {
        return Err("header: not a header name".into());
    }
    Ok(())
}

/// Checks that `endpoint` has the `host:port` shape, without resolving it.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        Some((_, port)) if !port.is_empty() && port.parse::<u16>().is_err() => {
            Err(format!("{endpoint:?} has a bad port (host:port)"))
        }
        _ => Err(format!("{endpoint:?} has no port (host:port)")),
    }
}

/// Resolves `host:port` to one address (the first the resolver gives). Called while building a
/// snapshot on the control thread, never on a worker.
pub fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = endpoint.parse::<SocketAddr>() {
        return Ok(a);
    }
    check_endpoint(endpoint)?;
    endpoint
        .to_socket_addrs()
        .map_err(|e| format!("{endpoint:?} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(name: &str) -> UpstreamConfig {
        UpstreamConfig {
            name: name.into(),
            endpoints: vec!["127.0.0.1:9001".into()],
            ..UpstreamConfig::default()
        }
    }

    #[test]
    fn an_upstream_is_checked_field_by_field() {
        let mut p = Problems::default();
        upstream("a").validate("upstreams[0]", &mut p);
        assert!(p.is_empty(), "{p:?}");
        let bad = UpstreamConfig {
            endpoints: vec!["127.0.0.1".into(), "h:x".into()],
            weights: vec![1],
            balance: Some("random".into()),
            hash_on: Some(HashOnConfig::default()),
            max_requests: Some(0),
            protocol: Some("h3".into()),
            host_header: Some("a b".into()),
            ..upstream("b")
        };
        bad.validate("upstreams[3]", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "upstreams[3].endpoints[0]: \"127.0.0.1\" has no port",
            "upstreams[3].endpoints[1]: \"h:x\" has a bad port",
            "upstreams[3].weights: give one weight per endpoint (2 endpoints)",
            "upstreams[3].balance: \"random\"",
            "upstreams[3].hash_on: give exactly one",
            "upstreams[3]: max_requests_per_core",
            "upstreams[3].protocol: \"h3\"",
            "upstreams[3].host_header: \"a b\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn names_are_unique_and_paths_name_the_file_entry() {
        let mut p = Problems::default();
        let at = Slots {
            index: vec![0, 2, 3],
            in_file: 4,
            not_a_list: false,
        };
        check_names(&[upstream("a"), upstream(""), upstream("a")], &at, &mut p);
        let all = p.into_vec().join("\n");
        assert!(
            all.contains("upstreams[2].name: must not be empty"),
            "{all}"
        );
        assert!(
            all.contains("upstreams[3].name: \"a\" is defined twice"),
            "{all}"
        );
    }
}
