//! What the proxy engine asks of the compiled config: "where does this request go?".
//!
//! The engine knows HTTP and sockets but no policy. A config snapshot (built in `ringgate-policies`
//! and wired in `ringgate-control`) implements [`Gateway`]: given a parsed request head it either names a
//! route and its upstream, or refuses with a gateway-made response. Everything a route needs at
//! request time is compiled into [`RouteSettings`] and [`UpstreamSet`] when the snapshot is built,
//! so the hot path reads plain fields, never raw config.

use crate::authn::{AuthOutput, AuthVerdict, LimitStage, LimitVerdict};
use crate::codec::{PathPolicy, RequestHead};
use crate::error::Refusal;
use crate::resilience::{
    Fallback, HashOn, RetrySettings, RouteRuntime, RouteSplit, UpstreamRuntime,
};
use std::net::SocketAddr;
use std::time::Duration;

/// A route's request-time settings.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// The route id (logs, metrics).
    pub id: Box<str>,
    /// Upstream response-head timeout; `None` = the profile's default.
    pub response_timeout: Option<Duration>,
    /// Largest request body accepted (413 beyond); `None` = unlimited.
    pub max_body_bytes: Option<u64>,
    /// Stable metric id of the route (see [`crate::metrics::Registry`]).
    pub metric: u32,
    /// Add `Server-Timing` (gateway and upstream durations) to responses.
    pub server_timing: bool,
    /// Refuse (403 `client_certificate_required`) a request whose connection presented no
    /// verified client certificate (for listeners where certificates are optional).
    pub require_client_cert: bool,
    /// WebSocket upgrades are proxied (else the upgrade is stripped and the request goes as a
    /// plain one).
    pub websocket: bool,
    /// Upstream connect timeout; `None` = the profile's.
    pub connect_timeout: Option<Duration>,
    /// Whole-exchange deadline (first byte to last byte of the response); `None` = none.
    pub total_timeout: Option<Duration>,
    /// The request body's total deadline; `None` = the profile's, zero = none.
    pub body_timeout: Option<Duration>,
    /// The request body's minimum rate (bytes/s after the grace); `None` = the profile's,
    /// zero = none.
    pub min_body_rate: Option<u64>,
    /// Retries; `None` = only the engine's own retry of a stale pooled connection.
    pub retry: Option<RetrySettings>,
    /// A weighted split between upstreams (then [`Routed::upstream`] is the first of them).
    pub split: Option<RouteSplit>,
    /// What to answer while the upstream's breaker is open (default: 503 JSON).
    pub fallback: Option<Fallback>,
    /// Changes whenever the route's per-core state depends on changes (retry budget, split).
    pub fingerprint: u64,
    /// The route's authentication rule (an index the snapshot understands); `None`: none.
    pub auth: Option<u32>,
    /// The route's chain of rate limits (an index the snapshot understands); `None`: none.
    pub rate_limit: Option<u32>,
    /// Forward the path as the client spelled it instead of its normalized form (routing still
    /// matches the normalized path; only for routes without a rewrite).
    pub forward_path_as_received: bool,
    /// The admission phases the route runs, in order: compiled from the fields above by
    /// [`AdmitPlan::compile`] when the snapshot is built.
    pub admit: AdmitPlan,
    /// Response caching (the cache phase runs after admission).
    pub cache: Option<std::sync::Arc<crate::cache::RouteCache>>,
}

/// One policy phase of admission. Each has the same shape in the engine
/// (`engine/request/admit.rs`: it continues, refuses or waits), and a route runs only those its
/// policies need, in the order of its [`AdmitPlan`]; a new admission policy is a new variant and
/// its function, without editing the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitPhase {
    /// Rate limits keyed without identity (client IP, header, route): before authentication, so
    /// that refused credentials spend them.
    LimitsBeforeAuth,
    /// The route's authentication rule (API key, JWT, introspection...).
    Authenticate,
    /// The verified client certificate's identity, and the route's demand for one.
    ClientCertificate,
    /// Rate limits keyed by the identity authentication gave.
    LimitsAfterAuth,
}

/// The admission phases of a route, in the order they run, compiled once per route into the
/// snapshot (a few bytes inline: no allocation, no dynamic dispatch per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitPlan {
    phases: [AdmitPhase; 4],
    len: u8,
}

impl Default for AdmitPlan {
    /// The plan of a route without authentication or limits: the client certificate phase only
    /// (a verified certificate still names the client).
    fn default() -> Self {
        AdmitPlan {
            phases: [AdmitPhase::ClientCertificate; 4],
            len: 1,
        }
    }
}

impl AdmitPlan {
    /// The phases `route`'s policies need, in their order.
    pub fn compile(route: &RouteSettings) -> Self {
        let mut plan = AdmitPlan {
            phases: [AdmitPhase::ClientCertificate; 4],
            len: 0,
        };
        let limited = route.rate_limit.is_some();
        let wanted = [
            (limited, AdmitPhase::LimitsBeforeAuth),
            (route.auth.is_some(), AdmitPhase::Authenticate),
            (true, AdmitPhase::ClientCertificate),
            (limited, AdmitPhase::LimitsAfterAuth),
        ];
        for (on, phase) in wanted {
            if on {
                plan.phases[usize::from(plan.len)] = phase;
                plan.len += 1;
            }
        }
        plan
    }

    /// The phases, in order.
    pub fn phases(&self) -> &[AdmitPhase] {
        &self.phases[..usize::from(self.len)]
    }
}

/// What a listener does with header names that contain `_`.
///
/// CGI, WSGI, PHP and many frameworks turn both `X-User-Id` and `X_User_Id` into
/// `HTTP_X_USER_ID`, so a client could spoof a header the gateway manages by spelling it with
/// underscores. nginx drops such names by default, as does this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// Not forwarded (the default).
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Forwarded, except those that name a header the gateway manages once `_` reads as `-`.
    Allow,
}

/// The spellings of a request's path the router works with.
#[derive(Debug, Clone, Copy)]
pub struct RequestPaths<'a> {
    /// The normalized path: what is forwarded when the route does not rewrite.
    pub normalized: &'a [u8],
    /// The normalized path without `;parameters`: what routes match and rewrites work on.
    pub matching: &'a [u8],
}

/// How a listener treats request heads before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerPolicy {
    /// Path normalization.
    pub path: PathPolicy,
    /// Header names with underscores.
    pub underscores: UnderscoreHeaders,
}

/// How the upstream request's Host header is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    /// The client's Host, unchanged.
    Keep,
    /// A fixed value.
    Set(Box<str>),
    /// The chosen endpoint's `ip:port`.
    Endpoint,
}

/// TLS towards an upstream's endpoints.
#[derive(Clone)]
pub struct UpstreamTls {
    /// Trust anchors, client certificate, ALPN `http/1.1`, resumption.
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The name sent as SNI and verified in the upstream's certificate.
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// A digest, never 0, of everything a handshake under these settings depends on (trust
    /// anchors, client certificate and key, server name, ALPN): pooled connections are reused
    /// only under an equal key (see [`crate::pool::ConnKey`]).
    pub key: u64,
}

impl UpstreamSet {
    /// The pool key of a connection to `ep` made for this upstream.
    pub fn conn_key(&self, ep: SocketAddr) -> crate::pool::ConnKey {
        crate::pool::ConnKey {
            addr: ep,
            transport: self.tls.as_ref().map_or(0, |t| t.key),
        }
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A set of upstream endpoints a route sends to.
#[derive(Debug, Clone)]
pub struct UpstreamSet {
    /// Position in the snapshot's upstream list (indexes per-core state such as the RR cursor).
    pub index: usize,
    /// The upstream's name.
    pub name: Box<str>,
    /// Its endpoints (resolved addresses).
    pub endpoints: Vec<SocketAddr>,
    /// The Host header policy.
    pub host: HostRewrite,
    /// Stable metric id of the upstream (see [`crate::metrics::Registry`]).
    pub metric: u32,
    /// What consistent hashing keys on.
    pub hash_on: HashOn,
    /// Requests in flight to this upstream per core before 503 `upstream_overloaded`.
    pub max_requests: Option<u32>,
    /// Connections (in use and idle) to this upstream per core before 503 `upstream_overloaded`.
    pub max_connections: Option<u32>,
    /// TLS to the endpoints (`None`: cleartext).
    pub tls: Option<UpstreamTls>,
    /// The endpoints speak HTTP/2 (h2c prior knowledge, or ALPN `h2` over TLS), with at most
    /// this many streams per connection; `None`: HTTP/1.1.
    pub h2_streams: Option<u32>,
    /// Changes whenever anything per-core state depends on changes (endpoints, weights,
    /// policies): a worker keeps its state for the upstream across reloads while it is equal.
    pub fingerprint: u64,
}

/// A routing decision.
pub struct Routed<'s> {
    /// The matched route.
    pub route: &'s RouteSettings,
    /// Its upstream.
    pub upstream: &'s UpstreamSet,
}

/// A compiled config snapshot, as the engine sees it.
pub trait Gateway: Send + Sync + 'static {
    /// Per-core state of one upstream.
    type Upstream: UpstreamRuntime;
    /// Per-core state of one route.
    type Route: RouteRuntime;

    /// Fresh per-core state for `up` (`seed` differs per core).
    fn upstream_runtime(&self, up: &UpstreamSet, seed: u64) -> Self::Upstream;

    /// Fresh per-core state for `route` (`seed` differs per core).
    fn route_runtime(&self, route: &RouteSettings, seed: u64) -> Self::Route;

    /// The upstream at snapshot index `index` (split backends).
    fn upstream(&self, index: usize) -> Option<&UpstreamSet>;

    /// Per-core authentication state (verified-token caches); kept across reloads.
    type Auth: 'static;

    /// Fresh per-core authentication state.
    fn auth_runtime(&self) -> Self::Auth;

    /// Authenticates and authorizes a request on `route` (whose `auth` is set); on
    /// [`AuthVerdict::Pass`] `out` holds what to forward. `waited` says this request already
    /// waited once: the answer must then be final (never [`AuthVerdict::Wait`] again). `peer` is
    /// the client's address: work a client can make the gateway do (signature checks,
    /// introspection calls) is bounded per client.
    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &self,
        auth: &mut Self::Auth,
        route: &RouteSettings,
        headers: &[httparse::Header<'_>],
        peer: std::net::IpAddr,
        now_unix: u64,
        waited: bool,
        out: &mut AuthOutput,
    ) -> AuthVerdict;

    /// Whether the work a [`AuthVerdict::Wait`] named by `ticket` is done.
    fn auth_poll(&self, auth: &mut Self::Auth, ticket: u64) -> bool;

    /// Per-core rate-limit state (buckets, the channel to the reconciler); kept across reloads.
    type Limits: 'static;

    /// Fresh per-core rate-limit state for worker `worker`.
    fn limits_runtime(&self, worker: usize) -> Self::Limits;

    /// Judges a request on `route` (whose `rate_limit` is set) by the route's limits of `stage`:
    /// [`LimitStage::BeforeAuth`] before authentication (`auth` is then empty), then
    /// [`LimitStage::AfterAuth`] with what authentication found. Header lines for the response
    /// (`RateLimit-*`, `Retry-After`) go into `out`, the same buffer for both stages. `waited`
    /// says this request already waited once ([`LimitVerdict::Wait`]): the answer must then be
    /// final.
    #[allow(clippy::too_many_arguments)]
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
    ) -> LimitVerdict;

    /// Whether what a [`LimitVerdict::Wait`] named by `ticket` waits for is done.
    fn limits_poll(&self, ticket: u64) -> bool {
        let _ = ticket;
        true
    }

    /// The per-core side of the reconcile tick (apply grants, report spending); returns when to
    /// tick next.
    fn limits_tick(&self, limits: &mut Self::Limits) -> Duration;

    /// Header names (lower case) removed from every upstream request: the identity headers
    /// only the gateway may set.
    fn managed_headers(&self) -> &[Box<str>];

    /// Routes `req` by `paths` (see [`crate::codec::normalize_path`]). On success the upstream
    /// request path (rewritten, with the query) has been appended to `upstream_path`.
    fn route<'s>(
        &'s self,
        req: &RequestHead<'_, '_>,
        paths: RequestPaths<'_>,
        upstream_path: &mut Vec<u8>,
    ) -> Result<Routed<'s>, Refusal>;

    /// How many upstreams the snapshot has (sizes per-core state).
    fn upstream_count(&self) -> usize;

    /// The TLS config of listener `listener` (its position in the config), or `None` for a
    /// cleartext listener. Taken per new connection from the worker's current snapshot.
    fn listener_tls(&self, listener: usize) -> Option<&std::sync::Arc<rustls::ServerConfig>> {
        let _ = listener;
        None
    }

    /// How listener `listener` treats request heads (path normalization, underscores).
    fn listener_policy(&self, listener: usize) -> ListenerPolicy {
        let _ = listener;
        ListenerPolicy::default()
    }
}
