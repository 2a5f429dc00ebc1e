//! Authentication as a snapshot compiles and runs it: the key store, the JWT key set and
//! policies, each route's rule, and the per-request check the engine calls.
//!
//! Built with the snapshot (files re-read on every reload, so revoking a key is an edit and a
//! reload), shared read-only by every core. The per-core part is only the verified-token cache.
//! Identity headers are written with values restricted to visible ASCII: a claim cannot smuggle
//! a line break into the upstream request.

use crate::authfetch::{IntrospectionResult, Introspector, JwksFetch, JwksSource, PoolLimits};
use crate::config::{AuthConfig, RouteAuthConfig};
use crate::verifybudget::VerifyBudget;
use ringgate_http::authn::{AuthOutput, AuthVerdict};
use ringgate_http::hygiene::push_header;
use ringgate_http::resilience::key_hash;
use ringgate_policies::auth::{
    authorize, extract, www_authenticate, www_authenticate_forbidden, AuthFailure, AuthMode,
    ClaimNames, Credential, CredentialKind, CredentialKinds, Identity, IntrospectionCache, Jwks,
    JwtPolicy, JwtPolicySpec, KeyStore, RouteAuth, ScopeRule, TokenCache, TokenDigest,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything a snapshot needs to authenticate.
pub struct AuthSetup {
    keys: KeyStore,
    jwks: Option<Arc<Jwks>>,
    jwks_source: Option<Arc<JwksSource>>,
    fetch_timeout: Duration,
    introspector: Option<Arc<Introspector>>,
    introspection_ttl: Duration,
    negative_ttl: Duration,
    policies: Vec<JwtPolicy>,
    routes: Vec<RouteAuth>,
    headers: [Box<str>; 4],
    token_cache: usize,
    /// Per-process signature checks per client per second, and burst (0: no cap).
    verifications: (u32, u32),
}

/// Per-core state: verified tokens, introspection results, this core's reply channel.
pub struct AuthState {
    tokens: TokenCache,
    /// The key set from the URL source, as of `jwks_epoch`.
    jwks: Option<Arc<Jwks>>,
    jwks_epoch: u64,
    introspected: IntrospectionCache,
    /// Failed introspections waiting for the request that asked (consumed once).
    refused: HashMap<[u8; 32], AuthFailure>,
    /// Introspections in flight from this core, by ticket.
    pending: HashMap<u64, [u8; 32]>,
    /// Tokens whose introspection answered active since their request asked.
    answered: std::collections::HashSet<[u8; 32]>,
    reply_tx: crossbeam_channel::Sender<IntrospectionResult>,
    reply_rx: crossbeam_channel::Receiver<IntrospectionResult>,
    /// This core's share of the per-client signature-check budget (`None`: no cap).
    budget: Option<VerifyBudget>,
}

/// Tickets of introspection waits have the top bit set; key-set waits do not.
const INTROSPECTION_TICKET: u64 = 1 << 63;

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
        let jwks_source = match &cfg.jwks_url {
            None => None,
            Some(url) => match JwksSource::get(&JwksFetch {
                url: url.clone(),
                refresh: cfg.jwks_refresh,
                min_interval: cfg.jwks_min_refresh,
                timeout: cfg.fetch_timeout,
                ca: cfg.ca.clone(),
            }) {
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(format!("auth.jwks_url: {e}"));
                    None
                }
            },
        };
        let introspector = match &cfg.introspection {
            None => None,
            Some(i) => {
                let client = match (&i.client_id, &i.client_secret) {
                    (Some(id), Some(secret)) => Some((id.as_str(), secret.as_str())),
                    _ => None,
                };
                let names = ClaimNames {
                    tenant: cfg.jwt.tenant_claim.clone(),
                    tier: cfg.jwt.tier_claim.clone(),
                };
                let limits = PoolLimits {
                    max_inflight: i.max_inflight,
                    per_client: i.max_inflight_per_client,
                    queue: i.queue,
                    negative_ttl: i.negative_cache_ttl,
                };
                match Introspector::new(&i.url, cfg.ca.as_deref(), client, i.timeout, names, limits)
                {
                    Ok(x) => Some(Arc::new(x)),
                    Err(e) => {
                        errs.push(format!("auth.introspection.url: {e}"));
                        None
                    }
                }
            }
        };
        let jwks = match &cfg.jwks_file {
            None => None,
            Some(path) => match std::fs::read(path) {
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
                    "introspection" => CredentialKind::Introspection,
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
            jwks_source,
            fetch_timeout: cfg.fetch_timeout,
            negative_ttl: cfg
                .introspection
                .as_ref()
                .map_or(Duration::ZERO, |i| i.negative_cache_ttl),
            introspection_ttl: cfg
                .introspection
                .as_ref()
                .map_or(Duration::from_secs(30), |i| i.cache_ttl),
            introspector,
            policies,
            routes,
            headers: [
                h.client_id.to_ascii_lowercase().into(),
                h.user_id.to_ascii_lowercase().into(),
                h.tenant_id.to_ascii_lowercase().into(),
                h.scopes.to_ascii_lowercase().into(),
            ],
            token_cache: cfg.token_cache,
            verifications: (cfg.max_verifications_per_client, cfg.verification_burst),
        })
    }

    /// The identity header names (lower case), dropped from every client request.
    pub fn identity_headers(&self) -> &[Box<str>] {
        &self.headers
    }

    /// Fresh per-core state for one of `workers` cores.
    pub fn state(&self, workers: usize) -> AuthState {
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        AuthState {
            tokens: TokenCache::new(self.token_cache, Duration::from_secs(3600)),
            jwks: None,
            jwks_epoch: 0,
            introspected: IntrospectionCache::new(self.token_cache, self.introspection_ttl)
                .with_negative_ttl(self.negative_ttl),
            refused: HashMap::new(),
            pending: HashMap::new(),
            answered: std::collections::HashSet::new(),
            reply_tx,
            reply_rx,
            budget: VerifyBudget::new(self.verifications.0, self.verifications.1, workers),
        }
    }

    /// The key set a request verifies against: the file's, or the URL source's as this core
    /// last saw it (refreshed here when the source's epoch moved: one load per request).
    fn current_jwks(&self, st: &mut AuthState) -> Option<Arc<Jwks>> {
        if let Some(j) = &self.jwks {
            return Some(j.clone());
        }
        let src = self.jwks_source.as_ref()?;
        let epoch = src.epoch();
        if st.jwks.is_none() || epoch != st.jwks_epoch {
            let (e, j) = src.load();
            st.jwks = j;
            st.jwks_epoch = e;
        }
        st.jwks.clone()
    }

    /// Whether the wait named by `ticket` is over (a refresh was handled, or the introspection
    /// answered). Drains this core's introspection replies into its caches.
    pub fn poll(&self, st: &mut AuthState, ticket: u64) -> bool {
        if ticket & INTROSPECTION_TICKET == 0 {
            return self
                .jwks_source
                .as_ref()
                .is_none_or(|s| s.refreshed_since(ticket));
        }
        let now = unix_now();
        while let Ok((digest, result)) = st.reply_rx.try_recv() {
            match result {
                Ok(identity) => {
                    st.answered.insert(*digest.as_bytes());
                    st.introspected.insert(digest, identity, now);
                }
                Err(f) => {
                    if f == AuthFailure::Inactive {
                        st.introspected.insert_inactive(digest, now);
                    }
                    st.refused.insert(*digest.as_bytes(), f);
                }
            }
        }
        match st.pending.get(&ticket).copied() {
            Some(d) => {
                let done = st.refused.contains_key(&d) || st.answered.remove(&d);
                if done {
                    st.pending.remove(&ticket);
                }
                done
            }
            None => true,
        }
    }

    /// Authenticates a request for route rule `rule`.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        st: &mut AuthState,
        rule: usize,
        headers: &[httparse::Header<'_>],
        peer: std::net::IpAddr,
        now_unix: u64,
        waited: bool,
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
                let jwks = self.current_jwks(st);
                let (Some(policy), Some(jwks)) =
                    (ra.jwt_policy.and_then(|p| self.policies.get(p)), jwks)
                else {
                    // A URL source that has not answered yet: ask for the keys once.
                    if let (Some(src), false) = (&self.jwks_source, waited) {
                        return AuthVerdict::Wait {
                            ticket: src.request_refresh(),
                            within: self.fetch_timeout,
                        };
                    }
                    return refuse(ra, &AuthFailure::KindNotAccepted, kind);
                };
                // Only a full signature check is charged to the client's budget.
                let budget = &mut st.budget;
                let mut admit = || {
                    budget
                        .as_mut()
                        .is_none_or(|b| b.try_take(peer, std::time::Instant::now()))
                };
                match st
                    .tokens
                    .verify_admitted(&jwks, policy, t, now_unix, &mut admit)
                {
                    Ok(v) => &v.identity,
                    // A key the set may have gained since: one refresh (single-flight), then
                    // this request is decided again, once.
                    Err(AuthFailure::UnknownKid(_)) if !waited && self.jwks_source.is_some() => {
                        let ticket = self.jwks_source.as_ref().map_or(0, |s| s.request_refresh());
                        return AuthVerdict::Wait {
                            ticket,
                            within: self.fetch_timeout,
                        };
                    }
                    Err(f) => return refuse(ra, &f, kind),
                }
            }
            Credential::Opaque(t) => {
                let Some(intro) = &self.introspector else {
                    return refuse(ra, &AuthFailure::KindNotAccepted, kind);
                };
                let digest = TokenDigest::of(t);
                if let Some(f) = st.refused.remove(digest.as_bytes()) {
                    return refuse(ra, &f, kind);
                }
                if st.introspected.is_inactive(&digest, now_unix) {
                    return refuse(ra, &AuthFailure::Inactive, kind);
                }
                if let Some(i) = st.introspected.get(&digest, now_unix) {
                    // Copied out so the cache is free again.
                    let i = i.clone();
                    return self.pass(ra, &i, out);
                }
                if waited {
                    return refuse(ra, &AuthFailure::IntrospectionUnavailable, kind);
                }
                let mut first8 = [0u8; 8];
                first8.copy_from_slice(&digest.as_bytes()[..8]);
                let ticket = INTROSPECTION_TICKET | (u64::from_le_bytes(first8) >> 1);
                if !st.pending.contains_key(&ticket) {
                    if !intro.start(t, peer, st.reply_tx.clone()) {
                        return refuse(ra, &AuthFailure::IntrospectionUnavailable, kind);
                    }
                    st.pending.insert(ticket, *digest.as_bytes());
                }
                // A little beyond the pool's own bound (a turn in the queue and the call),
                // which answers "unavailable".
                return AuthVerdict::Wait {
                    ticket,
                    within: intro.max_wait() + Duration::from_millis(100),
                };
            }
        };
        self.pass(ra, identity, out)
    }

    /// The verdict for an identity: scopes checked, identity headers written.
    fn pass(&self, ra: &RouteAuth, identity: &Identity, out: &mut AuthOutput) -> AuthVerdict {
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
        for (dst, v) in [
            (&mut out.client_id, identity.client_id.as_deref()),
            (&mut out.subject, identity.subject.as_deref()),
            (&mut out.tenant, identity.tenant.as_deref()),
            (&mut out.tier, identity.tier.as_deref()),
        ] {
            dst.extend_from_slice(v.unwrap_or("").as_bytes());
        }
        out.key = (!id.is_empty()).then(|| key_hash(id.as_bytes()));
        out.strip_credential = !ra.keep_credential;
        AuthVerdict::Pass
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
