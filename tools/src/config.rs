//! The config file: listeners, upstreams and routes, as an operator writes them.
//!
//! Three steps, each with one job: [`RawConfig`] is the serde image of the TOML
//! (`deny_unknown_fields`, so a typo is an error, not a silent default); [`RawConfig::validate`]
//! checks what serde cannot and returns *every* problem with the path of its field
//! (`routes[3].upstream: no such upstream "payments"`); [`crate::snapshot::Snapshot::build`]
//! compiles a valid config into the immutable runtime snapshot. A config that fails any step
//! never goes live.

use ringgate_core::duration::serde_text_opt;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The whole config file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// A label for this config (shown in the start line and, later, the admin API).
    #[serde(default)]
    pub version: Option<String>,
    /// Where clients connect.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Where requests go.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Which requests go where.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The admin API listener (none when absent).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The access log (none when absent).
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// What the gateway measures and adds to requests.
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// Credentials: API keys and JWT verification (routes opt in with `auth`).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Where rate limits are reconciled (Redis or in-process) and what all limits share.
    #[serde(default)]
    pub rate_limit: Option<crate::ratelimit::config::RateLimitConfig>,
    /// The rate limits routes refer to by name.
    #[serde(default)]
    pub rate_limits: Vec<crate::ratelimit::config::LimitConfig>,
}

/// `[auth]`: where credentials are checked against.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The API key file (`[[keys]]` entries from `ringgate keys create`); re-read on reload.
    #[serde(default)]
    pub api_keys_file: Option<String>,
    /// A JWKS file (the identity provider's public keys); re-read on reload.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// A JWKS URL (`https://` or `http://`), fetched off the hot path: at start, every
    /// `jwks_refresh`, and when a token names an unknown `kid` (single-flight, at most once per
    /// `jwks_min_refresh`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Scheduled JWKS refresh.
    #[serde(default = "five_min", with = "ringgate_core::duration::serde_text")]
    pub jwks_refresh: Duration,
    /// Least time between unknown-`kid` refreshes.
    #[serde(default = "ten_s", with = "ringgate_core::duration::serde_text")]
    pub jwks_min_refresh: Duration,
    /// Bound on one JWKS fetch (and on how long a request waits for one).
    #[serde(default = "two_s", with = "ringgate_core::duration::serde_text")]
    pub fetch_timeout: Duration,
    /// PEM bundle of the CAs an `https://` `jwks_url` or introspection URL must chain to
    /// (default: the host's trusted roots).
    #[serde(default)]
    pub ca: Option<String>,
    /// RFC 7662 introspection of opaque bearer tokens.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// JWT checks shared by every route (a route may narrow issuers and audiences).
    #[serde(default)]
    pub jwt: JwtConfig,
    /// Names of the identity headers sent upstream.
    #[serde(default)]
    pub headers: IdentityHeaders,
    /// Verified tokens cached per core (by SHA-256 of the token, until their expiry).
    #[serde(default = "default_token_cache")]
    pub token_cache: usize,
    /// Full JWT signature checks (cache misses) allowed per client address per second, per
    /// process (divided among the workers); beyond it a 401 `verification_rate_limited`
    /// without the check. 0: no cap.
    #[serde(default = "default_verifications")]
    pub max_verifications_per_client: u32,
    /// Signature checks a client may make at once before the rate applies (per process).
    #[serde(default = "default_verification_burst")]
    pub verification_burst: u32,
}

fn default_verifications() -> u32 {
    20
}

fn default_verification_burst() -> u32 {
    40
}

fn two_s() -> Duration {
    Duration::from_secs(2)
}

/// `[auth.introspection]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint (`https://` or `http://`).
    pub url: String,
    /// The gateway's client id at the provider (HTTP Basic with the secret).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The gateway's client secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A slow or down provider fails the request with 503 after this.
    #[serde(default = "half_s", with = "ringgate_core::duration::serde_text")]
    pub timeout: Duration,
    /// Active tokens are cached per core this long (at most until their `exp`).
    #[serde(default = "thirty_s", with = "ringgate_core::duration::serde_text")]
    pub cache_ttl: Duration,
    /// Tokens the provider called inactive are not asked about again for this long ("0s":
    /// always asked).
    #[serde(default = "five_s", with = "ringgate_core::duration::serde_text")]
    pub negative_cache_ttl: Duration,
    /// Calls in flight at once (per process).
    #[serde(default = "default_introspection_inflight")]
    pub max_inflight: usize,
    /// Calls in flight or queued per client address (per process); beyond it, 503 at once.
    #[serde(default = "default_introspection_per_client")]
    pub max_inflight_per_client: usize,
    /// Calls waiting for a free slot (per process), served round-robin by client; beyond it,
    /// 503 at once.
    #[serde(default = "default_introspection_queue")]
    pub queue: usize,
}

fn default_introspection_inflight() -> usize {
    64
}

fn default_introspection_per_client() -> usize {
    4
}

fn default_introspection_queue() -> usize {
    256
}

fn half_s() -> Duration {
    Duration::from_millis(500)
}

fn default_token_cache() -> usize {
    10_000
}

/// `[auth.jwt]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms (asymmetric only: RS256/384/512, PS256/384/512, ES256/384, EdDSA).
    #[serde(default = "default_algs")]
    pub algorithms: Vec<String>,
    /// Accepted issuers (empty: not checked).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted audiences (empty: not checked).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "sixty_s", with = "ringgate_core::duration::serde_text")]
    pub leeway: Duration,
    /// The claim holding the tenant.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// The claim holding the rate-limit tier.
    #[serde(default)]
    pub tier_claim: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithms: default_algs(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: sixty_s(),
            tenant_claim: None,
            tier_claim: None,
        }
    }
}

fn default_algs() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn sixty_s() -> Duration {
    Duration::from_secs(60)
}

/// `[auth.headers]`: identity headers (any the client sends itself are dropped).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    /// The client id (API key's client, or `client_id`/`azp`).
    #[serde(default = "h_client")]
    pub client_id: String,
    /// The user (`sub`).
    #[serde(default = "h_user")]
    pub user_id: String,
    /// The tenant.
    #[serde(default = "h_tenant")]
    pub tenant_id: String,
    /// The scopes, space separated.
    #[serde(default = "h_scopes")]
    pub scopes: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            client_id: h_client(),
            user_id: h_user(),
            tenant_id: h_tenant(),
            scopes: h_scopes(),
        }
    }
}

fn h_client() -> String {
    "x-client-id".into()
}
fn h_user() -> String {
    "x-user-id".into()
}
fn h_tenant() -> String {
    "x-tenant-id".into()
}
fn h_scopes() -> String {
    "x-scopes".into()
}

/// A route's `auth = { ... }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    /// `required` (default), `optional` or `none`.
    #[serde(default = "required")]
    pub mode: String,
    /// Accepted credentials: `api_key`, `jwt` (default: both).
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// The identity needs at least one of these scopes.
    #[serde(default)]
    pub scopes_any: Vec<String>,
    /// The identity needs all of these scopes.
    #[serde(default)]
    pub scopes_all: Vec<String>,
    /// Narrow the accepted JWT issuers for this route.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Narrow the accepted JWT audiences for this route.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Forward the credential header upstream (default: strip it).
    #[serde(default)]
    pub keep_credential: bool,
}

fn required() -> String {
    "required".into()
}
fn default_methods() -> Vec<String> {
    vec!["api_key".into(), "jwt".into()]
}

/// `[admin]`: the admin API's own listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port`; keep it on loopback unless a token protects it.
    pub address: String,
    /// A bearer token every admin request must carry (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token: Option<String>,
}

/// `[access_log]`: one JSON line per request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `"stdout"` or a file path (reopened on SIGUSR1, for rotation).
    pub path: String,
    /// Batches the log thread may have queued before workers drop lines (and count them).
    #[serde(default = "default_log_queue")]
    pub queue_batches: usize,
}

fn default_log_queue() -> usize {
    1024
}

/// `[observability]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Count per-route and per-upstream metrics (served on the admin API's `/metrics`).
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Assign `X-Request-Id` and W3C `traceparent` to every request, and return the request id.
    #[serde(default = "yes")]
    pub request_ids: bool,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics: true,
            request_ids: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// `[[listeners]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs.
    #[serde(default)]
    pub name: Option<String>,
    /// `ip:port` to listen on.
    pub address: String,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Merge runs of `/` in request paths before routing and forwarding (default true).
    #[serde(default = "yes")]
    pub merge_slashes: bool,
    /// `%2F`, `%5C`, `%00` and `\` in request paths: `"reject"` (400, the default) or `"keep"`
    /// (kept percent-encoded, never a separator).
    #[serde(default = "default_escaped_separators")]
    pub escaped_separators: String,
    /// Header names with `_`: `"drop"` (the default), `"reject"` (400) or `"allow"`.
    #[serde(default = "default_underscores")]
    pub underscores_in_headers: String,
}

fn default_escaped_separators() -> String {
    "reject".into()
}

fn default_underscores() -> String {
    "drop".into()
}

impl ListenerConfig {
    /// A cleartext listener on `address` with the default request-head policy.
    pub fn at(address: String) -> Self {
        Self {
            name: None,
            address,
            tls: None,
            merge_slashes: true,
            escaped_separators: default_escaped_separators(),
            underscores_in_headers: default_underscores(),
        }
    }

    /// The listener's request-head policy (values validated by [`RawConfig::validate`]).
    pub fn policy(&self) -> ringgate_http::gateway::ListenerPolicy {
        use ringgate_http::codec::{EscapedSeparators, PathPolicy};
        use ringgate_http::gateway::{ListenerPolicy, UnderscoreHeaders};
        ListenerPolicy {
            path: PathPolicy {
                merge_slashes: self.merge_slashes,
                escaped_separators: if self.escaped_separators == "keep" {
                    EscapedSeparators::Keep
                } else {
                    EscapedSeparators::Reject
                },
            },
            underscores: match self.underscores_in_headers.as_str() {
                "allow" => UnderscoreHeaders::Allow,
                "reject" => UnderscoreHeaders::Reject,
                _ => UnderscoreHeaders::Drop,
            },
        }
    }
}

/// `[[upstreams]]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name routes refer to.
    pub name: String,
    /// `host:port` endpoints (names are resolved when the config is loaded, off the hot path).
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

/// `[upstreams.health_check]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path probed with GET (a 2xx or 3xx answer is healthy); over HTTP/2 for
    /// `protocol = "h2"` upstreams. Unused with `grpc`.
    #[serde(default = "root_path")]
    pub path: String,
    /// Probe with the gRPC health protocol (`grpc.health.v1.Health/Check`; healthy when the
    /// answer is `SERVING`) instead of a GET. Only for `protocol = "h2"` upstreams.
    #[serde(default)]
    pub grpc: bool,
    /// The service name asked about with `grpc` (default `""`: the server as a whole).
    #[serde(default)]
    pub grpc_service: String,
    /// Time between probes of an endpoint.
    #[serde(
        default = "default_hc_interval",
        with = "ringgate_core::duration::serde_text"
    )]
    pub interval: Duration,
    /// A probe not answered within this fails.
    #[serde(
        default = "default_hc_timeout",
        with = "ringgate_core::duration::serde_text"
    )]
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy endpoint healthy.
    #[serde(default = "two")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
    /// The Host header of probes (default: the endpoint).
    #[serde(default)]
    pub host: Option<String>,
}

fn root_path() -> String {
    "/".to_string()
}

fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_hc_timeout() -> Duration {
    Duration::from_secs(1)
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}

/// `[upstreams.outlier]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutlierSettings {
    /// Consecutive 5xx or failed exchanges seen by one core that eject an endpoint on that core
    /// (0: off; `consecutive_5xx_per_core`, the old name `consecutive_5xx` is accepted).
    #[serde(
        default = "five",
        rename = "consecutive_5xx_per_core",
        alias = "consecutive_5xx"
    )]
    pub consecutive_5xx: u32,
    /// Consecutive connect failures seen by one core that eject an endpoint on that core (0: off;
    /// `consecutive_connect_failures_per_core`, `consecutive_connect_failures` is accepted).
    #[serde(
        default = "three",
        rename = "consecutive_connect_failures_per_core",
        alias = "consecutive_connect_failures"
    )]
    pub consecutive_connect_failures: u32,
    /// First ejection time (grows with each ejection).
    #[serde(default = "thirty_s", with = "ringgate_core::duration::serde_text")]
    pub base_ejection: Duration,
    /// Longest ejection.
    #[serde(default = "five_min", with = "ringgate_core::duration::serde_text")]
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, in percent.
    #[serde(default = "fifty")]
    pub max_ejected_percent: u8,
}

fn five() -> u32 {
    5
}
fn thirty_s() -> Duration {
    Duration::from_secs(30)
}
fn five_min() -> Duration {
    Duration::from_secs(300)
}
fn fifty() -> u8 {
    50
}

/// `[upstreams.circuit_breaker]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Error ratio (0..1) over the window that opens the breaker.
    #[serde(default = "half")]
    pub error_ratio: f64,
    /// Fewest requests one core sees in the window before its ratio counts
    /// (`min_requests_per_core`; the old name `min_requests` is accepted).
    #[serde(
        default = "twenty",
        rename = "min_requests_per_core",
        alias = "min_requests"
    )]
    pub min_requests: u32,
    /// The sliding window.
    #[serde(default = "ten_s", with = "ringgate_core::duration::serde_text")]
    pub window: Duration,
    /// How long it stays open before probing.
    #[serde(default = "five_s", with = "ringgate_core::duration::serde_text")]
    pub open_for: Duration,
    /// Probes let through at once while half-open.
    #[serde(default = "one")]
    pub half_open_probes: u32,
}

fn half() -> f64 {
    0.5
}
fn twenty() -> u32 {
    20
}
fn ten_s() -> Duration {
    Duration::from_secs(10)
}
fn five_s() -> Duration {
    Duration::from_secs(5)
}
fn one() -> u32 {
    1
}

/// `[routes.retry]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Further attempts after the first, each to another endpoint.
    #[serde(default = "one")]
    pub attempts: u32,
    /// What is retried: `connect_failure`, `reset`, `timeout`, and statuses `502`, `503`, `504`.
    #[serde(default = "default_retry_on")]
    pub on: Vec<String>,
    /// First backoff (full jitter, doubling).
    #[serde(
        default = "twenty_five_ms",
        with = "ringgate_core::duration::serde_text"
    )]
    pub backoff: Duration,
    /// Largest backoff.
    #[serde(default = "two_fifty_ms", with = "ringgate_core::duration::serde_text")]
    pub max_backoff: Duration,
    /// Retries at most this share of the route's requests over the window.
    #[serde(default = "point_two")]
    pub budget_ratio: f64,
    /// Retries always allowed per second on each core (so a quiet route can retry;
    /// `budget_min_per_sec_per_core`, the old name `budget_min_per_sec` is accepted).
    #[serde(
        default = "ten",
        rename = "budget_min_per_sec_per_core",
        alias = "budget_min_per_sec"
    )]
    pub budget_min_per_sec: u32,
    /// The budget's window.
    #[serde(default = "ten_s", with = "ringgate_core::duration::serde_text")]
    pub budget_window: Duration,
    /// Non-idempotent requests carrying this header (an idempotency key) are retried too.
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

fn default_retry_on() -> Vec<String> {
    ["connect_failure", "reset", "503"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn twenty_five_ms() -> Duration {
    Duration::from_millis(25)
}
fn two_fifty_ms() -> Duration {
    Duration::from_millis(250)
}
fn point_two() -> f64 {
    0.2
}
fn ten() -> u32 {
    10
}

/// One backend of a route's traffic split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The upstream's name.
    pub upstream: String,
    /// Its weight.
    pub weight: u32,
}

/// `[routes.fallback]`: the answer while the upstream's breaker is open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Status (default 503).
    #[serde(default = "s503")]
    pub status: u16,
    /// Body.
    pub body: String,
    /// Content type (default application/json).
    #[serde(default = "json_ct")]
    pub content_type: String,
}

fn s503() -> u16 {
    503
}
fn json_ct() -> String {
    "application/json".into()
}

/// `[[routes]]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique route id (logs, metrics, errors).
    pub id: String,
    /// Host patterns: `api.example.com` or `*.example.com`; none = any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How the path matches: exactly one of `exact`, `prefix`, `template`.
    pub path: PathConfig,
    /// Methods; none = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions, all of which must hold.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    /// Higher wins over more specific.
    #[serde(default)]
    pub priority: i32,
    /// Remove the matched prefix before forwarding (prefix routes).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the matched prefix with this (prefix routes).
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Forward to this path, `{name}` filled from the template's captures.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// The upstream's name (or give `split`).
    #[serde(default)]
    pub upstream: String,
    /// A weighted split between upstreams, instead of `upstream`.
    #[serde(default)]
    pub split: Vec<SplitConfig>,
    /// What the split hashes (default: the client IP): sticky per key.
    #[serde(default)]
    pub split_on: Option<HashOnConfig>,
    /// A request header whose value names the split upstream to use (testing a canary).
    #[serde(default)]
    pub split_override_header: Option<String>,
    /// Retries.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Upstream connect timeout (default: the profile's `timeouts.connect`).
    #[serde(default, with = "serde_text_opt")]
    pub connect_timeout: Option<Duration>,
    /// Deadline for the whole exchange, request to last response byte.
    #[serde(default, with = "serde_text_opt")]
    pub total_timeout: Option<Duration>,
    /// The request body must arrive whole within this, counted from its head (default: the
    /// profile's `timeouts.body`; `"0s"`: none).
    #[serde(default, with = "serde_text_opt")]
    pub body_timeout: Option<Duration>,
    /// After the profile's `timeouts.body_grace`, the request body must arrive at this many
    /// bytes per second on average (default: the profile's `timeouts.min_body_rate`; 0: none).
    #[serde(default)]
    pub min_body_rate: Option<u64>,
    /// The answer while the upstream's breaker is open.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    /// Who may call this route (needs `[auth]`).
    #[serde(default)]
    pub auth: Option<RouteAuthConfig>,
    /// Upstream response-head timeout (default: the profile's `timeouts.response`).
    #[serde(default, with = "serde_text_opt")]
    pub timeout: Option<Duration>,
    /// Largest request body accepted (413 beyond); default unlimited.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Add `Server-Timing` with the gateway's and the upstream's durations to responses.
    #[serde(default)]
    pub server_timing: bool,
    /// Refuse with 403 requests from connections without a verified client certificate (on a
    /// TLS listener whose `client_auth` is `optional`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Proxy WebSocket upgrades on this route (default true).
    #[serde(default = "yes")]
    pub websocket: bool,
    /// The rate limits (by name) this route applies, after `[rate_limit] global`.
    #[serde(default)]
    pub rate_limits: Vec<String>,
    /// Add `RateLimit-*` headers to allowed responses too (refusals always carry them).
    #[serde(default)]
    pub rate_limit_headers: bool,
    /// The path sent upstream: `"normalized"` (the default: the spelling the route matched) or
    /// `"as_received"` (the client's spelling; routes without a rewrite only).
    #[serde(default)]
    pub forward_path: ForwardPath,
}

/// Which spelling of the path a route forwards.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ForwardPath {
    /// The normalized path (or its rewrite).
    #[default]
    Normalized,
    /// The client's own spelling (routing still uses the normalized one).
    AsReceived,
}

/// `path = { prefix = "/api" }` and its siblings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// The path exactly.
    #[serde(default)]
    pub exact: Option<String>,
    /// Paths under this prefix, at a segment boundary.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A template such as `/users/{id}/orders` or `/files/{*rest}`.
    #[serde(default)]
    pub template: Option<String>,
}

/// One header condition: `{ name = "x-tenant", present = true }`, `{ name, exact = "v" }` or
/// `{ name, prefix = "v" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name (case-insensitive).
    pub name: String,
    /// The header must be present.
    #[serde(default)]
    pub present: Option<bool>,
    /// The value must be exactly this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value must start with this.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// Why a config cannot be used: every problem, each with its path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema.
    #[error("config does not parse: {0}")]
    Parse(String),
    /// The config parses but is not valid.
    #[error("invalid config ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl RawConfig {
    /// Parses config text (no validation).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads and parses a config file.
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Checks everything serde cannot; returns every problem with its path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if self.listeners.is_empty() {
            errs.push("listeners: at least one listener is needed".to_string());
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.address.parse::<SocketAddr>().is_err() {
                errs.push(format!(
                    "listeners[{i}].address: {:?} is not ip:port",
                    l.address
                ));
            }
            if !matches!(l.escaped_separators.as_str(), "reject" | "keep") {
                errs.push(format!(
                    "listeners[{i}].escaped_separators: {:?} is not \"reject\" or \"keep\"",
                    l.escaped_separators
                ));
            }
            if !matches!(
                l.underscores_in_headers.as_str(),
                "drop" | "reject" | "allow"
            ) {
                errs.push(format!(
                    "listeners[{i}].underscores_in_headers: {:?} is not \"drop\", \"reject\" or \"allow\"",
                    l.underscores_in_headers
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if u.name.is_empty() {
                errs.push(format!("upstreams[{i}].name: must not be empty"));
            }
            if !names.insert(u.name.as_str()) {
                errs.push(format!(
                    "upstreams[{i}].name: {:?} is defined twice",
                    u.name
                ));
            }
            if u.endpoints.is_empty() {
                errs.push(format!(
                    "upstreams[{i}].endpoints: at least one endpoint is needed"
                ));
            }
            for (j, e) in u.endpoints.iter().enumerate() {
                // Shape only: names are resolved once, when the snapshot is built.
                if let Err(why) = check_endpoint(e) {
                    errs.push(format!("upstreams[{i}].endpoints[{j}]: {why}"));
                }
            }
            if !u.weights.is_empty() && u.weights.len() != u.endpoints.len() {
                errs.push(format!(
                    "upstreams[{i}].weights: give one weight per endpoint ({} endpoints)",
                    u.endpoints.len()
                ));
            }
            if let Some(b) = &u.balance {
                if parse_lb(b).is_none() {
                    errs.push(format!("upstreams[{i}].balance: {b:?} is not one of round_robin, weighted_round_robin, least_requests, peak_ewma, consistent_hash"));
                }
            }
            if let Some(h) = &u.hash_on {
                if let Err(e) = check_hash_on(h) {
                    errs.push(format!("upstreams[{i}].hash_on: {e}"));
                }
            }
            if u.max_requests == Some(0) || u.max_connections == Some(0) {
                errs.push(format!(
                    "upstreams[{i}]: max_requests_per_core and max_connections_per_core must be at least 1"
                ));
            }
            if let Some(hc) = &u.health_check {
                if !hc.path.starts_with('/') {
                    errs.push(format!(
                        "upstreams[{i}].health_check.path: must start with /"
                    ));
                }
                if hc.interval < Duration::from_millis(10)
                    || hc.timeout.is_zero()
                    || hc.timeout > hc.interval.max(Duration::from_secs(60))
                {
                    errs.push(format!(
                        "upstreams[{i}].health_check: interval at least 10ms, timeout above 0"
                    ));
                }
                if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
                    errs.push(format!(
                        "upstreams[{i}].health_check: thresholds must be at least 1"
                    ));
                }
                if hc.grpc && u.protocol.as_deref() != Some("h2") {
                    errs.push(format!(
                        "upstreams[{i}].health_check.grpc: gRPC health checks need protocol = \"h2\""
                    ));
                }
                if hc.grpc_service.len() > 200 {
                    errs.push(format!(
                        "upstreams[{i}].health_check.grpc_service: at most 200 bytes"
                    ));
                }
            }
            if let Some(o) = &u.outlier {
                if o.max_ejected_percent > 100
                    || o.base_ejection.is_zero()
                    || o.max_ejection < o.base_ejection
                {
                    errs.push(format!("upstreams[{i}].outlier: max_ejected_percent <= 100, 0 < base_ejection <= max_ejection"));
                }
            }
            if let Some(b) = &u.circuit_breaker {
                if !(b.error_ratio > 0.0 && b.error_ratio <= 1.0)
                    || b.window.is_zero()
                    || b.open_for.is_zero()
                    || b.half_open_probes == 0
                {
                    errs.push(format!("upstreams[{i}].circuit_breaker: 0 < error_ratio <= 1, window and open_for above 0, half_open_probes >= 1"));
                }
            }
            if let Some(h) = &u.host_header {
                if h.is_empty()
                    || h.bytes().any(|b| {
                        b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/' || b == b'@'
                    })
                {
                    errs.push(format!(
                        "upstreams[{i}].host_header: {h:?} is not a valid host"
                    ));
                }
            }
        }
        if let Some(a) = &self.admin {
            if a.address.parse::<SocketAddr>().is_err() {
                errs.push(format!("admin.address: {:?} is not ip:port", a.address));
            }
            if a.token
                .as_deref()
                .is_some_and(|t| t.len() < 16 || t.bytes().any(|b| !b.is_ascii_graphic()))
            {
                errs.push("admin.token: at least 16 visible ASCII characters".to_string());
            }
        }
        if let Some(a) = &self.auth {
            for (j, alg) in a.jwt.algorithms.iter().enumerate() {
                if !matches!(
                    alg.as_str(),
                    "RS256"
                        | "RS384"
                        | "RS512"
                        | "PS256"
                        | "PS384"
                        | "PS512"
                        | "ES256"
                        | "ES384"
                        | "EdDSA"
                ) {
                    errs.push(format!(
                        "auth.jwt.algorithms[{j}]: {alg:?} is not an accepted asymmetric algorithm"
                    ));
                }
            }
            let h = &a.headers;
            for (name, v) in [
                ("client_id", &h.client_id),
                ("user_id", &h.user_id),
                ("tenant_id", &h.tenant_id),
                ("scopes", &h.scopes),
            ] {
                if v.is_empty() || !v.bytes().all(is_token_byte) {
                    errs.push(format!("auth.headers.{name}: {v:?} is not a header name"));
                }
            }
            if a.jwks_file.is_some() && a.jwks_url.is_some() {
                errs.push("auth: give jwks_file or jwks_url, not both".to_string());
            }
            for (name, url) in [
                ("jwks_url", a.jwks_url.as_deref()),
                (
                    "introspection.url",
                    a.introspection.as_ref().map(|i| i.url.as_str()),
                ),
            ] {
                if let Some(u) = url {
                    if let Err(e) = crate::httpc::HttpUrl::parse(u) {
                        errs.push(format!("auth.{name}: {e}"));
                    }
                }
            }
            if let Some(ca) = &a.ca {
                if let Err(e) = crate::tls::root_certs(Some(ca)) {
                    errs.push(format!("auth.ca: {e}"));
                }
            }
            if a.token_cache == 0 {
                errs.push("auth.token_cache: at least 1".to_string());
            }
            if let Some(i) = &a.introspection {
                if i.max_inflight == 0 || i.max_inflight_per_client == 0 {
                    errs.push(
                        "auth.introspection: max_inflight and max_inflight_per_client must be at least 1"
                            .to_string(),
                    );
                }
            }
            if a.max_verifications_per_client > 0 && a.verification_burst == 0 {
                errs.push(
                    "auth.verification_burst: at least 1 when max_verifications_per_client is set"
                        .to_string(),
                );
            }
        }
        if let Some(l) = &self.access_log {
            if l.path.is_empty() {
                errs.push("access_log.path: \"stdout\" or a file path".to_string());
            }
            if l.queue_batches == 0 {
                errs.push("access_log.queue_batches: must be at least 1".to_string());
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if !ids.insert(r.id.as_str()) {
                errs.push(format!("{at}.id: {:?} is used twice", r.id));
            }
            if r.split.is_empty() {
                if !names.contains(r.upstream.as_str()) {
                    errs.push(format!("{at}.upstream: no such upstream {:?}", r.upstream));
                }
            } else {
                if !r.upstream.is_empty() {
                    errs.push(format!("{at}: give either upstream or split, not both"));
                }
                for (j, sp) in r.split.iter().enumerate() {
                    if !names.contains(sp.upstream.as_str()) {
                        errs.push(format!(
                            "{at}.split[{j}].upstream: no such upstream {:?}",
                            sp.upstream
                        ));
                    }
                }
                if r.split.iter().all(|s| s.weight == 0) {
                    errs.push(format!("{at}.split: at least one weight above 0"));
                }
            }
            if let Some(h) = &r.split_on {
                if let Err(e) = check_hash_on(h) {
                    errs.push(format!("{at}.split_on: {e}"));
                }
            }
            if let Some(rt) = &r.retry {
                for (j, on) in rt.on.iter().enumerate() {
                    let ok = matches!(on.as_str(), "connect_failure" | "reset" | "timeout")
                        || on.parse::<u16>().is_ok_and(|s| (500..600).contains(&s));
                    if !ok {
                        errs.push(format!("{at}.retry.on[{j}]: {on:?} is not connect_failure, reset, timeout or a 5xx status"));
                    }
                }
                if !(0.0..=10.0).contains(&rt.budget_ratio)
                    || rt.attempts > 10
                    || rt.max_backoff < rt.backoff
                {
                    errs.push(format!("{at}.retry: attempts <= 10, 0 <= budget_ratio <= 10, backoff <= max_backoff"));
                }
            }
            if let Some(a) = &r.auth {
                if self.auth.is_none() {
                    errs.push(format!("{at}.auth: needs an [auth] section"));
                }
                if !matches!(a.mode.as_str(), "required" | "optional" | "none") {
                    errs.push(format!(
                        "{at}.auth.mode: {:?} is not required, optional or none",
                        a.mode
                    ));
                }
                for (j, m) in a.methods.iter().enumerate() {
                    if !matches!(m.as_str(), "api_key" | "jwt" | "introspection") {
                        errs.push(format!(
                            "{at}.auth.methods[{j}]: {m:?} is not api_key, jwt or introspection"
                        ));
                    }
                    if m == "introspection"
                        && self
                            .auth
                            .as_ref()
                            .is_some_and(|a| a.introspection.is_none())
                    {
                        errs.push(format!(
                            "{at}.auth.methods[{j}]: introspection needs [auth.introspection]"
                        ));
                    }
                }
                if !a.scopes_any.is_empty() && !a.scopes_all.is_empty() {
                    errs.push(format!(
                        "{at}.auth: give scopes_any or scopes_all, not both"
                    ));
                }
            }
            if let Some(f) = &r.fallback {
                if !(200..600).contains(&f.status)
                    || f.content_type.bytes().any(|b| b.is_ascii_control())
                {
                    errs.push(format!(
                        "{at}.fallback: status 200..599 and a plain content_type"
                    ));
                }
            }
            let kinds = [&r.path.exact, &r.path.prefix, &r.path.template]
                .iter()
                .filter(|p| p.is_some())
                .count();
            if kinds != 1 {
                errs.push(format!(
                    "{at}.path: give exactly one of exact, prefix, template"
                ));
            }
            let rewrites = usize::from(r.strip_prefix)
                + usize::from(r.rewrite_prefix.is_some())
                + usize::from(r.rewrite.is_some());
            if rewrites > 1 {
                errs.push(format!(
                    "{at}: strip_prefix, rewrite_prefix and rewrite exclude each other"
                ));
            }
            if r.forward_path == ForwardPath::AsReceived && rewrites > 0 {
                errs.push(format!(
                    "{at}.forward_path: \"as_received\" cannot be combined with a rewrite"
                ));
            }
            if (r.strip_prefix || r.rewrite_prefix.is_some()) && r.path.prefix.is_none() {
                errs.push(format!(
                    "{at}: strip_prefix and rewrite_prefix need a prefix path"
                ));
            }
            for (j, m) in r.methods.iter().enumerate() {
                if m.is_empty()
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
                {
                    errs.push(format!(
                        "{at}.methods[{j}]: {m:?} is not an upper-case method token"
                    ));
                }
            }
            for (j, h) in r.headers.iter().enumerate() {
                let n = usize::from(h.present == Some(true))
                    + usize::from(h.exact.is_some())
                    + usize::from(h.prefix.is_some());
                if n != 1 {
                    errs.push(format!(
                        "{at}.headers[{j}]: give exactly one of present = true, exact, prefix"
                    ));
                }
                if h.name.is_empty() || !h.name.bytes().all(is_token_byte) {
                    errs.push(format!(
                        "{at}.headers[{j}].name: {:?} is not a header name",
                        h.name
                    ));
                }
            }
            if r.timeout.is_some_and(|t| {
                t < Duration::from_millis(1) || t > ringgate_core::profile::MAX_TIMEOUT
            }) {
                errs.push(format!("{at}.timeout: must be between 1ms and 24h"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
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

fn check_hash_on(h: &HashOnConfig) -> Result<(), String> {
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

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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

    const GOOD: &str = r#"
        version = "t1"
        [[listeners]]
        address = "127.0.0.1:0"
        [[upstreams]]
        name = "users"
        endpoints = ["127.0.0.1:9001"]
        [[routes]]
        id = "users"
        path = { prefix = "/users" }
        upstream = "users"
        timeout = "2s"
    "#;

    #[test]
    fn a_good_config_validates() {
        let c = RawConfig::parse(GOOD).expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.routes[0].timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn per_core_counts_say_so_and_the_old_names_still_parse() {
        let body = |names: [&str; 6]| {
            format!(
                "{GOOD}\n[[upstreams]]\nname = \"b\"\nendpoints = [\"127.0.0.1:9002\"]\n{} = 7\n{} = 8\n\
                 [upstreams.outlier]\n{} = 2\n{} = 3\n[upstreams.circuit_breaker]\n{} = 9\n\
                 [[routes]]\nid = \"b\"\npath = {{ prefix = \"/b\" }}\nupstream = \"b\"\n\
                 [routes.retry]\n{} = 4\n",
                names[0], names[1], names[2], names[3], names[4], names[5]
            )
        };
        let new = RawConfig::parse(&body([
            "max_requests_per_core",
            "max_connections_per_core",
            "consecutive_5xx_per_core",
            "consecutive_connect_failures_per_core",
            "min_requests_per_core",
            "budget_min_per_sec_per_core",
        ]))
        .expect("new names");
        let old = RawConfig::parse(&body([
            "max_requests",
            "max_connections",
            "consecutive_5xx",
            "consecutive_connect_failures",
            "min_requests",
            "budget_min_per_sec",
        ]))
        .expect("old names");
        for c in [&new, &old] {
            let u = &c.upstreams[1];
            assert_eq!((u.max_requests, u.max_connections), (Some(7), Some(8)));
            let o = u.outlier.as_ref().expect("outlier");
            assert_eq!((o.consecutive_5xx, o.consecutive_connect_failures), (2, 3));
            assert_eq!(u.circuit_breaker.as_ref().map(|b| b.min_requests), Some(9));
            let r = c.routes[1].retry.as_ref().expect("retry");
            assert_eq!(r.budget_min_per_sec, 4);
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = RawConfig::parse(&GOOD.replace("timeout =", "timeuot ="))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeuot"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            [[listeners]]
            address = "nowhere"
            [[upstreams]]
            name = "a"
            endpoints = ["127.0.0.1"]
            [[routes]]
            id = "r"
            path = { prefix = "/x", exact = "/y" }
            upstream = "payments"
            methods = ["get"]
            [[routes]]
            id = "r"
            path = { exact = "/z" }
            upstream = "a"
            strip_prefix = true
            headers = [{ name = "x" }]
        "#;
        let e = RawConfig::parse(text)
            .expect("parse")
            .validate()
            .unwrap_err()
            .to_string();
        for want in [
            "listeners[0].address",
            "upstreams[0].endpoints[0]: \"127.0.0.1\" has no port",
            "routes[0].upstream: no such upstream \"payments\"",
            "routes[0].path: give exactly one",
            "routes[0].methods[0]",
            "routes[1].id: \"r\" is used twice",
            "routes[1]: strip_prefix and rewrite_prefix need a prefix path",
            "routes[1].headers[0]: give exactly one",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }
}
