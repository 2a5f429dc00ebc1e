//! Authentication as a worker runs it per request: each route's rule, the API key store, the JWT
//! key set and policies, and the per-core caches, turned into an [`AuthVerdict`] and the identity
//! headers the upstream gets.
//!
//! Compiled by the control plane from the config into plain values ([`AuthParts`]), shared
//! read-only by every core (replaced whole on reload: revoking a key is an edit and a reload).
//! The per-core part ([`AuthState`]) holds the verified-token and introspection caches, this
//! core's introspection replies and its signature-check budget. The fetchers (a key set from a
//! URL, introspection calls) run elsewhere and are reached through the traits of `fetch.rs`.
//!
//! Unlike the checks it calls, this adapter reads the clock: the budget's monotonic instant and
//! the wall clock when introspection answers are cached. Identity headers are written with values
//! restricted to visible ASCII: a claim cannot smuggle a line break into the upstream request.

use super::fetch::{IntrospectionPool, IntrospectionResult, KeySetSource, NoFetcher};
use super::verifybudget::VerifyBudget;
use super::{
    authorize, extract, www_authenticate, www_authenticate_forbidden, AuthFailure, Credential,
    CredentialKind, Identity, IntrospectionCache, Jwks, JwtPolicy, KeyStore, RouteAuth, TokenCache,
    TokenDigest,
};
use ringgate_model::authn::{AuthOutput, AuthVerdict};
use ringgate_model::headers::push_header;
use ringgate_model::resilience::key_hash;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Tickets of introspection waits have the top bit set; key-set waits do not.
const INTROSPECTION_TICKET: u64 = 1 << 63;

/// The header names a passed request's identity is written under (any case; sent lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaderNames {
    /// The API key's or token's client id.
    pub client_id: String,
    /// The token's subject.
    pub user_id: String,
    /// The tenant claim.
    pub tenant_id: String,
    /// The scopes, space-separated.
    pub scopes: String,
}

/// The per-process cap on full signature checks per client (0 per second: no cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyLimits {
    /// Checks per client per second.
    pub per_second: u32,
    /// Checks a client may make at once.
    pub burst: u32,
}

/// Everything authentication is compiled into, as plain values; `J` and `I` are the key-set
/// source and introspection pool the control plane runs.
pub struct AuthParts<J = NoFetcher, I = NoFetcher> {
    /// API keys.
    pub keys: KeyStore,
    /// A key set from a file: when present, used instead of `jwks_source`.
    pub jwks: Option<Arc<Jwks>>,
    /// A key set fetched from a URL.
    pub jwks_source: Option<Arc<J>>,
    /// How long a request waits for a key-set refresh it asked for.
    pub fetch_timeout: Duration,
    /// The introspection pool, for opaque tokens.
    pub introspector: Option<Arc<I>>,
    /// How long an active introspection answer is cached per core.
    pub introspection_ttl: Duration,
    /// How long an inactive introspection answer is cached per core.
    pub negative_ttl: Duration,
    /// JWT policies, indexed by [`RouteAuth::jwt_policy`].
    pub policies: Vec<JwtPolicy>,
    /// Route rules, indexed by the rule number routes carry.
    pub routes: Vec<RouteAuth>,
    /// Where the identity goes.
    pub headers: IdentityHeaderNames,
    /// Entries in each core's verified-token and introspection caches.
    pub token_cache: usize,
    /// The signature-check cap.
    pub verifications: VerifyLimits,
}

/// Authentication for a snapshot: shared by every core, read-only.
pub struct Authenticator<J = NoFetcher, I = NoFetcher> {
    keys: KeyStore,
    jwks: Option<Arc<Jwks>>,
    jwks_source: Option<Arc<J>>,
    fetch_timeout: Duration,
    introspector: Option<Arc<I>>,
    introspection_ttl: Duration,
    negative_ttl: Duration,
    policies: Vec<JwtPolicy>,
    routes: Vec<RouteAuth>,
    /// Client id, user id, tenant id, scopes; lower case.
    headers: [Box<str>; 4],
    token_cache: usize,
    verifications: VerifyLimits,
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
    answered: HashSet<[u8; 32]>,
    reply_tx: crossbeam_channel::Sender<IntrospectionResult>,
    reply_rx: crossbeam_channel::Receiver<IntrospectionResult>,
    /// This core's share of the per-client signature-check budget (`None`: no cap).
    budget: Option<VerifyBudget>,
}

/// What a request presents to [`Authenticator::check`] beyond its headers.
struct Asking<'a> {
    ra: &'a RouteAuth,
    kind: Option<CredentialKind>,
    peer: IpAddr,
    now_unix: u64,
    waited: bool,
}

impl<J: KeySetSource, I: IntrospectionPool> Authenticator<J, I> {
    /// The runtime for compiled `parts`.
    pub fn new(parts: AuthParts<J, I>) -> Self {
        let h = &parts.headers;
        let headers = [&h.client_id, &h.user_id, &h.tenant_id, &h.scopes]
            .map(|name| name.to_ascii_lowercase().into_boxed_str());
        Authenticator {
            keys: parts.keys,
            jwks: parts.jwks,
            jwks_source: parts.jwks_source,
            fetch_timeout: parts.fetch_timeout,
            introspector: parts.introspector,
            introspection_ttl: parts.introspection_ttl,
            negative_ttl: parts.negative_ttl,
            policies: parts.policies,
            routes: parts.routes,
            headers,
            token_cache: parts.token_cache,
            verifications: parts.verifications,
        }
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
            answered: HashSet::new(),
            reply_tx,
            reply_rx,
            budget: VerifyBudget::new(
                self.verifications.per_second,
                self.verifications.burst,
                workers,
            ),
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
        peer: IpAddr,
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
        let ask = Asking {
            ra,
            kind,
            peer,
            now_unix,
            waited,
        };
        match cred {
            Credential::ApiKey(k) => match self.keys.verify(k, now_unix) {
                Ok(identity) => self.pass(ra, identity, out),
                Err(f) => refuse(ra, &f, kind),
            },
            Credential::Jwt(t) => self.check_jwt(st, &ask, t, out),
            Credential::Opaque(t) => self.check_opaque(st, &ask, t, out),
        }
    }

    /// A JWT: verified against the route's policy and the current key set, a full signature
    /// check charged to the client's budget; an unknown key asks the source for a refresh once.
    fn check_jwt(
        &self,
        st: &mut AuthState,
        ask: &Asking<'_>,
        token: &[u8],
        out: &mut AuthOutput,
    ) -> AuthVerdict {
        let Asking { ra, kind, peer, .. } = *ask;
        let jwks = self.current_jwks(st);
        let (Some(policy), Some(jwks)) = (ra.jwt_policy.and_then(|p| self.policies.get(p)), jwks)
        else {
            // A URL source that has not answered yet: ask for the keys once.
            if let (Some(src), false) = (&self.jwks_source, ask.waited) {
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
            .verify_admitted(&jwks, policy, token, ask.now_unix, &mut admit)
        {
            Ok(v) => self.pass(ra, &v.identity, out),
            // A key the set may have gained since: one refresh (single-flight), then this
            // request is decided again, once.
            Err(AuthFailure::UnknownKid(_)) if !ask.waited && self.jwks_source.is_some() => {
                let ticket = self.jwks_source.as_ref().map_or(0, |s| s.request_refresh());
                AuthVerdict::Wait {
                    ticket,
                    within: self.fetch_timeout,
                }
            }
            Err(f) => refuse(ra, &f, kind),
        }
    }

    /// An opaque token: this core's introspection caches, else one call through the pool and a
    /// wait for its answer (a request that already waited is refused "unavailable").
    fn check_opaque(
        &self,
        st: &mut AuthState,
        ask: &Asking<'_>,
        token: &[u8],
        out: &mut AuthOutput,
    ) -> AuthVerdict {
        let Asking {
            ra, kind, now_unix, ..
        } = *ask;
        let Some(intro) = &self.introspector else {
            return refuse(ra, &AuthFailure::KindNotAccepted, kind);
        };
        let digest = TokenDigest::of(token);
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
        if ask.waited {
            return refuse(ra, &AuthFailure::IntrospectionUnavailable, kind);
        }
        let mut first8 = [0u8; 8];
        first8.copy_from_slice(&digest.as_bytes()[..8]);
        let ticket = INTROSPECTION_TICKET | (u64::from_le_bytes(first8) >> 1);
        if !st.pending.contains_key(&ticket) {
            if !intro.start(token, ask.peer, st.reply_tx.clone()) {
                return refuse(ra, &AuthFailure::IntrospectionUnavailable, kind);
            }
            st.pending.insert(ticket, *digest.as_bytes());
        }
        // A little beyond the pool's own bound (a turn in the queue and the call), which
        // answers "unavailable".
        AuthVerdict::Wait {
            ticket,
            within: intro.max_wait() + Duration::from_millis(100),
        }
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

#[cfg(test)]
#[path = "authenticator_tests.rs"]
mod tests;
