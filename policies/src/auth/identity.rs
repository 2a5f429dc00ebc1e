//! Who a request is once its credential checked out ([`Identity`]), and why a credential did
//! not ([`AuthFailure`]).
//!
//! Every verifier (API keys, JWTs, token introspection) ends in one of these two types, so the
//! rest of the gateway (scope checks, rate-limit keys, headers to the upstream, access logs)
//! never needs to know which kind of credential it was. Failure reasons are a closed set of
//! short, stable labels ([`AuthFailure::reason`]) fit for metrics labels and access logs; the
//! client only ever sees the status and a `WWW-Authenticate` challenge, never the reason.

use serde_json::{Map, Value};

/// The kind of credential an [`Identity`] was proven with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// A gateway-issued API key (`rgk_<id>_<secret>`), checked against the key store.
    ApiKey,
    /// A signed JWT, checked locally against a JWKS.
    Jwt,
    /// An opaque bearer token, checked by the identity provider (RFC 7662 introspection).
    Introspection,
}

impl CredentialKind {
    /// A short stable label: `api_key`, `jwt` or `introspection`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::Jwt => "jwt",
            CredentialKind::Introspection => "introspection",
        }
    }
}

/// A verified caller.
///
/// `scopes` is sorted and deduplicated (every constructor in this module keeps it so; use
/// [`Identity::set_scopes`] when building one by hand), which lets [`Identity::has_scope`]
/// binary-search. An unsorted list can only make a present scope look absent (a denial),
/// never the reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// How the caller proved who it is.
    pub kind: CredentialKind,
    /// The client (application): the key's `client_id`, or the token's `client_id` / `azp`.
    pub client_id: Option<Box<str>>,
    /// The end user or principal (`sub`), when the credential names one.
    pub subject: Option<Box<str>>,
    /// The tenant, from the key entry or the configured tenant claim.
    pub tenant: Option<Box<str>>,
    /// Granted scopes, sorted and deduplicated.
    pub scopes: Vec<Box<str>>,
    /// Rate-limit / plan tier, from the key entry or the configured tier claim.
    pub tier: Option<Box<str>>,
    /// When the credential stops being valid, in Unix seconds (`None`: never).
    pub expires_at: Option<u64>,
}

impl Identity {
    /// An identity of `kind` with nothing else known.
    pub fn new(kind: CredentialKind) -> Self {
        Identity {
            kind,
            client_id: None,
            subject: None,
            tenant: None,
            scopes: Vec::new(),
            tier: None,
            expires_at: None,
        }
    }

    /// Replaces the scopes, sorting and deduplicating them.
    pub fn set_scopes<I, S>(&mut self, scopes: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        normalize_scopes(&mut self.scopes);
    }

    /// Whether `scope` was granted (binary search over the sorted scopes).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }
}

/// Sorts and deduplicates a scope list in place.
pub(crate) fn normalize_scopes(scopes: &mut Vec<Box<str>>) {
    scopes.sort_unstable();
    scopes.dedup();
}

/// Why a credential was not accepted.
///
/// Every variant but [`AuthFailure::IntrospectionUnavailable`] is the client's problem and
/// answers 401; that one is ours (the identity provider could not be asked) and answers 503.
/// The `Display` text is for operators' logs; attacker-supplied parts are `Debug`-quoted.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential was presented.
    #[error("no credential presented")]
    Missing,
    /// A credential was presented but is not well formed (bad header syntax, two conflicting
    /// credentials, a token that does not decode, a claim of the wrong type).
    #[error("malformed credential")]
    Malformed,
    /// The credential is of a kind the route does not accept.
    #[error("credential kind not accepted on this route")]
    KindNotAccepted,
    /// No API key with the presented id.
    #[error("unknown API key id")]
    UnknownKey,
    /// The API key id exists but the secret does not match.
    #[error("API key secret does not match")]
    BadSecret,
    /// The API key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// The credential expired (`exp` / `expires_at` passed, beyond any leeway).
    #[error("credential expired")]
    Expired,
    /// The token's `nbf` is still in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token's signature does not verify with the key its header names.
    #[error("bad token signature")]
    BadSignature,
    /// The token's `iss` is missing or not one of the configured issuers.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// The token's `aud` is missing or names none of the configured audiences.
    #[error("token audience not accepted")]
    WrongAudience,
    /// The token's `alg` is not allowed by the policy or does not match its key's algorithm.
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The token has no `kid` and the key set has several keys to choose from.
    #[error("token has no kid and the key set has several keys")]
    MissingKid,
    /// No key in the key set has this `kid`: the caller may refresh the JWKS (single-flight)
    /// and retry once.
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    /// A claim the policy requires is absent.
    #[error("required claim {0:?} missing")]
    MissingClaim(Box<str>),
    /// The identity provider says the token is not active.
    #[error("token not active")]
    Inactive,
    /// The identity provider could not be asked, or answered something unusable.
    #[error("token introspection unavailable")]
    IntrospectionUnavailable,
    /// The client has used up its share of full signature checks: the token was refused
    /// without being verified (it may be valid; try again later).
    #[error("too many token verifications from this client")]
    VerificationRateLimited,
}

impl AuthFailure {
    /// A short stable label for access logs and metrics (`snake_case`, no payload).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::KindNotAccepted => "kind_not_accepted",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSecret => "bad_secret",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthFailure::MissingKid => "missing_kid",
            AuthFailure::UnknownKid(_) => "unknown_kid",
            AuthFailure::MissingClaim(_) => "missing_claim",
            AuthFailure::Inactive => "inactive",
            AuthFailure::IntrospectionUnavailable => "introspection_unavailable",
            AuthFailure::VerificationRateLimited => "verification_rate_limited",
        }
    }

    /// The HTTP status to answer with: 401, or 503 for
    /// [`AuthFailure::IntrospectionUnavailable`].
    pub fn status(&self) -> u16 {
        match self {
            AuthFailure::IntrospectionUnavailable => 503,
            _ => 401,
        }
    }
}

/// Which claims (or introspection response fields) carry the tenant and the tier; both are
/// deployment-specific, so they are named in config. `None`: not taken from the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimNames {
    /// The claim holding the tenant (a string or an integer), e.g. `tenant` or `org_id`.
    pub tenant: Option<String>,
    /// The claim holding the tier (a string or an integer), e.g. `plan`.
    pub tier: Option<String>,
}

/// Numeric date claim (`exp`, `nbf`, `iat`): a non-negative JSON number, fractions floored.
/// `Ok(None)` when absent; `Malformed` when present with another type.
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, AuthFailure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else if let Some(f) = n.as_f64() {
                if f.is_finite() && f >= 0.0 {
                    // Floor; `as` saturates on values beyond u64, which is what we want.
                    Ok(Some(f as u64))
                } else {
                    Err(AuthFailure::Malformed)
                }
            } else {
                Err(AuthFailure::Malformed)
            }
        }
        Some(_) => Err(AuthFailure::Malformed),
    }
}

/// An optional string claim; `Malformed` if present and not a string.
fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Box<str>>, AuthFailure> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str().into())),
        Some(_) => Err(AuthFailure::Malformed),
    }
}

/// An optional string-or-integer claim (tenant and tier ids are often numbers).
fn label_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Box<str>>, AuthFailure> {
    match claims.get(name) {
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string().into())),
        _ => string_claim(claims, name),
    }
}

/// Scopes from a space-separated string or an array of strings.
fn scope_list(value: &Value, out: &mut Vec<Box<str>>) -> Result<(), AuthFailure> {
    match value {
        Value::String(s) => out.extend(s.split_ascii_whitespace().map(Into::into)),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.as_str().into()),
                    _ => return Err(AuthFailure::Malformed),
                }
            }
        }
        _ => return Err(AuthFailure::Malformed),
    }
    Ok(())
}

/// Builds an [`Identity`] from a JWT claims set or an introspection response: `sub` ->
/// subject, `client_id` (else `azp`) -> client, `scope` (space separated) else `scp` else
/// `scopes` (string or array) -> scopes, `exp` -> expiry, and the configured tenant and tier
/// claims. A present claim of the wrong type is `Malformed`, never silently ignored.
pub(crate) fn identity_from_claims(
    kind: CredentialKind,
    claims: &Map<String, Value>,
    names: &ClaimNames,
) -> Result<Identity, AuthFailure> {
    let mut identity = Identity::new(kind);
    identity.subject = string_claim(claims, "sub")?;
    identity.client_id = match string_claim(claims, "client_id")? {
        Some(c) => Some(c),
        None => string_claim(claims, "azp")?,
    };
    if let Some(name) = &names.tenant {
        identity.tenant = label_claim(claims, name)?;
    }
    if let Some(name) = &names.tier {
        identity.tier = label_claim(claims, name)?;
    }
    let scopes = ["scope", "scp", "scopes"]
        .iter()
        .find_map(|name| claims.get(*name).filter(|v| !v.is_null()));
    if let Some(value) = scopes {
        scope_list(value, &mut identity.scopes)?;
        normalize_scopes(&mut identity.scopes);
    }
    identity.expires_at = numeric_date(claims, "exp")?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn reasons_are_distinct_and_statuses_right() {
        let all = [
            AuthFailure::Missing,
            AuthFailure::Malformed,
            AuthFailure::KindNotAccepted,
            AuthFailure::UnknownKey,
            AuthFailure::BadSecret,
            AuthFailure::Revoked,
            AuthFailure::Expired,
            AuthFailure::NotYetValid,
            AuthFailure::BadSignature,
            AuthFailure::WrongIssuer,
            AuthFailure::WrongAudience,
            AuthFailure::AlgorithmNotAllowed,
            AuthFailure::MissingKid,
            AuthFailure::UnknownKid("k".into()),
            AuthFailure::MissingClaim("exp".into()),
            AuthFailure::Inactive,
            AuthFailure::IntrospectionUnavailable,
        ];
        let mut reasons: Vec<_> = all.iter().map(AuthFailure::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
        for f in &all {
            let want = if *f == AuthFailure::IntrospectionUnavailable {
                503
            } else {
                401
            };
            assert_eq!(f.status(), want, "{f:?}");
        }
        // Attacker-chosen kids are quoted in logs, never raw.
        let shown = AuthFailure::UnknownKid("a\nb".into()).to_string();
        assert!(shown.contains("\\n") && !shown.contains('\n'));
    }

    #[test]
    fn scopes_sorted_deduped_and_searchable() {
        let mut id = Identity::new(CredentialKind::Jwt);
        id.set_scopes(["write", "read", "admin", "read"]);
        assert_eq!(
            &*id.scopes,
            &["admin".into(), "read".into(), "write".into()] as &[Box<str>]
        );
        assert!(id.has_scope("read"));
        assert!(!id.has_scope("rea"));
        assert!(!id.has_scope("delete"));
    }

    #[test]
    fn claims_map_to_identity() {
        let names = ClaimNames {
            tenant: Some("org".into()),
            tier: Some("plan".into()),
        };
        let claims = map(json!({
            "sub": "user-1", "azp": "app-1", "org": 42, "plan": "gold",
            "scope": "b a  b", "exp": 1700000000.9
        }));
        let id = identity_from_claims(CredentialKind::Jwt, &claims, &names).unwrap();
        assert_eq!(id.subject.as_deref(), Some("user-1"));
        assert_eq!(id.client_id.as_deref(), Some("app-1"));
        assert_eq!(id.tenant.as_deref(), Some("42"));
        assert_eq!(id.tier.as_deref(), Some("gold"));
        assert_eq!(&*id.scopes, &["a".into(), "b".into()] as &[Box<str>]);
        assert_eq!(id.expires_at, Some(1_700_000_000));

        // client_id wins over azp; scp arrays.
        let claims = map(json!({"client_id": "c", "azp": "z", "scp": ["x", "y"]}));
        let id =
            identity_from_claims(CredentialKind::Jwt, &claims, &ClaimNames::default()).unwrap();
        assert_eq!(id.client_id.as_deref(), Some("c"));
        assert_eq!(id.scopes.len(), 2);
        assert_eq!(id.tenant, None);

        // Wrong types are refused, not ignored.
        for bad in [
            json!({"sub": 5}),
            json!({"scope": 5}),
            json!({"scp": ["a", 1]}),
            json!({"exp": "soon"}),
            json!({"exp": -1}),
        ] {
            let r = identity_from_claims(CredentialKind::Jwt, &map(bad.clone()), &names);
            assert_eq!(r, Err(AuthFailure::Malformed), "{bad}");
        }
    }
}
