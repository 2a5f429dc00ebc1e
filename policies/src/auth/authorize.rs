//! What a route demands ([`RouteAuth`]), whether an identity meets its scope rule
//! ([`authorize`]), and the `WWW-Authenticate` challenge of a refusal.
//!
//! Exists to keep the per-route decision apart from the verifiers: verifiers say *who* the
//! caller is, this says whether that is enough *here*. The response body of a refusal never
//! says which check failed; the status (401, 403, 503) and the challenge are all the client
//! learns, while the access log gets [`AuthFailure::reason`].

use super::credential::Credential;
use super::identity::{AuthFailure, CredentialKind, Identity};

/// The realm named in every challenge.
pub const REALM: &str = "ringgate";

/// Whether a route needs a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// A valid credential is required (no credential: 401).
    #[default]
    Required,
    /// Anonymous requests pass (without an identity); a credential that *is* presented must
    /// be valid (an invalid one is still 401: a client should not silently lose its identity).
    Optional,
    /// No authentication: credentials are neither checked nor required.
    None,
}

/// A set of [`CredentialKind`]s (a route's accepted methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialKinds(u8);

impl CredentialKinds {
    /// No kind.
    pub const EMPTY: CredentialKinds = CredentialKinds(0);
    /// Every kind.
    pub const ALL: CredentialKinds = CredentialKinds(0b111);

    const fn bit(kind: CredentialKind) -> u8 {
        match kind {
            CredentialKind::ApiKey => 1,
            CredentialKind::Jwt => 2,
            CredentialKind::Introspection => 4,
        }
    }

    /// This set plus `kind`.
    pub const fn with(self, kind: CredentialKind) -> CredentialKinds {
        CredentialKinds(self.0 | Self::bit(kind))
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: CredentialKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether bearer tokens (JWT or introspected) are in the set.
    pub const fn any_bearer(self) -> bool {
        self.contains(CredentialKind::Jwt) || self.contains(CredentialKind::Introspection)
    }
}

impl Default for CredentialKinds {
    fn default() -> Self {
        CredentialKinds::ALL
    }
}

impl FromIterator<CredentialKind> for CredentialKinds {
    fn from_iter<I: IntoIterator<Item = CredentialKind>>(iter: I) -> Self {
        iter.into_iter()
            .fold(CredentialKinds::EMPTY, CredentialKinds::with)
    }
}

/// Which scopes a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRule {
    /// At least one of these (an empty list requires nothing).
    AnyOf(Vec<Box<str>>),
    /// All of these (an empty list requires nothing).
    AllOf(Vec<Box<str>>),
}

impl Default for ScopeRule {
    fn default() -> Self {
        ScopeRule::AllOf(Vec::new())
    }
}

impl ScopeRule {
    /// The scopes the rule names.
    pub fn scopes(&self) -> &[Box<str>] {
        match self {
            ScopeRule::AnyOf(s) | ScopeRule::AllOf(s) => s,
        }
    }
}

/// What a route demands of its callers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteAuth {
    /// Required, optional, or none.
    pub mode: AuthMode,
    /// Credential kinds accepted (default: all).
    pub methods: CredentialKinds,
    /// Scopes required of the identity.
    pub scopes: ScopeRule,
    /// Which configured JWT policy checks tokens on this route (index into the snapshot's
    /// policy list); `None`: JWTs are not accepted here.
    pub jwt_policy: Option<usize>,
    /// Forward the credential header to the upstream (default: strip it).
    pub keep_credential: bool,
}

impl RouteAuth {
    /// A route without authentication.
    pub fn none() -> Self {
        RouteAuth {
            mode: AuthMode::None,
            ..RouteAuth::default()
        }
    }

    /// Whether the route takes credentials of `kind` (for JWTs, a policy must also be set).
    pub fn accepts(&self, kind: CredentialKind) -> bool {
        self.methods.contains(kind) && (kind != CredentialKind::Jwt || self.jwt_policy.is_some())
    }

    /// The first decision, before any verification, from what [`extract`] found:
    ///
    /// - `Ok(Some(credential))`: verify it, then [`authorize`] the identity;
    /// - `Ok(None)`: let the request through anonymously (mode `None`, or `Optional` without a
    ///   credential); scope rules do not apply;
    /// - `Err(Missing)` (mode `Required`, nothing presented) or `Err(KindNotAccepted)`.
    ///
    /// A JWT-shaped bearer token on a route that introspects but does not verify JWTs locally
    /// comes back as [`Credential::Opaque`]: RFC 7662 providers introspect JWT access tokens
    /// too. The reverse is not possible (an opaque token cannot be verified locally).
    ///
    /// [`extract`]: super::extract
    pub fn screen<'a>(
        &self,
        presented: Option<Credential<'a>>,
    ) -> Result<Option<Credential<'a>>, AuthFailure> {
        match (self.mode, presented) {
            (AuthMode::None, _) => Ok(None),
            (AuthMode::Required, None) => Err(AuthFailure::Missing),
            (AuthMode::Optional, None) => Ok(None),
            (_, Some(c)) if self.accepts(c.kind()) => Ok(Some(c)),
            (_, Some(Credential::Jwt(token))) if self.accepts(CredentialKind::Introspection) => {
                Ok(Some(Credential::Opaque(token)))
            }
            (_, Some(_)) => Err(AuthFailure::KindNotAccepted),
        }
    }
}

/// The identity lacks a required scope: answer 403.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[error("insufficient scope")]
pub struct Forbidden;

impl Forbidden {
    /// 403.
    pub fn status(&self) -> u16 {
        403
    }

    /// `insufficient_scope`, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        "insufficient_scope"
    }
}

/// Checks the identity's scopes against the rule.
pub fn authorize(identity: &Identity, rule: &ScopeRule) -> Result<(), Forbidden> {
    let ok = match rule {
        ScopeRule::AnyOf(scopes) => {
            scopes.is_empty() || scopes.iter().any(|s| identity.has_scope(s))
        }
        ScopeRule::AllOf(scopes) => scopes.iter().all(|s| identity.has_scope(s)),
    };
    if ok {
        Ok(())
    } else {
        Err(Forbidden)
    }
}

/// The `WWW-Authenticate` value for a 401 on `route`.
///
/// One challenge per accepted scheme (`Bearer` for JWT/introspection, `ApiKey` for keys),
/// the presented kind's first. The `Bearer` challenge carries an RFC 6750 error code when a
/// bearer token (or an unclassifiable credential) was at fault: `invalid_request` for
/// `Malformed`, `invalid_token` for a token that failed a check, none when nothing (or the
/// wrong kind) was presented. No `error_description`: the client is not told which check.
/// For [`AuthFailure::IntrospectionUnavailable`] (503) the value is the plain challenge.
pub fn www_authenticate(
    route: &RouteAuth,
    failure: &AuthFailure,
    presented: Option<CredentialKind>,
) -> String {
    let bearer_at_fault = presented.is_none_or(|k| k != CredentialKind::ApiKey);
    let error = match failure {
        AuthFailure::Missing
        | AuthFailure::KindNotAccepted
        | AuthFailure::IntrospectionUnavailable
        // Not judged: telling the client its token is invalid would be wrong.
        | AuthFailure::VerificationRateLimited => None,
        _ if !bearer_at_fault => None,
        AuthFailure::Malformed => Some("invalid_request"),
        _ => Some("invalid_token"),
    };
    let bearer = route.methods.any_bearer() || route.methods.is_empty();
    let api_key = route.methods.contains(CredentialKind::ApiKey);
    let mut bearer_challenge = format!("Bearer realm=\"{REALM}\"");
    if let Some(code) = error {
        bearer_challenge.push_str(", error=\"");
        bearer_challenge.push_str(code);
        bearer_challenge.push('"');
    }
    let api_key_challenge = format!("ApiKey realm=\"{REALM}\"");
    match (bearer, api_key) {
        (true, true) if presented == Some(CredentialKind::ApiKey) => {
            format!("{api_key_challenge}, {bearer_challenge}")
        }
        (true, true) => format!("{bearer_challenge}, {api_key_challenge}"),
        (false, true) => api_key_challenge,
        _ => bearer_challenge,
    }
}

/// The `WWW-Authenticate` value for a 403 (RFC 6750 `insufficient_scope`, listing the rule's
/// scopes), or `None` when the route takes no bearer tokens (API-key clients get no
/// challenge with a 403).
pub fn www_authenticate_forbidden(route: &RouteAuth) -> Option<String> {
    if !route.methods.any_bearer() {
        return None;
    }
    let mut value = format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\"");
    // Only scope tokens that are safe inside a quoted string (RFC 6749 scope-token syntax).
    let scopes: Vec<&str> = route
        .scopes
        .scopes()
        .iter()
        .map(|s| &**s)
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        })
        .collect();
    if !scopes.is_empty() {
        value.push_str(", scope=\"");
        value.push_str(&scopes.join(" "));
        value.push('"');
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(scopes: &[&str]) -> Identity {
        let mut id = Identity::new(CredentialKind::Jwt);
        id.set_scopes(scopes.iter().copied());
        id
    }

    fn rule_any(s: &[&str]) -> ScopeRule {
        ScopeRule::AnyOf(s.iter().map(|&x| x.into()).collect())
    }

    fn rule_all(s: &[&str]) -> ScopeRule {
        ScopeRule::AllOf(s.iter().map(|&x| x.into()).collect())
    }

    #[test]
    fn scope_rules() {
        let id = identity(&["orders:read", "orders:write", "profile"]);
        assert_eq!(authorize(&id, &rule_any(&["admin", "orders:read"])), Ok(()));
        assert_eq!(
            authorize(&id, &rule_any(&["admin", "billing"])),
            Err(Forbidden)
        );
        assert_eq!(
            authorize(&id, &rule_all(&["orders:read", "orders:write"])),
            Ok(())
        );
        assert_eq!(
            authorize(&id, &rule_all(&["orders:read", "admin"])),
            Err(Forbidden)
        );
        assert_eq!(authorize(&id, &rule_any(&[])), Ok(()));
        assert_eq!(authorize(&id, &rule_all(&[])), Ok(()));
        assert_eq!(authorize(&identity(&[]), &rule_any(&["x"])), Err(Forbidden));
        // Prefixes are not scopes.
        assert_eq!(authorize(&id, &rule_all(&["orders"])), Err(Forbidden));
        assert_eq!(Forbidden.status(), 403);
        assert_eq!(Forbidden.reason(), "insufficient_scope");
    }

    #[test]
    fn screening_by_mode_and_method() {
        let key = Credential::ApiKey(b"rgk_a_b");
        let jwt = Credential::Jwt(b"eyJ.a.b");
        let opaque = Credential::Opaque(b"tok");
        let required = RouteAuth {
            methods: CredentialKinds::EMPTY
                .with(CredentialKind::ApiKey)
                .with(CredentialKind::Introspection),
            ..RouteAuth::default()
        };
        assert_eq!(required.screen(None), Err(AuthFailure::Missing));
        assert_eq!(required.screen(Some(key)), Ok(Some(key)));
        assert_eq!(required.screen(Some(opaque)), Ok(Some(opaque)));
        // A JWT-shaped token on an introspection route is introspected.
        assert_eq!(
            required.screen(Some(jwt)),
            Ok(Some(Credential::Opaque(b"eyJ.a.b")))
        );
        let keys_only = RouteAuth {
            methods: [CredentialKind::ApiKey].into_iter().collect(),
            ..RouteAuth::default()
        };
        assert_eq!(
            keys_only.screen(Some(jwt)),
            Err(AuthFailure::KindNotAccepted)
        );
        assert_eq!(
            keys_only.screen(Some(opaque)),
            Err(AuthFailure::KindNotAccepted)
        );
        let jwt_only = RouteAuth {
            methods: [CredentialKind::Jwt].into_iter().collect(),
            jwt_policy: Some(0),
            ..RouteAuth::default()
        };
        assert_eq!(
            jwt_only.screen(Some(opaque)),
            Err(AuthFailure::KindNotAccepted)
        );
        // JWTs need a policy as well as the method; without one they may still be introspected.
        let jwt_no_policy = RouteAuth {
            methods: [CredentialKind::Jwt].into_iter().collect(),
            ..RouteAuth::default()
        };
        assert_eq!(
            jwt_no_policy.screen(Some(jwt)),
            Err(AuthFailure::KindNotAccepted)
        );
        assert_eq!(
            RouteAuth::default().screen(Some(jwt)),
            Ok(Some(Credential::Opaque(b"eyJ.a.b")))
        );
        let jwt_route = RouteAuth {
            jwt_policy: Some(0),
            ..RouteAuth::default()
        };
        assert_eq!(jwt_route.screen(Some(jwt)), Ok(Some(jwt)));

        let optional = RouteAuth {
            mode: AuthMode::Optional,
            ..required.clone()
        };
        assert_eq!(optional.screen(None), Ok(None));
        assert_eq!(optional.screen(Some(key)), Ok(Some(key)));
        assert_eq!(
            optional.screen(Some(jwt)),
            Ok(Some(Credential::Opaque(b"eyJ.a.b")))
        );

        let none = RouteAuth::none();
        assert_eq!(none.screen(None), Ok(None));
        assert_eq!(none.screen(Some(key)), Ok(None));

        let kinds: CredentialKinds = [CredentialKind::Jwt].into_iter().collect();
        assert!(kinds.contains(CredentialKind::Jwt) && !kinds.contains(CredentialKind::ApiKey));
        assert!(CredentialKinds::EMPTY.is_empty());
    }

    #[test]
    fn challenges() {
        let all = RouteAuth::default();
        let bearer_only = RouteAuth {
            methods: [CredentialKind::Jwt].into_iter().collect(),
            ..RouteAuth::default()
        };
        let keys_only = RouteAuth {
            methods: [CredentialKind::ApiKey].into_iter().collect(),
            ..RouteAuth::default()
        };
        use CredentialKind::{ApiKey, Jwt};
        assert_eq!(
            www_authenticate(&bearer_only, &AuthFailure::Missing, None),
            r#"Bearer realm="ringgate""#
        );
        assert_eq!(
            www_authenticate(&bearer_only, &AuthFailure::Expired, Some(Jwt)),
            r#"Bearer realm="ringgate", error="invalid_token""#
        );
        assert_eq!(
            www_authenticate(
                &bearer_only,
                &AuthFailure::UnknownKid("k".into()),
                Some(Jwt)
            ),
            r#"Bearer realm="ringgate", error="invalid_token""#
        );
        assert_eq!(
            www_authenticate(&bearer_only, &AuthFailure::Malformed, None),
            r#"Bearer realm="ringgate", error="invalid_request""#
        );
        assert_eq!(
            www_authenticate(&keys_only, &AuthFailure::BadSecret, Some(ApiKey)),
            r#"ApiKey realm="ringgate""#
        );
        assert_eq!(
            www_authenticate(&all, &AuthFailure::Missing, None),
            r#"Bearer realm="ringgate", ApiKey realm="ringgate""#
        );
        assert_eq!(
            www_authenticate(&all, &AuthFailure::Revoked, Some(ApiKey)),
            r#"ApiKey realm="ringgate", Bearer realm="ringgate""#
        );
        assert_eq!(
            www_authenticate(&all, &AuthFailure::BadSignature, Some(Jwt)),
            r#"Bearer realm="ringgate", error="invalid_token", ApiKey realm="ringgate""#
        );
        // Nothing in the challenge names the failed check.
        for f in [
            AuthFailure::Expired,
            AuthFailure::WrongAudience,
            AuthFailure::BadSignature,
        ] {
            let v = www_authenticate(&all, &f, Some(Jwt));
            assert!(!v.contains(f.reason()), "{v}");
        }

        let scoped = RouteAuth {
            scopes: rule_all(&["orders:read", "bad\"scope"]),
            ..RouteAuth::default()
        };
        assert_eq!(
            www_authenticate_forbidden(&scoped).as_deref(),
            Some(r#"Bearer realm="ringgate", error="insufficient_scope", scope="orders:read""#)
        );
        assert_eq!(www_authenticate_forbidden(&keys_only), None);
    }
}
