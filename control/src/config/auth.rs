//! `[auth]` (where credentials are checked) and a route's `auth = { ... }` (who may call it),
//! with their defaults and their own checks. That a route's `auth` needs an `[auth]` section is
//! checked across sections, in [`super::cross`].

use super::{is_token_byte, Problems};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
    #[serde(
        default = "default_jwks_refresh",
        with = "ringgate_core::duration::serde_text"
    )]
    pub jwks_refresh: Duration,
    /// Least time between unknown-`kid` refreshes.
    #[serde(
        default = "default_jwks_min_refresh",
        with = "ringgate_core::duration::serde_text"
    )]
    pub jwks_min_refresh: Duration,
    /// Bound on one JWKS fetch (and on how long a request waits for one).
    #[serde(
        default = "default_fetch_timeout",
        with = "ringgate_core::duration::serde_text"
    )]
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
    #[serde(default = "default_max_verifications_per_client")]
    pub max_verifications_per_client: u32,
    /// Signature checks a client may make at once before the rate applies (per process).
    #[serde(default = "default_verification_burst")]
    pub verification_burst: u32,
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
    #[serde(
        default = "default_introspection_timeout",
        with = "ringgate_core::duration::serde_text"
    )]
    pub timeout: Duration,
    /// Active tokens are cached per core this long (at most until their `exp`).
    #[serde(
        default = "default_introspection_cache_ttl",
        with = "ringgate_core::duration::serde_text"
    )]
    pub cache_ttl: Duration,
    /// Tokens the provider called inactive are not asked about again for this long ("0s":
    /// always asked).
    #[serde(
        default = "default_introspection_negative_cache_ttl",
        with = "ringgate_core::duration::serde_text"
    )]
    pub negative_cache_ttl: Duration,
    /// Calls in flight at once (per process).
    #[serde(default = "default_introspection_inflight")]
    pub max_inflight: usize,
    /// Calls in flight or queued per client address (per process); beyond it, 503 at once.
    #[serde(default = "default_introspection_inflight_per_client")]
    pub max_inflight_per_client: usize,
    /// Calls waiting for a free slot (per process), served round-robin by client; beyond it,
    /// 503 at once.
    #[serde(default = "default_introspection_queue")]
    pub queue: usize,
}

/// `[auth.jwt]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms (asymmetric only: RS256/384/512, PS256/384/512, ES256/384, EdDSA).
    #[serde(default = "default_jwt_algorithms")]
    pub algorithms: Vec<String>,
    /// Accepted issuers (empty: not checked).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted audiences (empty: not checked).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(
        default = "default_jwt_leeway",
        with = "ringgate_core::duration::serde_text"
    )]
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
            algorithms: default_jwt_algorithms(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: default_jwt_leeway(),
            tenant_claim: None,
            tier_claim: None,
        }
    }
}

/// `[auth.headers]`: identity headers (any the client sends itself are dropped).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    /// The client id (API key's client, or `client_id`/`azp`).
    #[serde(default = "default_client_id_header")]
    pub client_id: String,
    /// The user (`sub`).
    #[serde(default = "default_user_id_header")]
    pub user_id: String,
    /// The tenant.
    #[serde(default = "default_tenant_id_header")]
    pub tenant_id: String,
    /// The scopes, space separated.
    #[serde(default = "default_scopes_header")]
    pub scopes: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            client_id: default_client_id_header(),
            user_id: default_user_id_header(),
            tenant_id: default_tenant_id_header(),
            scopes: default_scopes_header(),
        }
    }
}

/// A route's `auth = { ... }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    /// `required` (default), `optional` or `none`.
    #[serde(default = "default_route_auth_mode")]
    pub mode: String,
    /// Accepted credentials: `api_key`, `jwt` (default: both).
    #[serde(default = "default_route_auth_methods")]
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

/// A JWKS URL is fetched again every five minutes: key rotations are announced well ahead.
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
/// Tokens naming an unknown `kid` cause at most one refresh per ten seconds.
fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(10)
}
/// Bound on one JWKS fetch.
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(2)
}
/// Verified tokens cached per core.
fn default_token_cache() -> usize {
    10_000
}
/// Full signature checks per client address per second (per process).
fn default_max_verifications_per_client() -> u32 {
    20
}
/// Signature checks a client may make at once before the rate applies.
fn default_verification_burst() -> u32 {
    40
}
/// A slow introspection endpoint fails the request after half a second.
fn default_introspection_timeout() -> Duration {
    Duration::from_millis(500)
}
/// Active tokens are cached this long (at most until their `exp`).
fn default_introspection_cache_ttl() -> Duration {
    Duration::from_secs(30)
}
/// Inactive tokens are not asked about again for this long.
fn default_introspection_negative_cache_ttl() -> Duration {
    Duration::from_secs(5)
}
/// Introspection calls in flight at once (per process).
fn default_introspection_inflight() -> usize {
    64
}
/// Introspection calls in flight or queued per client address (per process).
fn default_introspection_inflight_per_client() -> usize {
    4
}
/// Introspection calls waiting for a free slot (per process).
fn default_introspection_queue() -> usize {
    256
}
/// The asymmetric algorithms identity providers commonly sign with.
fn default_jwt_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
/// Clock skew allowed on `exp` and `nbf`.
fn default_jwt_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_client_id_header() -> String {
    "x-client-id".into()
}
fn default_user_id_header() -> String {
    "x-user-id".into()
}
fn default_tenant_id_header() -> String {
    "x-tenant-id".into()
}
fn default_scopes_header() -> String {
    "x-scopes".into()
}
/// A route with `auth` refuses requests without a valid credential.
fn default_route_auth_mode() -> String {
    "required".into()
}
/// A route with `auth` accepts API keys and JWTs.
fn default_route_auth_methods() -> Vec<String> {
    vec!["api_key".into(), "jwt".into()]
}

/// The algorithms `[auth.jwt] algorithms` may name.
const ACCEPTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl AuthConfig {
    /// The `[auth]` section's own checks; `at` is its path (`auth`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        for (j, alg) in self.jwt.algorithms.iter().enumerate() {
            if !ACCEPTED_ALGORITHMS.contains(&alg.as_str()) {
                p.at(
                    format_args!("{at}.jwt.algorithms[{j}]"),
                    format_args!("{alg:?} is not an accepted asymmetric algorithm"),
                );
            }
        }
        let h = &self.headers;
        for (name, v) in [
            ("client_id", &h.client_id),
            ("user_id", &h.user_id),
            ("tenant_id", &h.tenant_id),
            ("scopes", &h.scopes),
        ] {
            if v.is_empty() || !v.bytes().all(is_token_byte) {
                p.at(
                    format_args!("{at}.headers.{name}"),
                    format_args!("{v:?} is not a header name"),
                );
            }
        }
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            p.at(at, "give jwks_file or jwks_url, not both");
        }
        for (name, url) in [
            ("jwks_url", self.jwks_url.as_deref()),
            (
                "introspection.url",
                self.introspection.as_ref().map(|i| i.url.as_str()),
            ),
        ] {
            if let Some(Err(e)) = url.map(crate::httpc::HttpUrl::parse) {
                p.at(format_args!("{at}.{name}"), e);
            }
        }
        if let Some(ca) = &self.ca {
            if let Err(e) = crate::tls::root_certs(Some(ca)) {
                p.at(format_args!("{at}.ca"), e);
            }
        }
        if self.token_cache == 0 {
            p.at(format_args!("{at}.token_cache"), "at least 1");
        }
        if let Some(i) = &self.introspection {
            if i.max_inflight == 0 || i.max_inflight_per_client == 0 {
                p.at(
                    format_args!("{at}.introspection"),
                    "max_inflight and max_inflight_per_client must be at least 1",
                );
            }
        }
        if self.max_verifications_per_client > 0 && self.verification_burst == 0 {
            p.at(
                format_args!("{at}.verification_burst"),
                "at least 1 when max_verifications_per_client is set",
            );
        }
    }
}

impl RouteAuthConfig {
    /// A route's `auth` on its own (that `[auth]` exists is checked across sections); `at` is
    /// its path (`routes[2].auth`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if !matches!(self.mode.as_str(), "required" | "optional" | "none") {
            p.at(
                format_args!("{at}.mode"),
                format_args!("{:?} is not required, optional or none", self.mode),
            );
        }
        for (j, m) in self.methods.iter().enumerate() {
            if !matches!(m.as_str(), "api_key" | "jwt" | "introspection") {
                p.at(
                    format_args!("{at}.methods[{j}]"),
                    format_args!("{m:?} is not api_key, jwt or introspection"),
                );
            }
        }
        if !self.scopes_any.is_empty() && !self.scopes_all.is_empty() {
            p.at(at, "give scopes_any or scopes_all, not both");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_section_is_checked_field_by_field() {
        let mut p = Problems::default();
        let good: AuthConfig = toml::from_str("").expect("defaults");
        good.validate("auth", &mut p);
        assert!(p.is_empty(), "{p:?}");
        let bad: AuthConfig = toml::from_str(
            "jwks_file = \"k.json\"\njwks_url = \"ftp://x\"\ntoken_cache = 0\n\
             [jwt]\nalgorithms = [\"HS256\"]\n[headers]\nuser_id = \"x user\"\n",
        )
        .expect("parse");
        bad.validate("auth", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "auth.jwt.algorithms[0]: \"HS256\" is not an accepted",
            "auth.headers.user_id: \"x user\" is not a header name",
            "auth: give jwks_file or jwks_url, not both",
            "auth.jwks_url:",
            "auth.token_cache: at least 1",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn a_route_auth_is_checked_on_its_own() {
        let mut p = Problems::default();
        let a: RouteAuthConfig = toml::from_str(
            "mode = \"sometimes\"\nmethods = [\"jwt\", \"cookie\"]\nscopes_any = [\"a\"]\nscopes_all = [\"b\"]\n",
        )
        .expect("parse");
        a.validate("routes[4].auth", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "routes[4].auth.mode: \"sometimes\"",
            "routes[4].auth.methods[1]: \"cookie\"",
            "routes[4].auth: give scopes_any or scopes_all, not both",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }
}
