//! Compiling `[auth]` and the routes' `auth` rules into the request-path authenticator
//! (`ringgate_policies::auth::Authenticator`), wired to this crate's fetchers.
//!
//! Exists because the config types, the files it names and the fetchers (threads, HTTP clients)
//! belong off the request path: here the key file and key set are read, the JWKS and
//! introspection fetchers are started or shared, the JWT policies and route rules are built, and
//! the result is handed to the policies side as plain values ([`AuthParts`]). Every problem is
//! pushed with its config path; files are re-read on every reload, so revoking a key is an edit
//! and a reload.

use crate::authfetch::{Introspector, JwksFetch, JwksSource, PoolLimits};
use crate::config::{AuthConfig, RouteAuthConfig};
use ringgate_policies::auth::{
    Algorithm, AuthMode, AuthParts, Authenticator, ClaimNames, CredentialKind, CredentialKinds,
    IdentityHeaderNames, Jwks, JwtPolicy, JwtPolicySpec, KeyStore, RouteAuth, ScopeRule,
    VerifyLimits,
};
use std::sync::Arc;
use std::time::Duration;

pub use ringgate_policies::auth::AuthState;

/// Authentication as a snapshot holds it: the policies-side authenticator over this crate's
/// key-set source and introspection pool.
pub type SnapshotAuth = Authenticator<JwksSource, Introspector>;

/// How long an active introspection answer is cached when `[auth.introspection]` is absent (the
/// cache is then never filled).
const UNUSED_INTROSPECTION_TTL: Duration = Duration::from_secs(30);

/// Compiles `[auth]`; `route_rules` get indices into the route rules in order. Every problem is
/// pushed to `errs` with its path.
pub fn build(
    cfg: &AuthConfig,
    route_rules: &[&RouteAuthConfig],
    errs: &mut Vec<String>,
) -> SnapshotAuth {
    let keys = api_keys(cfg, errs);
    let jwks_source = jwks_source(cfg, errs);
    let introspector = introspector(cfg, errs);
    let jwks = jwks_file(cfg, errs);
    let algorithms = algorithms(cfg, errs);
    let (policies, routes) = route_auth(cfg, &algorithms, route_rules, errs);
    let intro = cfg.introspection.as_ref();
    let h = &cfg.headers;
    Authenticator::new(AuthParts {
        keys,
        jwks,
        jwks_source,
        fetch_timeout: cfg.fetch_timeout,
        introspector,
        introspection_ttl: intro.map_or(UNUSED_INTROSPECTION_TTL, |i| i.cache_ttl),
        negative_ttl: intro.map_or(Duration::ZERO, |i| i.negative_cache_ttl),
        policies,
        routes,
        headers: IdentityHeaderNames {
            client_id: h.client_id.clone(),
            user_id: h.user_id.clone(),
            tenant_id: h.tenant_id.clone(),
            scopes: h.scopes.clone(),
        },
        token_cache: cfg.token_cache,
        verifications: VerifyLimits {
            per_second: cfg.max_verifications_per_client,
            burst: cfg.verification_burst,
        },
    })
}

/// `auth.api_keys_file`, read and parsed (empty when absent or broken).
fn api_keys(cfg: &AuthConfig, errs: &mut Vec<String>) -> KeyStore {
    let Some(path) = &cfg.api_keys_file else {
        return KeyStore::default();
    };
    match std::fs::read_to_string(path) {
        Ok(text) => match KeyStore::parse(&text) {
            Ok(k) => k,
            Err(es) => {
                for e in es {
                    errs.push(format!("auth.api_keys_file ({path}): {e}"));
                }
                KeyStore::default()
            }
        },
        Err(e) => {
            errs.push(format!("auth.api_keys_file: cannot read {path}: {e}"));
            KeyStore::default()
        }
    }
}

/// `auth.jwks_url`: the shared fetcher for that URL (started when new).
fn jwks_source(cfg: &AuthConfig, errs: &mut Vec<String>) -> Option<Arc<JwksSource>> {
    let url = cfg.jwks_url.as_ref()?;
    let fetch = JwksFetch {
        url: url.clone(),
        refresh: cfg.jwks_refresh,
        min_interval: cfg.jwks_min_refresh,
        timeout: cfg.fetch_timeout,
        ca: cfg.ca.clone(),
    };
    JwksSource::get(&fetch)
        .map_err(|e| errs.push(format!("auth.jwks_url: {e}")))
        .ok()
}

/// `[auth.introspection]`: the endpoint and its bounded pool of calls.
fn introspector(cfg: &AuthConfig, errs: &mut Vec<String>) -> Option<Arc<Introspector>> {
    let i = cfg.introspection.as_ref()?;
    let client = match (&i.client_id, &i.client_secret) {
        (Some(id), Some(secret)) => Some((id.as_str(), secret.as_str())),
        _ => None,
    };
    let limits = PoolLimits {
        max_inflight: i.max_inflight,
        per_client: i.max_inflight_per_client,
        queue: i.queue,
        negative_ttl: i.negative_cache_ttl,
    };
    let ca = cfg.ca.as_deref();
    Introspector::new(&i.url, ca, client, i.timeout, claim_names(cfg), limits)
        .map(Arc::new)
        .map_err(|e| errs.push(format!("auth.introspection.url: {e}")))
        .ok()
}

/// `auth.jwks_file`, read and compiled.
fn jwks_file(cfg: &AuthConfig, errs: &mut Vec<String>) -> Option<Arc<Jwks>> {
    let path = cfg.jwks_file.as_ref()?;
    match std::fs::read(path) {
        Ok(bytes) => match Jwks::parse(&bytes) {
            Ok(j) => Some(Arc::new(j)),
            Err(e) => {
                errs.push(format!("auth.jwks_file ({path}): {e}"));
                None
            }
        },
        Err(e) => {
            errs.push(format!("auth.jwks_file: cannot read {path}: {e}"));
            None
        }
    }
}

/// `auth.jwt.algorithms`, the unknown ones reported.
fn algorithms(cfg: &AuthConfig, errs: &mut Vec<String>) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for a in &cfg.jwt.algorithms {
        match a.parse() {
            Ok(alg) => algorithms.push(alg),
            Err(_) => errs.push(format!("auth.jwt.algorithms: {a:?} is unknown")),
        }
    }
    algorithms
}

fn claim_names(cfg: &AuthConfig) -> ClaimNames {
    ClaimNames {
        tenant: cfg.jwt.tenant_claim.clone(),
        tier: cfg.jwt.tier_claim.clone(),
    }
}

/// The JWT policies the routes need (one per distinct issuers and audiences) and each route's
/// rule, in order.
fn route_auth(
    cfg: &AuthConfig,
    algorithms: &[Algorithm],
    route_rules: &[&RouteAuthConfig],
    errs: &mut Vec<String>,
) -> (Vec<JwtPolicy>, Vec<RouteAuth>) {
    let mut policies = JwtPolicies::default();
    let mut routes = Vec::with_capacity(route_rules.len());
    for (i, r) in route_rules.iter().enumerate() {
        let methods = methods(r);
        let jwt_policy = if methods.contains(CredentialKind::Jwt) {
            policies
                .index_for(cfg, algorithms, r)
                .map_err(|e| errs.push(format!("route auth #{i}: {e}")))
                .ok()
        } else {
            None
        };
        routes.push(RouteAuth {
            mode: match r.mode.as_str() {
                "optional" => AuthMode::Optional,
                "none" => AuthMode::None,
                _ => AuthMode::Required,
            },
            methods,
            scopes: if r.scopes_all.is_empty() {
                ScopeRule::AnyOf(r.scopes_any.iter().map(|s| s.as_str().into()).collect())
            } else {
                ScopeRule::AllOf(r.scopes_all.iter().map(|s| s.as_str().into()).collect())
            },
            jwt_policy,
            keep_credential: r.keep_credential,
        });
    }
    (policies.policies, routes)
}

/// The credential kinds a route accepts.
fn methods(r: &RouteAuthConfig) -> CredentialKinds {
    let mut methods = CredentialKinds::EMPTY;
    for m in &r.methods {
        methods = methods.with(match m.as_str() {
            "api_key" => CredentialKind::ApiKey,
            "introspection" => CredentialKind::Introspection,
            _ => CredentialKind::Jwt,
        });
    }
    methods
}

/// JWT policies built so far, keyed by a route's issuers and audiences.
#[derive(Default)]
struct JwtPolicies {
    policies: Vec<JwtPolicy>,
    keys: Vec<(Vec<String>, Vec<String>)>,
}

impl JwtPolicies {
    /// The index of the policy for route rule `r` (built on first use; a route's empty issuers
    /// or audiences mean `[auth.jwt]`'s).
    fn index_for(
        &mut self,
        cfg: &AuthConfig,
        algorithms: &[Algorithm],
        r: &RouteAuthConfig,
    ) -> Result<usize, ringgate_policies::auth::JwtPolicyError> {
        let key = (r.issuers.clone(), r.audiences.clone());
        if let Some(p) = self.keys.iter().position(|k| *k == key) {
            return Ok(p);
        }
        let or_default = |own: &[String], default: &[String]| {
            if own.is_empty() {
                default.to_vec()
            } else {
                own.to_vec()
            }
        };
        let policy = JwtPolicy::new(JwtPolicySpec {
            algorithms: algorithms.to_vec(),
            issuers: or_default(&r.issuers, &cfg.jwt.issuers),
            audiences: or_default(&r.audiences, &cfg.jwt.audiences),
            leeway: cfg.jwt.leeway,
            required_claims: vec!["exp".into()],
            claims: claim_names(cfg),
        })?;
        self.policies.push(policy);
        self.keys.push(key);
        Ok(self.policies.len() - 1)
    }
}
