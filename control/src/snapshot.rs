//! The compiled config snapshot: what workers read per request.
//!
//! Built once per config version on the control thread (endpoint names resolved there, never on a
//! worker), validated, then published through the epoch swap of `ringgate-core`. It implements
//! the engine's [`Gateway`] trait: route lookup in the compiled [`RouteTable`], path rewrite, and
//! the route's settings and upstream, all read-only.

use crate::config::{
    AccessLogConfig, AdminConfig, ConfigError, HashOnConfig, ObservabilityConfig, RawConfig,
    RouteConfig,
};
use crate::discovery::Overlay;
use crate::ratelimit::config::Backend;
use crate::ratelimit::service::LimitService;
use ringgate_http::authn::{AuthOutput, LimitStage, LimitVerdict};
use ringgate_http::codec::RequestHead;
use ringgate_http::error::Refusal;
use ringgate_http::gateway::{
    AdmitPlan, Gateway, RequestPaths, RouteSettings, Routed, UpstreamSet,
};
use ringgate_http::metrics::Registry;
use ringgate_http::resilience::{Fallback, HashOn, RetrySettings, RouteSplit};
use ringgate_policies::balance::{
    LbKind, RetryBudgetConfig, RoutePolicy, RouteState, UpstreamPolicy, UpstreamState,
};
use ringgate_policies::ratelimit::local::{Caller, CoreLimiter, Decision};
use ringgate_policies::ratelimit::spec::{LimitSet, Stage};
use ringgate_policies::routing::{
    HeaderMatch, HostMatch, PathMatch, Rewrite, RouteRequest, RouteSpec, RouteTable,
};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

mod upstream;

/// What a matched route does.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Request-time settings.
    pub settings: RouteSettings,
    /// The route rewrites the path (strip or replace a prefix, or a template).
    pub rewrites: bool,
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
    /// Balancing and protection of each upstream, by snapshot index.
    pub upstream_policies: Vec<UpstreamPolicy>,
    /// Retry budget and split of each route, by route metric id.
    pub route_policies: HashMap<u32, RoutePolicy>,
    /// Authentication, when `[auth]` is configured.
    pub auth: Option<std::sync::Arc<crate::auth::SnapshotAuth>>,
    /// Header names never forwarded from clients (the identity headers).
    pub managed: Vec<Box<str>>,
    /// The rate limits and the routes' chains of them.
    pub limits: Arc<LimitSet>,
    /// The process's reconciler (attached when the gateway starts, carried over by reloads).
    pub limiter: Option<Arc<LimitService>>,
    /// Each listener's TLS config (`None`: cleartext), in listener order.
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Each listener's request-head policy, in listener order.
    pub listener_policies: Vec<ringgate_http::gateway::ListenerPolicy>,
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
    /// Where rate limits are reconciled.
    pub rate_limit: Backend,
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
        if self.rate_limit != next.rate_limit {
            v.push("rate_limit (store, tick, timeouts, node_id)");
        }
        v
    }
}

impl Snapshot {
    /// The number of workers of the running process (known from the limit service the server
    /// attaches to every snapshot it publishes; 1 before that).
    pub fn workers(&self) -> usize {
        self.limiter.as_ref().map_or(1, |l| l.workers())
    }

    /// Validates and compiles `raw`. Every problem is reported, each with its path.
    pub fn build(raw: &RawConfig, text_hash: u64) -> Result<Self, ConfigError> {
        Self::build_with(raw, text_hash, &Overlay::default())
    }

    /// [`Snapshot::build`], with the endpoints of dynamic upstreams from `overlay` (by upstream
    /// name; one missing there has no endpoints yet).
    pub fn build_with(
        raw: &RawConfig,
        text_hash: u64,
        overlay: &Overlay,
    ) -> Result<Self, ConfigError> {
        if let Err(e) = raw.validate() {
            let ConfigError::Invalid(mut errs) = e else {
                return Err(e);
            };
            errs.extend(compile_problems(raw));
            return Err(ConfigError::Invalid(errs));
        }
        let mut errs = Vec::new();
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        let mut upstream_policies = Vec::with_capacity(raw.upstreams.len());
        for (i, u) in raw.upstreams.iter().enumerate() {
            let (set, policy) = upstream::compile(i, u, overlay.get(&u.name), &mut errs);
            upstreams.push(set);
            upstream_policies.push(policy);
        }
        let rules: Vec<&crate::config::RouteAuthConfig> =
            raw.routes.iter().filter_map(|r| r.auth.as_ref()).collect();
        let auth = raw
            .auth
            .as_ref()
            .map(|a| crate::auth::build(a, &rules, &mut errs))
            .map(std::sync::Arc::new);
        let managed: Vec<Box<str>> = auth
            .as_ref()
            .map(|a| a.identity_headers().to_vec())
            .unwrap_or_default();
        let route_limits: Vec<(&[String], bool)> = raw
            .routes
            .iter()
            .map(|r| (r.rate_limits.as_slice(), r.rate_limit_headers))
            .collect();
        let (limits, chains) = crate::ratelimit::config::compile(
            raw.rate_limit.as_ref(),
            &raw.rate_limits,
            |i| i,
            &route_limits,
            &mut errs,
        );
        let zones = cache_zones(raw);
        let mut next_rule = 0u32;
        let specs: Vec<RouteSpec<CompiledRoute>> = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rule = r.auth.as_ref().map(|_| {
                    next_rule += 1;
                    next_rule - 1
                });
                let mut spec = route_spec(r, raw, rule);
                let settings = &mut spec.action.settings;
                settings.rate_limit = chains.get(i).copied().flatten();
                settings.cache = r.cache.as_ref().and_then(|c| route_cache(c, &zones));
                // Once every policy of the route is known: the phases it runs per request.
                settings.admit = AdmitPlan::compile(settings);
                spec
            })
            .collect();
        let table = match RouteTable::build(specs) {
            Ok(t) => Some(t),
            Err(route_errs) => {
                for e in route_errs {
                    errs.push(format!("routes[{}]: {e}", e.index()));
                }
                None
            }
        };
        let tls: Vec<Option<Arc<rustls::ServerConfig>>> = raw
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.tls
                    .as_ref()
                    .and_then(|t| crate::tls::compile(t, i, &mut errs))
            })
            .collect();
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
                    rate_limit: Backend::of(raw.rate_limit.as_ref()),
                },
                hash: text_hash,
                upstream_policies,
                route_policies: raw
                    .routes
                    .iter()
                    .map(|r| (Registry::with(|reg| reg.route(&r.id)), route_policy(r)))
                    .collect(),
                auth,
                managed,
                limits: Arc::new(limits),
                limiter: None,
                tls,
                listener_policies: raw.listeners.iter().map(|l| l.policy()).collect(),
            }),
            _ => Err(ConfigError::Invalid(errs)),
        }
    }
}

/// The config's cache zones by name (each gets its purge log, kept for the process's life).
fn cache_zones(raw: &RawConfig) -> HashMap<String, Arc<ringgate_http::cache::CacheZone>> {
    raw.cache_zones
        .iter()
        .map(|z| {
            let _ = ringgate_http::cache::purge::log_for(&z.name);
            let zone = ringgate_http::cache::CacheZone {
                name: z.name.as_str().into(),
                max_bytes: z.max_bytes,
                max_object_bytes: z.max_object(),
            };
            (z.name.clone(), Arc::new(zone))
        })
        .collect()
}

/// A route's compiled cache settings (`None` when its zone does not exist: validation said so).
fn route_cache(
    c: &crate::config::cache::RouteCacheConfig,
    zones: &HashMap<String, Arc<ringgate_http::cache::CacheZone>>,
) -> Option<Arc<ringgate_http::cache::RouteCache>> {
    use ringgate_http::cache::{ClientNoCache, KeyQuery, RouteCache};
    let zone = zones.get(&c.zone)?.clone();
    let lower = |v: &String| -> Box<str> { v.to_ascii_lowercase().into() };
    Some(Arc::new(RouteCache {
        zone,
        rules: ringgate_cache::freshness::Rules {
            default_ttl: c.default_ttl,
            status_ttl: c.status_ttls(),
            shared_authenticated: c.shared_authenticated,
            store_set_cookie: c.store_set_cookie,
            stale_while_revalidate: c.stale_while_revalidate,
            stale_if_error: c.stale_if_error,
            stale_override: c.stale_override,
        },
        key_query: match c.key_query.as_deref() {
            Some("sorted") => KeyQuery::Sorted,
            Some("ignore") => KeyQuery::Ignored,
            _ => KeyQuery::AsSent,
        },
        key_headers: c.key_headers.iter().map(lower).collect(),
        key_cookies: c.key_cookies.iter().map(|v| v.as_str().into()).collect(),
        key_identity: c.key_identity,
        client_no_cache: match c.client_no_cache.as_deref() {
            Some("ignore") => ClientNoCache::Ignore,
            _ => ClientNoCache::Revalidate,
        },
        bypass_header: c.bypass_header.as_ref().map(lower),
        lock_timeout: c.lock_timeout.unwrap_or(std::time::Duration::from_secs(5)),
        tags_header: c
            .tags_header
            .as_ref()
            .map_or_else(|| "surrogate-key".into(), lower),
    }))
}

/// What only compiling finds (certificate and key files, path, host and rewrite templates) in a
/// config that failed validation, so `ringgate check` lists these too. Nothing is resolved,
/// fetched, started or registered; problems validation already reported are not repeated.
fn compile_problems(raw: &RawConfig) -> Vec<String> {
    use ringgate_policies::routing::RouteError;
    let mut errs = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        if let Some(t) = &l.tls {
            let _ = crate::tls::compile(t, i, &mut errs);
        }
    }
    for (i, u) in raw.upstreams.iter().enumerate() {
        let h2 = u.protocol.as_deref() == Some("h2");
        let _ = upstream::upstream_tls(u, i, &upstream::host_rewrite(u), h2, &mut errs);
    }
    let specs = raw.routes.iter().map(|r| route_match(r, ())).collect();
    if let Err(route_errs) = RouteTable::build(specs) {
        for e in route_errs {
            // Duplicate ids, methods, header names and rewrite kinds are validation's.
            if matches!(
                e,
                RouteError::EmptyId { .. }
                    | RouteError::BadPath { .. }
                    | RouteError::BadHost { .. }
                    | RouteError::BadRewrite { .. }
            ) {
                errs.push(format!("routes[{}]: {e}", e.index()));
            }
        }
    }
    errs
}

/// What route `r` matches and how it rewrites the path, with `action` for what it does.
fn route_match<A>(r: &RouteConfig, action: A) -> RouteSpec<A> {
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
    RouteSpec {
        id: r.id.clone(),
        hosts,
        path,
        methods: r.methods.clone(),
        headers,
        priority: r.priority,
        rewrite,
        action,
    }
}

fn route_spec(r: &RouteConfig, raw: &RawConfig, auth: Option<u32>) -> RouteSpec<CompiledRoute> {
    let rewrites = r.strip_prefix || r.rewrite_prefix.is_some() || r.rewrite.is_some();
    let index_of = |name: &str| raw.upstreams.iter().position(|u| u.name == name);
    let upstream = if r.split.is_empty() {
        index_of(&r.upstream).unwrap_or(0)
    } else {
        r.split
            .first()
            .and_then(|s| index_of(&s.upstream))
            .unwrap_or(0)
    };
    let split = (!r.split.is_empty()).then(|| RouteSplit {
        upstreams: r
            .split
            .iter()
            .map(|s| index_of(&s.upstream).unwrap_or(0))
            .collect(),
        on: r.split_on.as_ref().map(hash_on).unwrap_or_default(),
        override_header: r.split_override_header.as_deref().map(Into::into),
    });
    let retry = r.retry.as_ref().map(|rt| RetrySettings {
        attempts: rt.attempts,
        on_connect_failure: rt.on.iter().any(|o| o == "connect_failure"),
        on_reset: rt.on.iter().any(|o| o == "reset"),
        on_timeout: rt.on.iter().any(|o| o == "timeout"),
        on_status: rt.on.iter().filter_map(|o| o.parse().ok()).collect(),
        idempotency_header: rt.idempotency_header.as_deref().map(Into::into),
    });
    let fingerprint = fingerprint_of(&format!("{:?}|{:?}", r.retry, r.split));
    route_match(
        r,
        CompiledRoute {
            settings: RouteSettings {
                id: r.id.as_str().into(),
                response_timeout: r.timeout,
                max_body_bytes: r.max_body_bytes,
                metric: Registry::with(|reg| reg.route(&r.id)),
                server_timing: r.server_timing,
                require_client_cert: r.require_client_cert,
                websocket: r.websocket,
                connect_timeout: r.connect_timeout,
                total_timeout: r.total_timeout,
                body_timeout: r.body_timeout,
                min_body_rate: r.min_body_rate,
                retry,
                split,
                fallback: r.fallback.as_ref().map(|f| Fallback {
                    status: f.status,
                    content_type: f.content_type.as_str().into(),
                    body: f.body.as_bytes().into(),
                }),
                fingerprint,
                auth,
                rate_limit: None,
                forward_path_as_received: r.forward_path == crate::config::ForwardPath::AsReceived,
                // Compiled in `build` once the route's rate limits are known.
                admit: AdmitPlan::default(),
                // Compiled in `build` with the zones.
                cache: None,
            },
            rewrites,
            upstream,
        },
    )
}

fn hash_on(h: &HashOnConfig) -> HashOn {
    if h.identity {
        HashOn::Identity
    } else if h.client_ip {
        HashOn::ClientIp
    } else if let Some(v) = &h.header {
        HashOn::Header(v.as_str().into())
    } else if let Some(v) = &h.cookie {
        HashOn::Cookie(v.as_str().into())
    } else {
        HashOn::None
    }
}

fn route_policy(r: &RouteConfig) -> RoutePolicy {
    let mut p = RoutePolicy {
        split_weights: r.split.iter().map(|s| s.weight).collect(),
        ..RoutePolicy::default()
    };
    if let Some(rt) = &r.retry {
        p.budget = RetryBudgetConfig {
            ratio: rt.budget_ratio,
            min_per_sec: rt.budget_min_per_sec,
            window: rt.budget_window,
        };
        p.backoff_base = rt.backoff;
        p.backoff_max = rt.max_backoff;
    }
    p
}

fn fingerprint_of(v: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl Gateway for Snapshot {
    type Upstream = UpstreamState;
    type Route = RouteState;

    fn listener_tls(&self, listener: usize) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.get(listener)?.as_ref()
    }

    fn listener_policy(&self, listener: usize) -> ringgate_http::gateway::ListenerPolicy {
        self.listener_policies
            .get(listener)
            .copied()
            .unwrap_or_default()
    }

    fn upstream_runtime(&self, up: &UpstreamSet, seed: u64) -> UpstreamState {
        match self.upstream_policies.get(up.index) {
            Some(p) => UpstreamState::new(p, seed, Instant::now()),
            None => UpstreamState::new(
                &UpstreamPolicy {
                    lb: LbKind::RoundRobin,
                    keys: up.endpoints.iter().map(|e| e.to_string()).collect(),
                    weights: vec![1; up.endpoints.len()],
                    outlier: None,
                    breaker: None,
                    health: None,
                },
                seed,
                Instant::now(),
            ),
        }
    }

    fn route_runtime(&self, route: &RouteSettings, seed: u64) -> RouteState {
        let p = self
            .route_policies
            .get(&route.metric)
            .cloned()
            .unwrap_or_default();
        RouteState::new(&p, seed, Instant::now())
    }

    fn upstream(&self, index: usize) -> Option<&UpstreamSet> {
        self.upstreams.get(index)
    }

    type Auth = Option<crate::auth::AuthState>;

    fn auth_runtime(&self) -> Self::Auth {
        let workers = self.workers();
        self.auth.as_ref().map(|a| a.state(workers))
    }

    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &self,
        auth: &mut Self::Auth,
        route: &RouteSettings,
        headers: &[httparse::Header<'_>],
        peer: std::net::IpAddr,
        now_unix: u64,
        waited: bool,
        out: &mut ringgate_http::authn::AuthOutput,
    ) -> ringgate_http::authn::AuthVerdict {
        match (&self.auth, route.auth) {
            (Some(setup), Some(rule)) => {
                let st = auth.get_or_insert_with(|| setup.state(self.workers()));
                setup.check(st, rule as usize, headers, peer, now_unix, waited, out)
            }
            _ => ringgate_http::authn::AuthVerdict::Pass,
        }
    }

    fn auth_poll(&self, auth: &mut Self::Auth, ticket: u64) -> bool {
        match (&self.auth, auth.as_mut()) {
            (Some(setup), Some(st)) => setup.poll(st, ticket),
            _ => true,
        }
    }

    type Limits = Option<CoreLimiter>;

    fn limits_runtime(&self, worker: usize) -> Self::Limits {
        self.limiter.as_ref().map(|s| s.core(worker))
    }

    fn rate_limit(
        &self,
        limits: &mut Self::Limits,
        route: &RouteSettings,
        stage: LimitStage,
        waited: bool,
        headers: &[httparse::Header<'_>],
        peer: std::net::IpAddr,
        auth: &AuthOutput,
        out: &mut Vec<u8>,
    ) -> LimitVerdict {
        let (Some(chain), Some(core)) = (route.rate_limit, limits.as_mut()) else {
            return LimitVerdict::Pass;
        };
        let caller = Caller {
            route: &route.id,
            peer,
            headers,
            client_id: &auth.client_id,
            subject: &auth.subject,
            tenant: &auth.tenant,
            tier: &auth.tier,
        };
        let stage = match stage {
            LimitStage::BeforeAuth => Stage::BeforeAuth,
            LimitStage::AfterAuth => Stage::AfterAuth,
        };
        match core.check(&self.limits, chain as usize, (stage, waited), &caller, out) {
            Decision::Allow => LimitVerdict::Pass,
            Decision::Limit { status, code, .. } => LimitVerdict::Refuse { status, code },
            Decision::Wait { ticket } => LimitVerdict::Wait {
                ticket,
                within: self
                    .limiter
                    .as_ref()
                    .map_or(std::time::Duration::ZERO, |l| l.longest_wait()),
            },
        }
    }

    fn limits_poll(&self, ticket: u64) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.reached(ticket))
    }

    fn limits_tick(&self, limits: &mut Self::Limits) -> std::time::Duration {
        if let Some(core) = limits.as_mut() {
            core.tick();
        }
        self.process.rate_limit.tick
    }

    fn managed_headers(&self) -> &[Box<str>] {
        &self.managed
    }

    fn route<'s>(
        &'s self,
        req: &RequestHead<'_, '_>,
        paths: RequestPaths<'_>,
        upstream_path: &mut Vec<u8>,
    ) -> Result<Routed<'s>, Refusal> {
        let rr = RouteRequest {
            host: req.host.unwrap_or(b""),
            path: paths.matching,
            method: req.method.as_bytes(),
            headers: req.headers,
        };
        let m = self.table.lookup(&rr).ok_or(Refusal::NO_ROUTE)?;
        let action = self.table.action(&m);
        // A rewrite works on the matching path (its captures are spans of it); without one the
        // normalized path goes, or the client's own spelling when the route asks for it (only
        // routes without a rewrite may: validated).
        let forwarded = if action.rewrites {
            paths.matching
        } else if action.settings.forward_path_as_received {
            req.path.as_bytes()
        } else {
            paths.normalized
        };
        self.table
            .write_upstream_path(&m, forwarded, req.query.map(str::as_bytes), upstream_path);
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
