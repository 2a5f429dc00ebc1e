//! Authentication as a snapshot compiles and runs it: the key store, the JWT key set and
//! policies, each route's rule, and the per-request check the engine calls.
//!
//! Built with the snapshot (files re-read on every reload, so revoking a key is an edit and a
//! reload), shared read-only by every core. The per-core part is only the verified-token cache.
//! Identity headers are written with values restricted to visible ASCII: a claim cannot smuggle
//! a line break into the upstream request.

use crate::config::{AuthConfig, RouteAuthConfig};
use ringgate_http::authn::{AuthOutput, AuthVerdict};
use ringgate_http::hygiene::push_header;
use ringgate_http::resilience::key_hash;
use ringgate_policies::auth::{
    authorize, extract, www_authenticate, www_authenticate_forbidden, AuthFailure, AuthMode,
    ClaimNames, Credential, CredentialKind, CredentialKinds, Identity, Jwks, JwtPolicy,
    JwtPolicySpec, KeyStore, RouteAuth, ScopeRule, TokenCache,
};
use std::time::Duration;

/// Everything a snapshot needs to authenticate.
pub struct AuthSetup {
    keys: KeyStore,
    jwks: Option<Jwks>,
    policies: Vec<JwtPolicy>,
    routes: Vec<RouteAuth>,
    headers: [Box<str>; 4],
    token_cache: usize,
}

/// Per-core state: verified tokens.
pub struct AuthState {
    tokens: TokenCache,
}

impl AuthSetup {
    /// Compiles `[auth]`; `route_rules` get indices into [`AuthSetup::rule`] in order. Every
    /// problem is pushed to `errs` with its path.
    pub fn build(
        cfg: &AuthConfig,
        route_rules: &[&RouteAuthConfig],
        errs: &mut Vec<String>,
    ) -> Option<Self> {
        let keys = match &cfg.api_keys_file {
            None => KeyStore::default(),
            Some(path) => match std::fs::read_to_string(path) {
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
            },
        };
        let jwks = match &cfg.jwks_file {
            None => None,
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => match Jwks::parse(&bytes) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        errs.push(format!("auth.jwks_file ({path}): {e}"));
                        None
                    }
                },
                Err(e) => {
                    errs.push(format!("auth.jwks_file: cannot read {path}: {e}"));
                    None
                }
            },
        };
        let mut algorithms = Vec::new();
        for a in &cfg.jwt.algorithms {
            match a.parse() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => errs.push(format!("auth.jwt.algorithms: {a:?} is unknown")),
            }
        }
        let spec = |issuers: &[String], audiences: &[String]| JwtPolicySpec {
            algorithms: algorithms.clone(),
            issuers: if issuers.is_empty() {
                cfg.jwt.issuers.clone()
            } else {
                issuers.to_vec()
            },
            audiences: if audiences.is_empty() {
                cfg.jwt.audiences.clone()
            } else {
                audiences.to_vec()
            },
            leeway: cfg.jwt.leeway,
            required_claims: vec!["exp".into()],
            claims: ClaimNames {
                tenant: cfg.jwt.tenant_claim.clone(),
                tier: cfg.jwt.tier_claim.clone(),
            },
        };
        let mut policies: Vec<JwtPolicy> = Vec::new();
        let mut policy_keys: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        let mut routes = Vec::new();
        for (i, r) in route_rules.iter().enumerate() {
            let mut methods = CredentialKinds::EMPTY;
            for m in &r.methods {
                methods = methods.with(match m.as_str() {
                    "api_key" => CredentialKind::ApiKey,
                    _ => CredentialKind::Jwt,
                });
            }
            let jwt_policy = if methods.contains(CredentialKind::Jwt) {
                let key = (r.issuers.clone(), r.audiences.clone());
                match policy_keys.iter().position(|k| *k == key) {
                    Some(p) => Some(p),
                    None => match JwtPolicy::new(spec(&r.issuers, &r.audiences)) {
                        Ok(p) => {
                            policies.push(p);
                            policy_keys.push(key);
                            Some(policies.len() - 1)
                        }
                        Err(e) => {
                            errs.push(format!("route auth #{i}: {e}"));
                            None
                        }
                    },
                }
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
        let h = &cfg.headers;
        Some(AuthSetup {
            keys,
            jwks,
            policies,
            routes,
            headers: [
                h.client_id.to_ascii_lowercase().into(),
                h.user_id.to_ascii_lowercase().into(),
                h.tenant_id.to_ascii_lowercase().into(),
                h.scopes.to_ascii_lowercase().into(),
            ],
            token_cache: cfg.token_cache,
        })
    }

    /// The identity header names (lower case), dropped from every client request.
    pub fn identity_headers(&self) -> &[Box<str>] {
        &self.headers
    }

    /// Fresh per-core state.
    pub fn state(&self) -> AuthState {
        AuthState {
            tokens: TokenCache::new(self.token_cache, Duration::from_secs(3600)),
        }
    }

    /// Authenticates a request for route rule `rule`.
    pub fn check(
        &self,
        st: &mut AuthState,
        rule: usize,
        headers: &[httparse::Header<'_>],
        now_unix: u64,
        out: &mut AuthOutput,
    ) -> AuthVerdict {
        let Some(ra) = self.routes.get(rule) else {
            return AuthVerdict::Pass;
        };
        let presented = match extract(headers) {
            Ok(p) => p,
            Err(f) => return refuse(ra, &f, None),
        };
        let kind = presented.as_ref().map(|p| p.credential.kind());
        let cred = match ra.screen(presented.map(|p| p.credential)) {
            Ok(Some(c)) => c,
            Ok(None) => return AuthVerdict::Pass,
            Err(f) => return refuse(ra, &f, kind),
        };
        let identity: &Identity = match cred {
            Credential::ApiKey(k) => match self.keys.verify(k, now_unix) {
                Ok(i) => i,
                Err(f) => return refuse(ra, &f, kind),
            },
            Credential::Jwt(t) => {
                let (Some(policy), Some(jwks)) = (
                    ra.jwt_policy.and_then(|p| self.policies.get(p)),
                    self.jwks.as_ref(),
                ) else {
                    return refuse(ra, &AuthFailure::KindNotAccepted, kind);
                };
                match st.tokens.verify(jwks, policy, t, now_unix) {
                    Ok(v) => &v.identity,
                    Err(f) => return refuse(ra, &f, kind),
                }
            }
            // Token introspection is not wired into the request path yet.
            Credential::Opaque(_) => return refuse(ra, &AuthFailure::KindNotAccepted, kind),
        };
        if authorize(identity, &ra.scopes).is_err() {
            return AuthVerdict::Refuse {
                status: 403,
                code: "forbidden",
                reason: "insufficient_scope",
                challenge: www_authenticate_forbidden(ra),
            };
        }
        let [client, user, tenant, scopes] = &self.headers;
        if let Some(v) = identity.client_id.as_deref() {
            push_safe(&mut out.headers, client, v.as_bytes());
        }
        if let Some(v) = identity.subject.as_deref() {
            push_safe(&mut out.headers, user, v.as_bytes());
        }
        if let Some(v) = identity.tenant.as_deref() {
            push_safe(&mut out.headers, tenant, v.as_bytes());
        }
        if !identity.scopes.is_empty() {
            let joined = identity.scopes.join(" ");
            push_safe(&mut out.headers, scopes, joined.as_bytes());
        }
        let id = identity
            .client_id
            .as_deref()
            .or(identity.subject.as_deref())
            .unwrap_or("");
        out.identity.extend_from_slice(id.as_bytes());
        out.key = (!id.is_empty()).then(|| key_hash(id.as_bytes()));
        out.strip_credential = !ra.keep_credential;
        AuthVerdict::Pass
    }
}

fn refuse(ra: &RouteAuth, f: &AuthFailure, presented: Option<CredentialKind>) -> AuthVerdict {
    AuthVerdict::Refuse {
        status: f.status(),
        code: if f.status() == 503 {
            "auth_unavailable"
        } else {
            "unauthorized"
        },
        reason: f.reason(),
        challenge: Some(www_authenticate(ra, f, presented)),
    }
}

/// Writes `name: value` when the value is visible ASCII (or spaces); anything else is left out.
fn push_safe(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if !value.is_empty() && value.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        push_header(out, name.as_bytes(), value);
    }
}
