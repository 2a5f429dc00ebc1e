//! The config file: listeners, upstreams and routes, as an operator writes them.
//!
//! Three steps, each with one job: [`RawConfig`] is the serde image of the TOML
//! (`deny_unknown_fields`, so a typo is an error, not a silent default); [`RawConfig::validate`]
//! checks what serde cannot and returns *every* problem with the path of its field
//! (`routes[3].upstream: no such upstream "payments"`); [`crate::snapshot::Snapshot::build`]
//! compiles a valid config into the immutable runtime snapshot. A config that fails any step
//! never goes live.
//!
//! Each section lives in its own module with its types, its defaults (named for what they
//! mean) and its own checks; [`cross`] holds the checks that span sections (a route naming an
//! upstream). When the TOML does not fit the schema, [`document`] reads it section by section
//! and entry by entry so that every problem is reported at once, TOML-level ones included.

mod auth;
pub mod cache;
mod cross;
pub mod discovery;
mod document;
mod listeners;
mod operations;
mod resilience;
mod routes;
mod upstreams;

pub use auth::{AuthConfig, IdentityHeaders, IntrospectionConfig, JwtConfig, RouteAuthConfig};
pub use listeners::ListenerConfig;
pub use operations::{AccessLogConfig, AdminConfig, ObservabilityConfig};
pub use resilience::{BreakerSettings, HealthCheckConfig, OutlierSettings};
pub use routes::{
    FallbackConfig, ForwardPath, HeaderConfig, PathConfig, RetryConfig, RouteConfig, SplitConfig,
};
pub use upstreams::{check_endpoint, parse_lb, resolve, HashOnConfig, UpstreamConfig};

use serde::{Deserialize, Serialize};
use std::fmt::Display;

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
    /// How dynamic upstreams find their endpoints (DNS servers, etcd).
    #[serde(default)]
    pub discovery: Option<discovery::DiscoveryConfig>,
    /// Where cached responses live (routes name a zone in their `cache`).
    #[serde(default)]
    pub cache_zones: Vec<cache::CacheZoneConfig>,
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
    /// The text is not TOML (a syntax error: its position and cause), or cannot be written as
    /// TOML.
    #[error("config does not parse: {0}")]
    Parse(String),
    /// The config does not fit the schema or is not valid: every problem found, one per line.
    #[error("invalid config ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Every problem found so far, each one line `path: what is wrong`.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records that the field at `path` is wrong because of `what`.
    pub fn at(&mut self, path: impl Display, what: impl Display) {
        self.0.push(format!("{path}: {what}"));
    }

    /// Records problems already written as `path: what` lines.
    pub fn extend(&mut self, lines: impl IntoIterator<Item = String>) {
        self.0.extend(lines);
    }

    /// No problem found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

/// Where the entries of one list section sit in the file: `index[i]` is the file index of the
/// `i`-th entry that deserialized. Empty means every entry did, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Slots {
    index: Vec<usize>,
    in_file: usize,
    /// The section is in the file but is not a list (already reported as such).
    not_a_list: bool,
}

impl Slots {
    /// The file index of the `i`-th deserialized entry.
    pub(crate) fn of(&self, i: usize) -> usize {
        self.index.get(i).copied().unwrap_or(i)
    }

    /// Entries in the file, deserialized or not (`parsed` of them did).
    fn in_file(&self, parsed: usize) -> usize {
        self.in_file.max(parsed)
    }

    /// The section is missing or empty (a section that is not a list is neither).
    fn is_empty(&self, parsed: usize) -> bool {
        self.in_file(parsed) == 0 && !self.not_a_list
    }
}

/// What the semantic checks must know about entries left out because they did not deserialize,
/// so paths keep naming the file's entries and a reference to an unread entry is not reported as
/// a reference to nothing. The default describes a config that deserialized whole.
#[derive(Debug, Default, Clone)]
pub(crate) struct Placement {
    listeners: Slots,
    upstreams: Slots,
    routes: Slots,
    rate_limits: Slots,
    /// Names of `[[upstreams]]` entries that did not deserialize.
    unread_upstreams: Vec<String>,
    /// Names of `[[rate_limits]]` entries that did not deserialize.
    unread_limits: Vec<String>,
    /// `[auth]` is in the file but did not deserialize.
    auth_unread: bool,
}

impl RawConfig {
    /// Parses config text (no semantic validation). A syntax error is [`ConfigError::Parse`];
    /// a document that does not fit the schema is [`ConfigError::Invalid`] with every problem
    /// found: each wrong type and unknown field with its path, line and column, and the
    /// semantic problems of the parts that could be read.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let whole = match toml::from_str(text) {
            Ok(raw) => return Ok(raw),
            Err(e) => e,
        };
        let read = document::read(text).map_err(ConfigError::Parse)?;
        let mut problems = read.problems;
        if problems.is_empty() {
            // Read by section the document fits: keep the whole-document reading's word.
            return Err(ConfigError::Parse(whole.to_string()));
        }
        read.raw.check(&read.placement, &mut problems);
        Err(ConfigError::Invalid(problems.into_vec()))
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
        let mut problems = Problems::default();
        self.check(&Placement::default(), &mut problems);
        problems.into_result()
    }

    /// Every section's own checks, then the checks across sections.
    fn check(&self, at: &Placement, p: &mut Problems) {
        if at.listeners.is_empty(self.listeners.len()) {
            p.at("listeners", "at least one listener is needed");
        }
        for (i, l) in self.listeners.iter().enumerate() {
            l.validate(&format!("listeners[{}]", at.listeners.of(i)), p);
        }
        upstreams::check_names(&self.upstreams, &at.upstreams, p);
        for (i, u) in self.upstreams.iter().enumerate() {
            u.validate(&format!("upstreams[{}]", at.upstreams.of(i)), p);
        }
        if let Some(a) = &self.admin {
            a.validate("admin", p);
        }
        if let Some(a) = &self.auth {
            a.validate("auth", p);
        }
        if let Some(l) = &self.access_log {
            l.validate("access_log", p);
        }
        if let Some(d) = &self.discovery {
            d.validate("discovery", p);
        }
        for (i, z) in self.cache_zones.iter().enumerate() {
            z.validate(&format!("cache_zones[{i}]"), p);
        }
        for (i, r) in self.routes.iter().enumerate() {
            r.validate(&format!("routes[{}]", at.routes.of(i)), p);
        }
        cross::check(self, at, p);
    }
}

/// A header name (an RFC 9110 token).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
