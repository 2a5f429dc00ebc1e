//! Verifying JWT bearer tokens locally (signature, algorithm, time, issuer, audience), the
//! per-core cache of verified tokens, and minting tokens for `ringgate token`.
//!
//! Exists so the gateway can accept identity-provider tokens at full speed: a signature check
//! costs tens of microseconds, so each core remembers verified tokens ([`TokenCache`]) until
//! they expire, and a repeat request costs one SHA-256 and a hash-map probe.
//!
//! # What [`verify`] checks, in order
//!
//! 1. Shape: three base64url parts, at most [`MAX_TOKEN_LEN`] bytes -> else `Malformed`.
//! 2. Header: JSON with `alg`; a `crit` member (extensions we do not implement) is refused
//!    (`Malformed`); `jku`, `x5u`, `jwk` and other key-bearing members are ignored: keys come
//!    only from the configured set.
//! 3. Algorithm: `none`, unknown names, and anything not in the policy -> `AlgorithmNotAllowed`.
//!    The policy never allows HMAC ([`JwtPolicy::new`] refuses `HS*`).
//! 4. Key: by `kid` ([`Jwks`]) -> `UnknownKid(kid)` (refresh the set once, single-flight,
//!    and retry) or `MissingKid`. The header's `alg` must equal the key's own algorithm ->
//!    else `AlgorithmNotAllowed`: an RS256 key never verifies an `HS256` or `ES256` token.
//! 5. Claims (still unverified, but a token failing any of these is refused whatever its
//!    signature, so they go first and an expired or foreign token never costs a public-key
//!    operation): a JSON object; the policy's required claims present -> `MissingClaim`;
//!    `exp`/`nbf` numbers, with leeway: expired when `now >= exp + leeway` -> `Expired`,
//!    early when `now + leeway < nbf` -> `NotYetValid`; `iss` one of the policy's issuers
//!    (when it names any) -> `WrongIssuer`; `aud` (string or array) naming one of the
//!    policy's audiences (when it names any; with none configured `aud` is not checked, so
//!    configure audiences for any provider that issues tokens to several services) ->
//!    `WrongAudience`. Claims with the wrong type -> `Malformed`.
//! 6. Signature -> `BadSignature`. No identity is taken from the payload before this.
//! 7. Identity: `sub`, `client_id`/`azp`, scopes from `scope`/`scp`/`scopes`, and the
//!    policy's tenant and tier claims (see [`ClaimNames`]).
//!
//! Time is an argument (`now_unix`), never read from the clock here. The signature is checked
//! with `ring` against key material decoded once when the key set was compiled (`jwks.rs`);
//! `jsonwebtoken` is used only to mint tokens (`ringgate token`) and to read PEM public keys.
//!
//! # Cache
//!
//! [`TokenCache`] keys entries by SHA-256 of (key-set generation, policy id, token) (see
//! `cache.rs` for why the full digest), so a verdict is never reused under another policy or
//! after the key set was replaced: a removed key stops working at the next refresh, not at
//! the token's expiry. Entries expire at the token's `exp` (never later than the cache's
//! `max_ttl` after insertion); failures are not cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::{ExpiringCache, TokenDigest};
use super::identity::{
    identity_from_claims, numeric_date, AuthFailure, ClaimNames, CredentialKind, Identity,
};
use super::jwks::{Jwks, MAX_KID_LEN};

/// Longest token accepted (bytes); longer is `Malformed` before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Process-wide policy ids (assigned when a policy is built, on the control thread).
static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);

/// What a JWT policy is configured with; turned into a [`JwtPolicy`] by [`JwtPolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicySpec {
    /// Algorithms accepted (asymmetric only). Default: RS256, PS256, ES256, EdDSA.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one suffices); empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default 60 s.
    pub leeway: Duration,
    /// Claims that must be present. Default: `exp`.
    pub required_claims: Vec<String>,
    /// Where the tenant and tier come from.
    pub claims: ClaimNames,
}

impl Default for JwtPolicySpec {
    fn default() -> Self {
        JwtPolicySpec {
            algorithms: vec![
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::EdDSA,
            ],
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: Duration::from_secs(60),
            required_claims: vec!["exp".into()],
            claims: ClaimNames::default(),
        }
    }
}

/// Why a JWT policy could not be built.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum JwtPolicyError {
    /// No algorithm allowed.
    #[error("no algorithm allowed")]
    NoAlgorithms,
    /// An HMAC algorithm was listed; shared-secret tokens are not supported.
    #[error("{0} is a shared-secret (HMAC) algorithm; only public-key algorithms are supported")]
    Symmetric(String),
    /// An empty issuer, audience or claim name.
    #[error("empty value in {0}")]
    Empty(&'static str),
}

/// A checked JWT policy. Immutable; share with `Arc`.
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    algorithms: Vec<Algorithm>,
    issuers: Vec<Box<str>>,
    audiences: Vec<Box<str>>,
    leeway_secs: u64,
    required: Vec<Box<str>>,
    claims: ClaimNames,
    id: u64,
}

impl JwtPolicy {
    /// Checks a spec: at least one algorithm, none HMAC, no empty strings.
    pub fn new(spec: JwtPolicySpec) -> Result<JwtPolicy, JwtPolicyError> {
        if spec.algorithms.is_empty() {
            return Err(JwtPolicyError::NoAlgorithms);
        }
        if let Some(alg) = spec
            .algorithms
            .iter()
            .find(|a| a.family() == AlgorithmFamily::Hmac)
        {
            return Err(JwtPolicyError::Symmetric(format!("{alg:?}")));
        }
        let boxed = |v: Vec<String>, what| -> Result<Vec<Box<str>>, JwtPolicyError> {
            if v.iter().any(String::is_empty) {
                return Err(JwtPolicyError::Empty(what));
            }
            Ok(v.into_iter().map(String::into_boxed_str).collect())
        };
        let empty_name = |n: &Option<String>| n.as_deref() == Some("");
        if empty_name(&spec.claims.tenant) || empty_name(&spec.claims.tier) {
            return Err(JwtPolicyError::Empty("claims"));
        }
        let mut algorithms = spec.algorithms;
        algorithms.dedup();
        Ok(JwtPolicy {
            algorithms,
            issuers: boxed(spec.issuers, "issuers")?,
            audiences: boxed(spec.audiences, "audiences")?,
            leeway_secs: spec.leeway.as_secs(),
            required: boxed(spec.required_claims, "required_claims")?,
            claims: spec.claims,
            id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Allowed algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Accepted issuers (empty: not checked).
    pub fn issuers(&self) -> &[Box<str>] {
        &self.issuers
    }

    /// Accepted audiences (empty: not checked).
    pub fn audiences(&self) -> &[Box<str>] {
        &self.audiences
    }

    /// Clock skew allowed on `exp` and `nbf`, in whole seconds.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }

    /// A process-unique id (cache entries are scoped to it).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Who the token speaks for.
    pub identity: Identity,
    /// The token's `exp` (Unix seconds), if it has one.
    pub exp: Option<u64>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// Verifies a compact JWT at `now_unix` (see the module doc for the checks and their order).
pub fn verify(
    jwks: &Jwks,
    policy: &JwtPolicy,
    token: &[u8],
    now_unix: u64,
) -> Result<VerifiedToken, AuthFailure> {
    verify_admitted(jwks, policy, token, now_unix, &mut || true)
}

/// Signature checks made by this process so far (every core; one relaxed add per check, next
/// to a public-key operation of tens of microseconds). For tests and diagnostics: it shows
/// whether a refusal was reached with or without the expensive step.
pub fn signature_checks() -> u64 {
    SIGNATURE_CHECKS.load(Ordering::Relaxed)
}

static SIGNATURE_CHECKS: AtomicU64 = AtomicU64::new(0);

/// Longest decoded signature accepted (RSA-4096).
const MAX_SIGNATURE_LEN: usize = 512;
/// Its base64url length (unpadded).
const MAX_SIGNATURE_B64_LEN: usize = MAX_SIGNATURE_LEN.div_ceil(3) * 4;

/// [`verify`], asking `admit` just before the signature check (after every cheap check has
/// passed); a `false` refuses the token with [`AuthFailure::VerificationRateLimited`] without
/// the public-key operation. Callers ration full verifications per client with it.
pub fn verify_admitted(
    jwks: &Jwks,
    policy: &JwtPolicy,
    token: &[u8],
    now_unix: u64,
    admit: &mut dyn FnMut() -> bool,
) -> Result<VerifiedToken, AuthFailure> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthFailure::Malformed);
    }
    let token = std::str::from_utf8(token).map_err(|_| AuthFailure::Malformed)?;
    let (message, signature) = token.rsplit_once('.').ok_or(AuthFailure::Malformed)?;
    let (header_b64, payload_b64) = message.split_once('.').ok_or(AuthFailure::Malformed)?;
    if header_b64.is_empty()
        || payload_b64.is_empty()
        || signature.is_empty()
        || payload_b64.contains('.')
    {
        return Err(AuthFailure::Malformed);
    }

    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| AuthFailure::Malformed)?;
    let header: RawHeader =
        serde_json::from_slice(&header_json).map_err(|_| AuthFailure::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthFailure::Malformed);
    }
    if header.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_LEN) {
        return Err(AuthFailure::Malformed);
    }
    // `none`, HS*, and unknown names all end here: none is in a policy.
    let alg: Algorithm = header
        .alg
        .parse()
        .map_err(|_| AuthFailure::AlgorithmNotAllowed)?;
    if !policy.algorithms.contains(&alg) {
        return Err(AuthFailure::AlgorithmNotAllowed);
    }
    let key = jwks.lookup(header.kid.as_deref())?;
    if key.alg != alg {
        return Err(AuthFailure::AlgorithmNotAllowed);
    }
    // The cheap checks come before the signature: a token that fails any of them is refused
    // whatever its signature says, so checking its (still unverified) claims first is safe, and
    // it keeps expired or foreign tokens from costing a public-key operation each time they are
    // replayed. Only the reason logged differs (`expired` rather than `bad_signature` for a
    // forged expired token).
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| AuthFailure::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| AuthFailure::Malformed)?;
    check_claims(policy, &claims, now_unix)?;
    // The signature, decoded on the stack: the longest accepted (RSA-4096) is 512 bytes, and
    // anything longer cannot verify under any accepted key.
    let mut sig = [0u8; MAX_SIGNATURE_LEN];
    if signature.len() > MAX_SIGNATURE_B64_LEN {
        return Err(AuthFailure::BadSignature);
    }
    let sig_len = URL_SAFE_NO_PAD
        .decode_slice(signature, &mut sig)
        .map_err(|_| AuthFailure::BadSignature)?;
    // Everything cheap has passed: this is the public-key operation the caller may ration.
    if !admit() {
        return Err(AuthFailure::VerificationRateLimited);
    }
    SIGNATURE_CHECKS.fetch_add(1, Ordering::Relaxed);
    if !key.verify(message.as_bytes(), &sig[..sig_len]) {
        return Err(AuthFailure::BadSignature);
    }
    let identity = identity_from_claims(CredentialKind::Jwt, &claims, &policy.claims)?;
    Ok(VerifiedToken {
        exp: identity.expires_at,
        identity,
    })
}

fn check_claims(
    policy: &JwtPolicy,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<(), AuthFailure> {
    if let Some(missing) = policy
        .required
        .iter()
        .find(|name| !claims.contains_key(&***name))
    {
        return Err(AuthFailure::MissingClaim(missing.clone()));
    }
    let leeway = policy.leeway_secs;
    if let Some(exp) = numeric_date(claims, "exp")? {
        if now >= exp.saturating_add(leeway) {
            return Err(AuthFailure::Expired);
        }
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now.saturating_add(leeway) < nbf {
            return Err(AuthFailure::NotYetValid);
        }
    }
    if !policy.issuers.is_empty() {
        let ok = match claims.get("iss") {
            Some(Value::String(iss)) => policy.issuers.iter().any(|i| **i == **iss),
            _ => false,
        };
        if !ok {
            return Err(AuthFailure::WrongIssuer);
        }
    }
    if !policy.audiences.is_empty() {
        let accepted = |a: &str| policy.audiences.iter().any(|x| **x == *a);
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => accepted(aud),
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(accepted)),
            _ => false,
        };
        if !ok {
            return Err(AuthFailure::WrongAudience);
        }
    }
    Ok(())
}

/// A core's cache of verified tokens: bounded, entries expire with their tokens. Not shared;
/// each core owns one (`&mut self`, no locks).
pub struct TokenCache {
    entries: ExpiringCache<VerifiedToken>,
    /// Tokens refused for a reason that cannot change while the key set and policy stay the
    /// same (a bad signature, say): a replayed forgery costs a probe, not a public-key
    /// operation. Kept [`REJECT_TTL_SECS`], in a quarter of the capacity.
    rejected: ExpiringCache<AuthFailure>,
    max_ttl_secs: u64,
    /// Holds a verdict that could not be cached (already inside its leeway window, or the
    /// cache is disabled) so [`TokenCache::verify`] can still return a reference.
    uncached: Option<VerifiedToken>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables caching), each kept at most
    /// `max_ttl` (bounds how long a token without `exp` is trusted without a fresh check).
    pub fn new(capacity: usize, max_ttl: Duration) -> Self {
        TokenCache {
            entries: ExpiringCache::new(capacity),
            rejected: ExpiringCache::new(if capacity == 0 {
                0
            } else {
                (capacity / 4).max(16)
            }),
            max_ttl_secs: max_ttl.as_secs(),
            uncached: None,
        }
    }

    /// [`verify`], remembering successes: a token seen before (with the same key set and
    /// policy, and not expired) costs a SHA-256 and a probe. The result borrows the cache.
    pub fn verify(
        &mut self,
        jwks: &Jwks,
        policy: &JwtPolicy,
        token: &[u8],
        now_unix: u64,
    ) -> Result<&VerifiedToken, AuthFailure> {
        self.verify_admitted(jwks, policy, token, now_unix, &mut || true)
    }

    /// [`TokenCache::verify`] with [`verify_admitted`]'s `admit`: asked only when a token must
    /// be fully verified (neither a remembered success nor a remembered refusal, and past the
    /// cheap checks). A refusal by `admit` is not remembered.
    pub fn verify_admitted(
        &mut self,
        jwks: &Jwks,
        policy: &JwtPolicy,
        token: &[u8],
        now_unix: u64,
        admit: &mut dyn FnMut() -> bool,
    ) -> Result<&VerifiedToken, AuthFailure> {
        let digest = Self::digest(jwks, policy, token);
        if let Some(index) = self.entries.find(&digest, now_unix) {
            // `value` of a slot `find` just returned is always `Some`.
            return self.entries.value(index).ok_or(AuthFailure::Malformed);
        }
        if let Some(index) = self.rejected.find(&digest, now_unix) {
            return Err(self
                .rejected
                .value(index)
                .cloned()
                .unwrap_or(AuthFailure::BadSignature));
        }
        let verified = match verify_admitted(jwks, policy, token, now_unix, admit) {
            Ok(v) => v,
            Err(f) => {
                if lasting(&f) {
                    let _ = self.rejected.insert(
                        digest,
                        f.clone(),
                        now_unix.saturating_add(REJECT_TTL_SECS),
                        now_unix,
                    );
                }
                return Err(f);
            }
        };
        let until = now_unix.saturating_add(self.max_ttl_secs);
        let expires_at = verified.exp.map_or(until, |exp| exp.min(until));
        match self
            .entries
            .insert(digest, verified.clone(), expires_at, now_unix)
        {
            Some(index) => self.entries.value(index).ok_or(AuthFailure::Malformed),
            None => Ok(self.uncached.insert(verified)),
        }
    }

    /// Refusals remembered (at most a quarter of the capacity).
    pub fn rejected_len(&self) -> usize {
        self.rejected.len()
    }

    fn digest(jwks: &Jwks, policy: &JwtPolicy, token: &[u8]) -> TokenDigest {
        let mut context = [0u8; 16];
        context[..8].copy_from_slice(&jwks.generation().to_le_bytes());
        context[8..].copy_from_slice(&policy.id().to_le_bytes());
        TokenDigest::with_context(&context, token)
    }

    /// Entries held (at most the capacity).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries held.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Forgets every token (e.g. on a config reload that changed what is trusted).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.rejected.clear();
        self.uncached = None;
    }
}

/// How long a refusal is remembered.
pub const REJECT_TTL_SECS: u64 = 60;

/// Whether a refusal holds for as long as the key set and policy do (both are part of the cache
/// key): not `NotYetValid` (time cures it), `UnknownKid` (a key-set refresh may) nor
/// `VerificationRateLimited` (the token was not judged).
fn lasting(f: &AuthFailure) -> bool {
    !matches!(
        f,
        AuthFailure::NotYetValid
            | AuthFailure::UnknownKid(_)
            | AuthFailure::VerificationRateLimited
    )
}

/// Why a token could not be minted.
#[derive(thiserror::Error, Debug)]
pub enum MintError {
    /// Only the asymmetric algorithms are minted.
    #[error("{0} is not a public-key algorithm")]
    Algorithm(String),
    /// The PEM is not a private key for the algorithm.
    #[error("private key: {0}")]
    Key(String),
    /// The claims are not a JSON object.
    #[error("claims must be a JSON object")]
    Claims,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs `claims` into a compact JWT with a PKCS#8 PEM private key (`BEGIN PRIVATE KEY`; RSA
/// keys may also be PKCS#1 `BEGIN RSA PRIVATE KEY`), for `ringgate token`. The header has
/// `typ: JWT`, `alg`, and `kid` when given. Claims are signed as given: set `exp` yourself.
pub fn mint(
    pem_private_key: &[u8],
    alg: Algorithm,
    kid: Option<&str>,
    claims: &Value,
) -> Result<String, MintError> {
    if !claims.is_object() {
        return Err(MintError::Claims);
    }
    let key_err = |e: jsonwebtoken::errors::Error| MintError::Key(e.to_string());
    let key = match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem_private_key).map_err(key_err)?,
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem_private_key).map_err(key_err)?,
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem_private_key).map_err(key_err)?,
        _ => return Err(MintError::Algorithm(format!("{alg:?}"))),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| MintError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::testkeys::{keys, TestKey};
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn jwks() -> Jwks {
        let k = keys();
        let doc = json!({"keys": [k.rsa.jwk("rsa"), k.ec.jwk("ec"), k.ed.jwk("ed")]});
        Jwks::parse(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    fn policy() -> JwtPolicy {
        JwtPolicy::new(JwtPolicySpec {
            issuers: vec!["https://idp.example".into()],
            audiences: vec!["api".into(), "other".into()],
            claims: ClaimNames {
                tenant: Some("org".into()),
                tier: None,
            },
            ..JwtPolicySpec::default()
        })
        .unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": "https://idp.example", "aud": ["x", "api"], "sub": "user-7",
            "azp": "web", "org": "acme", "scope": "read write",
            "exp": NOW + 300, "nbf": NOW - 10, "iat": NOW - 10
        })
    }

    fn token(key: &TestKey, kid: &str, claims: &Value) -> String {
        mint(key.private_pem.as_bytes(), key.alg, Some(kid), claims).unwrap()
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn accepts_rs256_es256_eddsa() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        for (key, kid) in [(&k.rsa, "rsa"), (&k.ec, "ec"), (&k.ed, "ed")] {
            let t = token(key, kid, &claims());
            let v =
                verify(&jwks, &policy, t.as_bytes(), NOW).unwrap_or_else(|e| panic!("{kid}: {e}"));
            assert_eq!(v.exp, Some(NOW + 300));
            let id = &v.identity;
            assert_eq!(id.kind, CredentialKind::Jwt);
            assert_eq!(id.subject.as_deref(), Some("user-7"));
            assert_eq!(id.client_id.as_deref(), Some("web"));
            assert_eq!(id.tenant.as_deref(), Some("acme"));
            assert!(id.has_scope("read") && id.has_scope("write"));
        }
    }

    #[test]
    fn time_checks_with_leeway() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        let expired = token(&k.ed, "ed", &with(json!({"exp": NOW - 61})));
        assert_eq!(
            verify(&jwks, &policy, expired.as_bytes(), NOW),
            Err(AuthFailure::Expired)
        );
        // Inside the 60 s leeway.
        let just = token(&k.ed, "ed", &with(json!({"exp": NOW - 59})));
        assert!(verify(&jwks, &policy, just.as_bytes(), NOW).is_ok());
        let early = token(&k.ed, "ed", &with(json!({"nbf": NOW + 61})));
        assert_eq!(
            verify(&jwks, &policy, early.as_bytes(), NOW),
            Err(AuthFailure::NotYetValid)
        );
        let soon = token(&k.ed, "ed", &with(json!({"nbf": NOW + 59})));
        assert!(verify(&jwks, &policy, soon.as_bytes(), NOW).is_ok());
        // exp is required by default; a string exp is malformed, not ignored.
        let no_exp = token(&k.ed, "ed", &with(json!({"exp": null})));
        assert_eq!(
            verify(&jwks, &policy, no_exp.as_bytes(), NOW),
            Err(AuthFailure::MissingClaim("exp".into()))
        );
        let str_exp = token(&k.ed, "ed", &with(json!({"exp": "never"})));
        assert_eq!(
            verify(&jwks, &policy, str_exp.as_bytes(), NOW),
            Err(AuthFailure::Malformed)
        );
    }

    #[test]
    fn issuer_and_audience() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        for (changes, want) in [
            (
                json!({"iss": "https://evil.example"}),
                AuthFailure::WrongIssuer,
            ),
            (json!({"iss": null}), AuthFailure::WrongIssuer),
            (json!({"aud": "nope"}), AuthFailure::WrongAudience),
            (json!({"aud": ["a", "b"]}), AuthFailure::WrongAudience),
            (json!({"aud": null}), AuthFailure::WrongAudience),
        ] {
            let t = token(&k.ec, "ec", &with(changes.clone()));
            assert_eq!(
                verify(&jwks, &policy, t.as_bytes(), NOW),
                Err(want),
                "{changes}"
            );
        }
        let t = token(&k.ec, "ec", &with(json!({"aud": "other"})));
        assert!(verify(&jwks, &policy, t.as_bytes(), NOW).is_ok());
        // A policy without audiences does not require or check aud.
        let open = JwtPolicy::new(JwtPolicySpec::default()).unwrap();
        for aud in [json!(null), json!("anything")] {
            let t = token(&k.ec, "ec", &with(json!({ "aud": aud })));
            assert!(verify(&jwks, &open, t.as_bytes(), NOW).is_ok(), "{aud}");
        }
    }

    #[test]
    fn wrong_key_tampering_and_unknown_kid() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        // Signed by another RSA key under our kid.
        let t = token(&k.rsa_other, "rsa", &claims());
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::BadSignature)
        );
        // Payload swapped for a more generous one, signature kept.
        let t = token(&k.rsa, "rsa", &claims());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&with(json!({"scope": "admin"}))),
            parts[2]
        );
        assert_eq!(
            verify(&jwks, &policy, forged.as_bytes(), NOW),
            Err(AuthFailure::BadSignature)
        );
        // Bit flip in the signature.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify(&jwks, &policy, flipped.as_bytes(), NOW),
            Err(AuthFailure::BadSignature)
        );
        // Unknown kid: the caller's cue to refresh the key set.
        let t = token(&k.rsa, "rotated-2027", &claims());
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::UnknownKid("rotated-2027".into()))
        );
        // No kid with several keys.
        let t = mint(
            k.rsa.private_pem.as_bytes(),
            Algorithm::RS256,
            None,
            &claims(),
        )
        .unwrap();
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::MissingKid)
        );
    }

    #[test]
    fn algorithm_attacks() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        let body = b64(&claims());
        // alg=none, with and without a signature part.
        let none = b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa"}));
        for t in [format!("{none}.{body}."), format!("{none}.{body}.c2ln")] {
            let r = verify(&jwks, &policy, t.as_bytes(), NOW);
            assert!(
                matches!(
                    r,
                    Err(AuthFailure::AlgorithmNotAllowed | AuthFailure::Malformed)
                ),
                "{r:?}"
            );
        }
        // RS/HS confusion: HS256 "signed" with the RSA public key bytes as the HMAC secret.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa".into());
        for secret in [
            k.rsa.public_pem.as_bytes(),
            k.rsa.jwk("x")["n"].as_str().unwrap().as_bytes(),
        ] {
            let t = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret))
                .unwrap();
            assert_eq!(
                verify(&jwks, &policy, t.as_bytes(), NOW),
                Err(AuthFailure::AlgorithmNotAllowed)
            );
        }
        // A policy cannot even be built with HS256.
        let hs = JwtPolicy::new(JwtPolicySpec {
            algorithms: vec![Algorithm::RS256, Algorithm::HS256],
            ..JwtPolicySpec::default()
        });
        assert!(matches!(hs, Err(JwtPolicyError::Symmetric(_))));
        // RS/ES confusion: an ES256 token naming the RSA key's kid.
        let t = token(&k.ec, "rsa", &claims());
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::AlgorithmNotAllowed)
        );
        // Header alg rewritten to PS256 over an RS256 signature: not the key's algorithm.
        let t = token(&k.rsa, "rsa", &claims());
        let parts: Vec<&str> = t.split('.').collect();
        let ps = b64(&json!({"alg": "PS256", "kid": "rsa"}));
        let t = format!("{ps}.{}.{}", parts[1], parts[2]);
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::AlgorithmNotAllowed)
        );
        // An algorithm the key fits but the policy does not allow.
        let rs_only = JwtPolicy::new(JwtPolicySpec {
            algorithms: vec![Algorithm::RS256],
            ..JwtPolicySpec::default()
        })
        .unwrap();
        let t = token(&k.ed, "ed", &claims());
        assert_eq!(
            verify(&jwks, &rs_only, t.as_bytes(), NOW),
            Err(AuthFailure::AlgorithmNotAllowed)
        );
        // crit headers are refused even when everything else is right.
        let crit = b64(&json!({"alg": "EdDSA", "kid": "ed", "crit": ["exp"]}));
        let t = format!("{crit}.{body}.c2ln");
        assert_eq!(
            verify(&jwks, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::Malformed)
        );
    }

    #[test]
    fn malformed_tokens() {
        let (jwks, policy) = (jwks(), policy());
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "..",
            "eyJ.eyJ.",
            "!!!.eyJ.c2ln",
            "e30.e30.c2ln",
            big.as_str(),
        ] {
            let r = verify(&jwks, &policy, t.as_bytes(), NOW);
            assert!(r.is_err(), "{t}");
            assert!(!matches!(r, Err(AuthFailure::UnknownKid(_))), "{t}: {r:?}");
        }
        assert_eq!(
            verify(&jwks, &policy, b"\xff.a.b", NOW),
            Err(AuthFailure::Malformed)
        );
    }

    #[test]
    fn cache_hits_are_scoped_and_expire() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        let mut cache = TokenCache::new(16, Duration::from_secs(3600));
        let t = token(&k.ed, "ed", &claims());
        let first = cache
            .verify(&jwks, &policy, t.as_bytes(), NOW)
            .unwrap()
            .clone();
        assert_eq!(cache.len(), 1);
        let again = cache.verify(&jwks, &policy, t.as_bytes(), NOW + 1).unwrap();
        assert_eq!(*again, first);
        assert_eq!(cache.len(), 1);
        // At exp the entry is gone; a full verify within leeway still passes but is not cached
        // past exp.
        let late = cache
            .verify(&jwks, &policy, t.as_bytes(), NOW + 300)
            .unwrap();
        assert_eq!(late.exp, Some(NOW + 300));
        assert_eq!(
            cache.verify(&jwks, &policy, t.as_bytes(), NOW + 360),
            Err(AuthFailure::Expired)
        );
        // Another policy or key set is another entry, verified afresh.
        let strict = JwtPolicy::new(JwtPolicySpec {
            audiences: vec!["elsewhere".into()],
            ..JwtPolicySpec::default()
        })
        .unwrap();
        assert_eq!(
            cache.verify(&jwks, &strict, t.as_bytes(), NOW),
            Err(AuthFailure::WrongAudience)
        );
        let rotated =
            Jwks::parse(&serde_json::to_vec(&json!({"keys": [k.rsa.jwk("rsa")]})).unwrap())
                .unwrap();
        assert_eq!(
            cache.verify(&rotated, &policy, t.as_bytes(), NOW),
            Err(AuthFailure::UnknownKid("ed".into()))
        );
        // max_ttl bounds tokens without exp.
        let lax = JwtPolicy::new(JwtPolicySpec {
            required_claims: vec![],
            ..JwtPolicySpec::default()
        })
        .unwrap();
        let mut short = TokenCache::new(4, Duration::from_secs(10));
        let forever = token(&k.ed, "ed", &with(json!({"exp": null})));
        assert!(short.verify(&jwks, &lax, forever.as_bytes(), NOW).is_ok());
        assert_eq!(short.len(), 1);
        short.clear();
        assert!(short.is_empty());
    }

    #[test]
    fn lasting_refusals_are_remembered_and_passing_ones_are_not() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        let mut cache = TokenCache::new(64, Duration::from_secs(3600));
        let good = token(&k.ed, "ed", &claims());
        let (msg, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{msg}.AAAA{}", &good[msg.len() + 5..]);
        for _ in 0..3 {
            assert_eq!(
                cache.verify(&jwks, &policy, forged.as_bytes(), NOW),
                Err(AuthFailure::BadSignature)
            );
        }
        assert_eq!(
            cache.rejected_len(),
            1,
            "one remembered refusal, no new verification"
        );
        let early = token(&k.ed, "ed", &with(json!({"nbf": NOW + 3600})));
        assert_eq!(
            cache.verify(&jwks, &policy, early.as_bytes(), NOW),
            Err(AuthFailure::NotYetValid)
        );
        assert_eq!(cache.rejected_len(), 1, "not-yet-valid is not remembered");
        // The real token is unaffected by its forgery being refused.
        assert!(cache.verify(&jwks, &policy, good.as_bytes(), NOW).is_ok());
        let mut small = TokenCache::new(64, Duration::from_secs(3600));
        for i in 0..1000 {
            let t = format!("{msg}.{}", "B".repeat(40 + i % 7) + &i.to_string());
            let _ = small.verify(&jwks, &policy, t.as_bytes(), NOW);
        }
        assert!(
            small.rejected_len() <= 16,
            "bounded: {}",
            small.rejected_len()
        );
    }

    #[test]
    fn cache_stays_bounded() {
        let (jwks, policy, k) = (jwks(), policy(), keys());
        let capacity = 8;
        let mut cache = TokenCache::new(capacity, Duration::from_secs(3600));
        let tokens: Vec<String> = (0..capacity * 10)
            .map(|i| token(&k.ed, "ed", &with(json!({"jti": i}))))
            .collect();
        for t in &tokens {
            cache.verify(&jwks, &policy, t.as_bytes(), NOW).unwrap();
            assert!(cache.len() <= capacity);
        }
        assert_eq!(cache.len(), capacity);
        assert_eq!(cache.capacity(), capacity);
        // Disabled cache still verifies.
        let mut off = TokenCache::new(0, Duration::from_secs(3600));
        assert!(off
            .verify(&jwks, &policy, tokens[0].as_bytes(), NOW)
            .is_ok());
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn mint_errors() {
        let k = keys();
        assert!(matches!(
            mint(
                k.ec.private_pem.as_bytes(),
                Algorithm::RS256,
                None,
                &claims()
            ),
            Err(MintError::Key(_))
        ));
        assert!(matches!(
            mint(
                k.ec.private_pem.as_bytes(),
                Algorithm::HS256,
                None,
                &claims()
            ),
            Err(MintError::Algorithm(_))
        ));
        assert!(matches!(
            mint(
                k.ec.private_pem.as_bytes(),
                Algorithm::ES256,
                None,
                &json!([1])
            ),
            Err(MintError::Claims)
        ));
        let t = mint(
            k.ec.private_pem.as_bytes(),
            Algorithm::ES256,
            Some("kid-1"),
            &claims(),
        )
        .unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            json!({"alg": "ES256", "kid": "kid-1", "typ": "JWT"})
        );
    }
}
