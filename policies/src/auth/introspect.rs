//! Opaque bearer tokens, checked by the identity provider (RFC 7662 token introspection):
//! the request body to send, reading the answer, and the per-core cache of answers.
//!
//! Exists so the I/O side (a control-thread HTTP client, written elsewhere) only moves bytes:
//! it POSTs [`introspection_request_body`] to the provider's introspection endpoint with
//! `Content-Type: application/x-www-form-urlencoded` and its client credentials, and hands
//! the response body to [`parse_introspection`]. Any transport failure or non-200 status is
//! the caller's [`AuthFailure::IntrospectionUnavailable`] (503).
//!
//! Answers are cached per core ([`IntrospectionCache`], keyed by [`TokenDigest`]) for
//! `min(configured ttl, exp - now)`: the ttl bounds how long a token revoked at the provider
//! is still honoured here. Tokens the provider called inactive are remembered too, for a short
//! `negative ttl` ([`IntrospectionCache::with_negative_ttl`]), in a quarter of the capacity: a
//! repeated junk token costs a probe, not a call. Other failures (the provider unavailable) are
//! not remembered.

use std::time::Duration;

use serde_json::{Map, Value};

use super::cache::{ExpiringCache, TokenDigest};
use super::identity::{
    identity_from_claims, numeric_date, AuthFailure, ClaimNames, CredentialKind, Identity,
};

/// The form body of an introspection request:
/// `token=<percent-encoded token>&token_type_hint=access_token`.
pub fn introspection_request_body(token: &[u8]) -> Vec<u8> {
    const HINT: &[u8] = b"&token_type_hint=access_token";
    let mut body = Vec::with_capacity(6 + token.len() * 3 + HINT.len());
    body.extend_from_slice(b"token=");
    for &b in token {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            body.push(b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            body.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    body.extend_from_slice(HINT);
    body
}

/// Reads an introspection response at `now_unix`.
///
/// `active: true` -> the identity (`sub`, `client_id`, `scope`, `exp`, and the configured
/// tenant/tier fields, as for JWT claims); `active: false` -> `Inactive`; an active token whose
/// `exp` has passed -> `Expired`, whose `nbf` is ahead -> `NotYetValid` (no leeway: the
/// provider's clock decided). A body that is not a JSON object with a boolean `active`, or
/// with fields of the wrong type, -> `IntrospectionUnavailable` (the provider misbehaved; the
/// client is not to blame).
pub fn parse_introspection(
    json: &[u8],
    names: &ClaimNames,
    now_unix: u64,
) -> Result<Identity, AuthFailure> {
    let fields: Map<String, Value> =
        serde_json::from_slice(json).map_err(|_| AuthFailure::IntrospectionUnavailable)?;
    let unusable = |_: AuthFailure| AuthFailure::IntrospectionUnavailable;
    match fields.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(AuthFailure::Inactive),
        _ => return Err(AuthFailure::IntrospectionUnavailable),
    }
    let nbf = numeric_date(&fields, "nbf").map_err(unusable)?;
    let identity =
        identity_from_claims(CredentialKind::Introspection, &fields, names).map_err(unusable)?;
    if identity.expires_at.is_some_and(|exp| now_unix >= exp) {
        return Err(AuthFailure::Expired);
    }
    if nbf.is_some_and(|nbf| now_unix < nbf) {
        return Err(AuthFailure::NotYetValid);
    }
    Ok(identity)
}

/// A core's cache of active introspection answers: bounded, each kept for
/// `min(ttl, exp - now)`. Not shared (`&mut self`, no locks).
pub struct IntrospectionCache {
    entries: ExpiringCache<Identity>,
    ttl_secs: u64,
    inactive: ExpiringCache<()>,
    negative_ttl_secs: u64,
}

impl IntrospectionCache {
    /// At most `capacity` answers (0 disables caching), each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        IntrospectionCache {
            entries: ExpiringCache::new(capacity),
            ttl_secs: ttl.as_secs(),
            inactive: ExpiringCache::new(if capacity == 0 {
                0
            } else {
                (capacity / 4).max(16)
            }),
            negative_ttl_secs: 0,
        }
    }

    /// Remembers inactive tokens for `ttl` (whole seconds; 0, the default, does not).
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl_secs = ttl.as_secs();
        self
    }

    /// Remembers that the provider called this token inactive.
    pub fn insert_inactive(&mut self, token: TokenDigest, now_unix: u64) {
        if self.negative_ttl_secs > 0 {
            let until = now_unix.saturating_add(self.negative_ttl_secs);
            self.inactive.insert(token, (), until, now_unix);
        }
    }

    /// Whether the provider called this token inactive within the negative ttl.
    pub fn is_inactive(&mut self, token: &TokenDigest, now_unix: u64) -> bool {
        self.inactive.find(token, now_unix).is_some()
    }

    /// The cached identity for a token, if still fresh. Compute the digest once per request
    /// with [`TokenDigest::of`]; it also keys in-flight introspection calls.
    pub fn get(&mut self, token: &TokenDigest, now_unix: u64) -> Option<&Identity> {
        let index = self.entries.find(token, now_unix)?;
        self.entries.value(index)
    }

    /// Remembers an active token's identity until `min(now + ttl, identity.expires_at)`.
    pub fn insert(&mut self, token: TokenDigest, identity: Identity, now_unix: u64) {
        let until = now_unix.saturating_add(self.ttl_secs);
        let expires_at = identity.expires_at.map_or(until, |exp| exp.min(until));
        self.entries.insert(token, identity, expires_at, now_unix);
    }

    /// Forgets a token (e.g. the upstream reported it revoked).
    pub fn remove(&mut self, token: &TokenDigest) {
        self.entries.remove(token);
    }

    /// Entries held (at most the capacity).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.inactive.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn request_body_is_form_encoded() {
        assert_eq!(
            introspection_request_body(b"abc-._~XYZ019"),
            b"token=abc-._~XYZ019&token_type_hint=access_token".to_vec()
        );
        assert_eq!(
            introspection_request_body(b"a+b/c=&d e\xff"),
            b"token=a%2Bb%2Fc%3D%26d%20e%FF&token_type_hint=access_token".to_vec()
        );
    }

    #[test]
    fn active_inactive_and_broken_answers() {
        let names = ClaimNames {
            tenant: Some("tenant_id".into()),
            tier: Some("plan".into()),
        };
        let body = format!(
            r#"{{"active":true,"scope":"read write read","client_id":"app","sub":"u1","exp":{},"tenant_id":"t9","plan":"pro","token_type":"Bearer"}}"#,
            NOW + 100
        );
        let id = parse_introspection(body.as_bytes(), &names, NOW).unwrap();
        assert_eq!(id.kind, CredentialKind::Introspection);
        assert_eq!(id.client_id.as_deref(), Some("app"));
        assert_eq!(id.subject.as_deref(), Some("u1"));
        assert_eq!(id.tenant.as_deref(), Some("t9"));
        assert_eq!(id.tier.as_deref(), Some("pro"));
        assert_eq!(&*id.scopes, &["read".into(), "write".into()] as &[Box<str>]);
        assert_eq!(id.expires_at, Some(NOW + 100));

        assert_eq!(
            parse_introspection(body.as_bytes(), &names, NOW + 100),
            Err(AuthFailure::Expired)
        );
        let later = format!(r#"{{"active":true,"nbf":{}}}"#, NOW + 5);
        assert_eq!(
            parse_introspection(later.as_bytes(), &names, NOW),
            Err(AuthFailure::NotYetValid)
        );
        assert_eq!(
            parse_introspection(br#"{"active":false,"sub":"u1"}"#, &names, NOW),
            Err(AuthFailure::Inactive)
        );
        let minimal =
            parse_introspection(br#"{"active":true}"#, &ClaimNames::default(), NOW).unwrap();
        assert_eq!(minimal.client_id, None);
        for broken in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"active":"true"}"#,
            br#"{"active":true,"exp":"x"}"#,
            b"<html>",
        ] {
            assert_eq!(
                parse_introspection(broken, &names, NOW),
                Err(AuthFailure::IntrospectionUnavailable),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn cache_ttl_is_min_of_ttl_and_exp() {
        let mut cache = IntrospectionCache::new(4, Duration::from_secs(60));
        let (a, b) = (TokenDigest::of(b"token-a"), TokenDigest::of(b"token-b"));
        let mut id = Identity::new(CredentialKind::Introspection);
        id.expires_at = Some(NOW + 10);
        cache.insert(a, id.clone(), NOW);
        id.expires_at = None;
        cache.insert(b, id, NOW);
        assert!(cache.get(&a, NOW + 9).is_some());
        assert!(cache.get(&a, NOW + 10).is_none(), "exp bounds the entry");
        assert!(cache.get(&b, NOW + 59).is_some());
        assert!(cache.get(&b, NOW + 60).is_none(), "ttl bounds the entry");
        cache.remove(&b);
        assert!(cache.get(&b, NOW).is_none());
        for i in 0..40u32 {
            cache.insert(
                TokenDigest::of(&i.to_le_bytes()),
                Identity::new(CredentialKind::Introspection),
                NOW,
            );
            assert!(cache.len() <= 4);
        }
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn inactive_answers_are_remembered_briefly_and_bounded() {
        let junk = TokenDigest::of(b"junk");
        let mut off = IntrospectionCache::new(64, Duration::from_secs(60));
        off.insert_inactive(junk, NOW);
        assert!(
            !off.is_inactive(&junk, NOW),
            "not remembered without a negative ttl"
        );
        let mut cache = IntrospectionCache::new(64, Duration::from_secs(60))
            .with_negative_ttl(Duration::from_secs(5));
        cache.insert_inactive(junk, NOW);
        assert!(cache.is_inactive(&junk, NOW + 4));
        assert!(
            !cache.is_inactive(&junk, NOW + 5),
            "forgotten after the ttl"
        );
        assert!(cache.get(&junk, NOW).is_none(), "never an identity");
        for i in 0..1000u32 {
            cache.insert_inactive(TokenDigest::of(&i.to_le_bytes()), NOW);
        }
        let remembered = (0..1000u32)
            .filter(|i| cache.is_inactive(&TokenDigest::of(&i.to_le_bytes()), NOW))
            .count();
        assert!(remembered <= 16, "bounded: {remembered}");
    }
}
