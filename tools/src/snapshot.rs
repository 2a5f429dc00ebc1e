//! The compiled config snapshot: what workers read per request.
//!
//! Built once per config version on the control thread (endpoint names resolved there, never on a
//! worker), validated, then published through the epoch swap of `ringgate-core`. It implements
//! the engine's [`Gateway`] trait: route lookup in the compiled [`RouteTable`], path rewrite, and
//! the route's settings and upstream, all read-only.

use crate::config::{
    resolve, AccessLogConfig, AdminConfig, ConfigError, ObservabilityConfig, RawConfig, RouteConfig,
};
use ringgate_http::codec::RequestHead;
use ringgate_http::error::Refusal;
use ringgate_http::gateway::{Gateway, HostRewrite, RouteSettings, Routed, UpstreamSet};
use ringgate_http::metrics::Registry;
use ringgate_policies::routing::{
    HeaderMatch, HostMatch, PathMatch, Rewrite, RouteRequest, RouteSpec, RouteTable,
};
use std::net::SocketAddr;

/// What a matched route does.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Request-time settings.
    pub settings: RouteSettings,
    /// Index into [`Snapshot::upstreams`].
    pub upstream: usize,
}

/// One immutable config version.
pub struct Snapshot {
    /// The config's `version` label, or its content hash.
    pub version: String,
    /// Listen addresses.
    pub listeners: Vec<SocketAddr>,
    /// Upstream sets, in config order.
    pub upstreams: Vec<UpstreamSet>,
    /// The compiled route table.
    pub table: RouteTable<CompiledRoute>,
    /// The parts read once at start (a reload may not change them).
    pub process: ProcessSettings,
    /// The content hash of the config text.
    pub hash: u64,
}

/// Settings taken when the process starts; a reload that changes them is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSettings {
    /// Listen addresses, as written.
    pub listeners: Vec<String>,
    /// The admin listener.
    pub admin: Option<AdminConfig>,
    /// The access log.
    pub access_log: Option<AccessLogConfig>,
    /// Metrics and request ids.
    pub observability: ObservabilityConfig,
}

impl ProcessSettings {
    /// What differs from `next`, by field name (empty when a reload may go ahead).
    pub fn restart_needed_for(&self, next: &ProcessSettings) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.listeners != next.listeners {
            v.push("listeners");
        }
        if self.admin != next.admin {
            v.push("admin");
        }
        if self.access_log != next.access_log {
            v.push("access_log");
        }
        if self.observability != next.observability {
            v.push("observability");
        }
        v
    }
}

impl Snapshot {
    /// Validates and compiles `raw`. Every problem is reported, each with its path.
    pub fn build(raw: &RawConfig, text_hash: u64) -> Result<Self, ConfigError> {
        raw.validate()?;
        let mut errs = Vec::new();
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (i, u) in raw.upstreams.iter().enumerate() {
            let mut endpoints = Vec::with_capacity(u.endpoints.len());
            for (j, e) in u.endpoints.iter().enumerate() {
                match resolve(e) {
                    Ok(a) => endpoints.push(a),
                    Err(why) => errs.push(format!("upstreams[{i}].endpoints[{j}]: {why}")),
                }
            }
            let host = match u.host_header.as_deref() {
                None | Some("keep") => HostRewrite::Keep,
                Some("endpoint") => HostRewrite::Endpoint,
                Some(v) => HostRewrite::Set(v.into()),
            };
            upstreams.push(UpstreamSet {
                index: i,
                name: u.name.as_str().into(),
                endpoints,
                host,
                metric: Registry::with(|r| r.upstream(&u.name)),
            });
        }
        let specs: Vec<RouteSpec<CompiledRoute>> =
            raw.routes.iter().map(|r| route_spec(r, raw)).collect();
        let table = match RouteTable::build(specs) {
            Ok(t) => Some(t),
            Err(route_errs) => {
                for e in route_errs {
                    errs.push(format!("routes[{}]: {e}", e.index()));
                }
                None
            }
        };
        match table {
            Some(table) if errs.is_empty() => Ok(Snapshot {
                version: raw
                    .version
                    .clone()
                    .unwrap_or_else(|| format!("{text_hash:016x}")),
                listeners: raw
                    .listeners
                    .iter()
                    .filter_map(|l| l.address.parse().ok())
                    .collect(),
                upstreams,
                table,
                process: ProcessSettings {
                    listeners: raw.listeners.iter().map(|l| l.address.clone()).collect(),
                    admin: raw.admin.clone(),
                    access_log: raw.access_log.clone(),
                    observability: raw.observability.clone(),
                },
                hash: text_hash,
            }),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }
}

fn route_spec(r: &RouteConfig, raw: &RawConfig) -> RouteSpec<CompiledRoute> {
    let path = if let Some(p) = &r.path.exact {
        PathMatch::Exact(p.clone())
    } else if let Some(p) = &r.path.prefix {
        PathMatch::Prefix(p.clone())
    } else {
        PathMatch::Template(r.path.template.clone().unwrap_or_default())
    };
    let hosts = r
        .hosts
        .iter()
        .map(|h| {
            if h.starts_with("*.") {
                HostMatch::Wildcard(h.clone())
            } else {
                HostMatch::Exact(h.clone())
            }
        })
        .collect();
    let headers = r
        .headers
        .iter()
        .map(|h| match (&h.exact, &h.prefix) {
            (Some(v), _) => HeaderMatch::Exact(h.name.clone(), v.clone()),
            (None, Some(v)) => HeaderMatch::Prefix(h.name.clone(), v.clone()),
            (None, None) => HeaderMatch::Present(h.name.clone()),
        })
        .collect();
    let rewrite = if r.strip_prefix {
        Rewrite::StripPrefix
    } else if let Some(p) = &r.rewrite_prefix {
        Rewrite::ReplacePrefix(p.clone())
    } else if let Some(t) = &r.rewrite {
        Rewrite::Template(t.clone())
    } else {
        Rewrite::None
    };
    let upstream = raw
        .upstreams
        .iter()
        .position(|u| u.name == r.upstream)
        .unwrap_or(0);
    RouteSpec {
        id: r.id.clone(),
        hosts,
        path,
        methods: r.methods.clone(),
        headers,
        priority: r.priority,
        rewrite,
        action: CompiledRoute {
            settings: RouteSettings {
                id: r.id.as_str().into(),
                response_timeout: r.timeout,
                max_body_bytes: r.max_body_bytes,
                metric: Registry::with(|reg| reg.route(&r.id)),
                server_timing: r.server_timing,
            },
            upstream,
        },
    }
}

impl Gateway for Snapshot {
    fn route<'s>(
        &'s self,
        req: &RequestHead<'_, '_>,
        upstream_path: &mut Vec<u8>,
    ) -> Result<Routed<'s>, Refusal> {
        let rr = RouteRequest {
            host: req.host.unwrap_or(b""),
            path: req.path.as_bytes(),
            method: req.method.as_bytes(),
            headers: req.headers,
        };
        let m = self.table.lookup(&rr).ok_or(Refusal::NO_ROUTE)?;
        self.table
            .write_upstream_path(&m, rr.path, req.query.map(str::as_bytes), upstream_path);
        let action = self.table.action(&m);
        Ok(Routed {
            route: &action.settings,
            upstream: &self.upstreams[action.upstream],
        })
    }

    fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }
}

/// A stable 64-bit FNV-1a hash of the config text (the version label when none is given).
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
