//! Authentication and authorization, sans I/O: who a request is, and whether that is enough
//! for its route.
//!
//! # A request's way through
//!
//! 1. [`extract`] finds the credential in the request head (borrowed slices, no copy):
//!    an API key, a JWT, or an opaque bearer token.
//! 2. [`RouteAuth::screen`] applies the route's mode and accepted methods (no credential on a
//!    required route: 401; anonymous on an optional route: pass; wrong kind: 401).
//! 3. The credential is verified:
//!    - API key: [`KeyStore::verify`] (a salted SHA-256 and a constant-time compare);
//!    - JWT: [`TokenCache::verify`] against the route's [`JwtPolicy`] and the current
//!      [`Jwks`]; on [`AuthFailure::UnknownKid`] the engine asks the control thread to
//!      refresh the key set (single-flight) and retries once with the new set;
//!    - opaque token: [`IntrospectionCache::get`]; on a miss the control thread POSTs
//!      [`introspection_request_body`] to the provider and the core feeds the answer to
//!      [`parse_introspection`] and [`IntrospectionCache::insert`].
//! 4. [`authorize`] checks the identity's scopes against the route's [`ScopeRule`] (403).
//! 5. A refusal answers [`AuthFailure::status`] with [`www_authenticate`] (or 403 with
//!    [`www_authenticate_forbidden`]); the access log and metrics get
//!    [`AuthFailure::reason`]. The body never says which check failed.
//!
//! # Sharing
//!
//! Shared read-only across cores, immutable, wrapped in `Arc` by the caller and replaced whole
//! on reload: [`KeyStore`], [`Jwks`], [`JwtPolicy`]. Owned by one core (`&mut self`, no locks
//! or atomics on the request path): [`TokenCache`], [`IntrospectionCache`]. The checks do
//! not read the clock: each takes `now_unix` (seconds) from the caller; only the per-request
//! adapter ([`Authenticator`]) and the signature-check budget ([`VerifyBudget`]) do.
//!
//! # Modules
//!
//! `identity.rs` (the result types), `credential.rs` (finding the credential), `apikey.rs`
//! (key format, key file, verification, generation), `jwks.rs` (compiling a key set),
//! `jwt.rs` (policy, verification, token cache, minting), `introspect.rs` (RFC 7662),
//! `authorize.rs` (route rules, scopes, challenges), `cache.rs` (the bounded expiring map
//! behind both caches, and why it keys by SHA-256), `verifybudget.rs` (the per-client cap on
//! full signature checks), `fetch.rs` (what the request path asks of the key-set and
//! introspection fetchers, which run in the control plane), `authenticator.rs` (the per-request
//! adapter that runs the steps above for a route and writes the identity headers).

mod apikey;
mod authenticator;
mod authorize;
mod cache;
mod credential;
mod fetch;
mod identity;
mod introspect;
mod jwks;
mod jwt;
#[cfg(test)]
mod testkeys;
mod verifybudget;

pub use apikey::{
    format_utc, generate_key, parse_entries, split_key, KeyEntry, KeyGenError, KeyHash, KeyStore,
    ID_LEN, KEY_PREFIX, SALT_LEN, SECRET_LEN,
};
pub use authenticator::{AuthParts, AuthState, Authenticator, IdentityHeaderNames, VerifyLimits};
pub use authorize::{
    authorize, www_authenticate, www_authenticate_forbidden, AuthMode, CredentialKinds, Forbidden,
    RouteAuth, ScopeRule, REALM,
};
pub use cache::TokenDigest;
pub use credential::{extract, looks_like_jwt, Credential, CredentialSource, Presented};
pub use fetch::{
    IntrospectionPool, IntrospectionReply, IntrospectionResult, KeySetSource, NoFetcher,
};
pub use identity::{AuthFailure, ClaimNames, CredentialKind, Identity};
pub use introspect::{introspection_request_body, parse_introspection, IntrospectionCache};
pub use jsonwebtoken::Algorithm;
pub use jwks::{Jwks, JwksError, MAX_KID_LEN};
pub use jwt::{
    mint, signature_checks, verify, verify_admitted, JwtPolicy, JwtPolicyError, JwtPolicySpec,
    MintError, TokenCache, VerifiedToken, MAX_TOKEN_LEN,
};
pub use verifybudget::{client_key, VerifyBudget};
