//! `[[routes]]`: which requests go where, and what happens on the way (rewrites, retries,
//! splits, the fallback answer, body limits). A route's own checks are here; that the upstreams
//! and rate limits it names exist is checked across sections, in [`super::cross`].

use super::upstreams::check_hash_on;
use super::{is_token_byte, HashOnConfig, Problems, RouteAuthConfig};
use ringgate_core::duration::serde_text_opt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[routes.retry]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Further attempts after the first, each to another endpoint.
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// What is retried: `connect_failure`, `reset`, `timeout`, and statuses `502`, `503`, `504`.
    #[serde(default = "default_retry_on")]
    pub on: Vec<String>,
    /// First backoff (full jitter, doubling).
    #[serde(
        default = "default_retry_backoff",
        with = "ringgate_core::duration::serde_text"
    )]
    pub backoff: Duration,
    /// Largest backoff.
    #[serde(
        default = "default_retry_max_backoff",
        with = "ringgate_core::duration::serde_text"
    )]
    pub max_backoff: Duration,
    /// Retries at most this share of the route's requests over the window.
    #[serde(default = "default_retry_budget_ratio")]
    pub budget_ratio: f64,
    /// Retries always allowed per second on each core (so a quiet route can retry;
    /// `budget_min_per_sec_per_core`, the old name `budget_min_per_sec` is accepted).
    #[serde(
        default = "default_retry_budget_min_per_sec",
        rename = "budget_min_per_sec_per_core",
        alias = "budget_min_per_sec"
    )]
    pub budget_min_per_sec: u32,
    /// The budget's window.
    #[serde(
        default = "default_retry_budget_window",
        with = "ringgate_core::duration::serde_text"
    )]
    pub budget_window: Duration,
    /// Non-idempotent requests carrying this header (an idempotency key) are retried too.
    #[serde(default)]
    pub idempotency_header: Option<String>,
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
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    /// Body.
    pub body: String,
    /// Content type (default application/json).
    #[serde(default = "default_fallback_content_type")]
    pub content_type: String,
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
    /// Response caching in a `[[cache_zones]]` zone.
    #[serde(default)]
    pub cache: Option<super::cache::RouteCacheConfig>,
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
    #[serde(default = "default_websocket")]
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

/// One further attempt, to another endpoint.
fn default_retry_attempts() -> u32 {
    1
}
/// Failures that are safe and useful to retry.
fn default_retry_on() -> Vec<String> {
    ["connect_failure", "reset", "503"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
/// The first backoff (full jitter, doubling).
fn default_retry_backoff() -> Duration {
    Duration::from_millis(25)
}
/// The largest backoff.
fn default_retry_max_backoff() -> Duration {
    Duration::from_millis(250)
}
/// Retries add at most a fifth to a route's requests, so they cannot swamp a struggling upstream.
fn default_retry_budget_ratio() -> f64 {
    0.2
}
/// Retries always allowed per second on each core, so a quiet route can retry.
fn default_retry_budget_min_per_sec() -> u32 {
    10
}
/// The retry budget's window.
fn default_retry_budget_window() -> Duration {
    Duration::from_secs(10)
}
/// The fallback answers 503 unless told otherwise.
fn default_fallback_status() -> u16 {
    503
}
/// The fallback body is JSON unless told otherwise.
fn default_fallback_content_type() -> String {
    "application/json".into()
}
/// Routes proxy WebSocket upgrades unless told otherwise.
fn default_websocket() -> bool {
    true
}

impl RouteConfig {
    /// This route's own checks; `at` is its path (`routes[3]`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        self.check_targets(at, p);
        if let Some(c) = &self.cache {
            c.validate(&format!("{at}.cache"), p);
        }
        if let Some(rt) = &self.retry {
            rt.validate(&format!("{at}.retry"), p);
        }
        if let Some(a) = &self.auth {
            a.validate(&format!("{at}.auth"), p);
        }
        if let Some(f) = &self.fallback {
            if !(200..600).contains(&f.status)
                || f.content_type.bytes().any(|b| b.is_ascii_control())
            {
                p.at(
                    format_args!("{at}.fallback"),
                    "status 200..599 and a plain content_type",
                );
            }
        }
        self.check_path(at, p);
        self.check_conditions(at, p);
        if self.timeout.is_some_and(|t| {
            t < Duration::from_millis(1) || t > ringgate_core::profile::MAX_TIMEOUT
        }) {
            p.at(format_args!("{at}.timeout"), "must be between 1ms and 24h");
        }
    }

    /// `upstream` or `split` (the names are checked across sections), and `split_on`.
    fn check_targets(&self, at: &str, p: &mut Problems) {
        if !self.split.is_empty() {
            if !self.upstream.is_empty() {
                p.at(at, "give either upstream or split, not both");
            }
            if self.split.iter().all(|s| s.weight == 0) {
                p.at(format_args!("{at}.split"), "at least one weight above 0");
            }
        }
        if let Some(h) = &self.split_on {
            if let Err(e) = check_hash_on(h) {
                p.at(format_args!("{at}.split_on"), e);
            }
        }
    }

    /// The path match and what may rewrite the forwarded path.
    fn check_path(&self, at: &str, p: &mut Problems) {
        let kinds = [&self.path.exact, &self.path.prefix, &self.path.template]
            .iter()
            .filter(|k| k.is_some())
            .count();
        if kinds != 1 {
            p.at(
                format_args!("{at}.path"),
                "give exactly one of exact, prefix, template",
            );
        }
        let rewrites = usize::from(self.strip_prefix)
            + usize::from(self.rewrite_prefix.is_some())
            + usize::from(self.rewrite.is_some());
        if rewrites > 1 {
            p.at(
                at,
                "strip_prefix, rewrite_prefix and rewrite exclude each other",
            );
        }
        if self.forward_path == ForwardPath::AsReceived && rewrites > 0 {
            p.at(
                format_args!("{at}.forward_path"),
                "\"as_received\" cannot be combined with a rewrite",
            );
        }
        if (self.strip_prefix || self.rewrite_prefix.is_some()) && self.path.prefix.is_none() {
            p.at(at, "strip_prefix and rewrite_prefix need a prefix path");
        }
    }

    /// Methods and header conditions.
    fn check_conditions(&self, at: &str, p: &mut Problems) {
        for (j, m) in self.methods.iter().enumerate() {
            if m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
            {
                p.at(
                    format_args!("{at}.methods[{j}]"),
                    format_args!("{m:?} is not an upper-case method token"),
                );
            }
        }
        for (j, h) in self.headers.iter().enumerate() {
            let n = usize::from(h.present == Some(true))
                + usize::from(h.exact.is_some())
                + usize::from(h.prefix.is_some());
            if n != 1 {
                p.at(
                    format_args!("{at}.headers[{j}]"),
                    "give exactly one of present = true, exact, prefix",
                );
            }
            if h.name.is_empty() || !h.name.bytes().all(is_token_byte) {
                p.at(
                    format_args!("{at}.headers[{j}].name"),
                    format_args!("{:?} is not a header name", h.name),
                );
            }
        }
    }
}

impl RetryConfig {
    /// The retry policy's own checks; `at` is its path (`routes[3].retry`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        for (j, on) in self.on.iter().enumerate() {
            let ok = matches!(on.as_str(), "connect_failure" | "reset" | "timeout")
                || on.parse::<u16>().is_ok_and(|s| (500..600).contains(&s));
            if !ok {
                p.at(
                    format_args!("{at}.on[{j}]"),
                    format_args!("{on:?} is not connect_failure, reset, timeout or a 5xx status"),
                );
            }
        }
        if !(0.0..=10.0).contains(&self.budget_ratio)
            || self.attempts > 10
            || self.max_backoff < self.backoff
        {
            p.at(
                at,
                "attempts <= 10, 0 <= budget_ratio <= 10, backoff <= max_backoff",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> RouteConfig {
        toml::from_str(&format!("id = \"r\"\nupstream = \"u\"\n{text}")).expect("parse")
    }

    #[test]
    fn a_good_route_passes() {
        let mut p = Problems::default();
        route("path = { prefix = \"/a\" }\nstrip_prefix = true\nmethods = [\"GET\"]\n")
            .validate("routes[0]", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn each_route_rule_names_its_path() {
        let mut p = Problems::default();
        route(
            "path = { exact = \"/a\" }\nrewrite = \"/b\"\nstrip_prefix = true\n\
             forward_path = \"as_received\"\nmethods = [\"get\"]\ntimeout = \"0s\"\n\
             split = [{ upstream = \"v\", weight = 0 }]\nheaders = [{ name = \"x y\", exact = \"1\", prefix = \"2\" }]\n\
             fallback = { status = 99, body = \"\" }\n\
             [retry]\nattempts = 11\non = [\"404\"]\n",
        )
        .validate("routes[7]", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "routes[7]: give either upstream or split, not both",
            "routes[7].split: at least one weight above 0",
            "routes[7].retry.on[0]: \"404\"",
            "routes[7].retry: attempts <= 10",
            "routes[7].fallback: status 200..599",
            "routes[7]: strip_prefix, rewrite_prefix and rewrite exclude each other",
            "routes[7].forward_path:",
            "routes[7]: strip_prefix and rewrite_prefix need a prefix path",
            "routes[7].methods[0]: \"get\"",
            "routes[7].headers[0]: give exactly one",
            "routes[7].headers[0].name: \"x y\"",
            "routes[7].timeout: must be between 1ms and 24h",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn route_defaults_are_what_their_names_say() {
        let r = route("path = { prefix = \"/\" }\n[retry]\n[fallback]\nbody = \"{}\"\n");
        assert!(r.websocket);
        let rt = r.retry.expect("retry");
        assert_eq!(
            (rt.attempts, rt.budget_ratio, rt.budget_min_per_sec),
            (1, 0.2, 10)
        );
        assert_eq!(rt.on, ["connect_failure", "reset", "503"]);
        let f = r.fallback.expect("fallback");
        assert_eq!(
            (f.status, f.content_type.as_str()),
            (503, "application/json")
        );
    }
}
