//! Finding the credential in a request head, without copying it.
//!
//! Exists so that every verifier sees one already-classified credential, and so the rules for
//! where credentials may appear live in one place:
//!
//! - `X-API-Key: <key>` or `Authorization: ApiKey <key>` -> [`Credential::ApiKey`];
//! - `Authorization: Bearer <token>` -> [`Credential::Jwt`] when the token has the compact JWS
//!   shape (three non-empty dot-separated parts, the first starting `eyJ`, i.e. a base64url
//!   JSON object), otherwise [`Credential::Opaque`] (for introspection).
//!
//! Schemes and header names are matched ASCII case-insensitively; whitespace around the
//! value is ignored. An `Authorization` header with another scheme (`Basic`, `Digest`, ...) is
//! not ours and is ignored, so it can pass through to an upstream that wants it. Presenting
//! two *different* credentials (in two headers, or the same header twice) is `Malformed`: the
//! gateway never guesses which one the client meant; the same credential twice is accepted.
//! An empty key or token, or one with characters its syntax does not allow, is `Malformed`.

use super::identity::{AuthFailure, CredentialKind};

/// A credential found in the request, borrowing the header bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API key (not yet checked for the `rgk_` format: [`KeyStore::verify`] does that).
    ///
    /// [`KeyStore::verify`]: super::KeyStore::verify
    ApiKey(&'a [u8]),
    /// A bearer token shaped like a JWT.
    Jwt(&'a [u8]),
    /// A bearer token of any other shape, to be introspected.
    Opaque(&'a [u8]),
}

impl<'a> Credential<'a> {
    /// The verifier this credential goes to.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Credential::ApiKey(_) => CredentialKind::ApiKey,
            Credential::Jwt(_) => CredentialKind::Jwt,
            Credential::Opaque(_) => CredentialKind::Introspection,
        }
    }

    /// The key or token bytes.
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Credential::ApiKey(b) | Credential::Jwt(b) | Credential::Opaque(b) => b,
        }
    }
}

/// Which header carried the credential, so the proxy can strip exactly that header when the
/// route does not keep credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `X-API-Key`.
    ApiKeyHeader,
    /// `Authorization`.
    Authorization,
}

/// A credential and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The credential.
    pub credential: Credential<'a>,
    /// The header it was found in (the first one, if it was repeated identically).
    pub source: CredentialSource,
}

/// Finds the request's credential.
///
/// `Ok(None)`: no credential of ours (the route's mode decides whether that is a 401).
/// `Err(Malformed)`: a credential header we own is empty or malformed, or two different
/// credentials were presented.
pub fn extract<'a>(headers: &[httparse::Header<'a>]) -> Result<Option<Presented<'a>>, AuthFailure> {
    let mut found: Option<Presented<'a>> = None;
    for header in headers {
        let candidate = if header.name.eq_ignore_ascii_case("x-api-key") {
            let key = trim_ows(header.value);
            if !is_key_syntax(key) {
                return Err(AuthFailure::Malformed);
            }
            Presented {
                credential: Credential::ApiKey(key),
                source: CredentialSource::ApiKeyHeader,
            }
        } else if header.name.eq_ignore_ascii_case("authorization") {
            match parse_authorization(header.value)? {
                Some(credential) => Presented {
                    credential,
                    source: CredentialSource::Authorization,
                },
                None => continue,
            }
        } else {
            continue;
        };
        match &found {
            None => found = Some(candidate),
            Some(first) if first.credential == candidate.credential => {}
            Some(_) => return Err(AuthFailure::Malformed),
        }
    }
    Ok(found)
}

/// Parses one `Authorization` value: `Ok(None)` for a scheme that is not ours.
fn parse_authorization(value: &[u8]) -> Result<Option<Credential<'_>>, AuthFailure> {
    let value = trim_ows(value);
    let (scheme, rest) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&value[..i], trim_ows(&value[i..])),
        None => (value, &[][..]),
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        if !is_b64token(rest) {
            return Err(AuthFailure::Malformed);
        }
        Ok(Some(if looks_like_jwt(rest) {
            Credential::Jwt(rest)
        } else {
            Credential::Opaque(rest)
        }))
    } else if scheme.eq_ignore_ascii_case(b"apikey") {
        if !is_key_syntax(rest) {
            return Err(AuthFailure::Malformed);
        }
        Ok(Some(Credential::ApiKey(rest)))
    } else {
        Ok(None)
    }
}

/// Strips leading and trailing spaces and tabs.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// An API key: non-empty visible ASCII, no spaces.
fn is_key_syntax(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|b| b.is_ascii_graphic())
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(v: &[u8]) -> bool {
    let body_len = v.len() - v.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && v[..body_len].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Compact JWS shape: exactly three non-empty dot-separated parts, the header part starting
/// with `eyJ` (base64url of `{"`). Cheap and allocation-free; the JWT verifier decodes for real.
pub fn looks_like_jwt(token: &[u8]) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            header.starts_with(b"eyJ") && !payload.is_empty() && !signature.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

    #[test]
    fn api_key_header_and_scheme() {
        let got = extract(&[h("X-Api-Key", "  rgk_abc_def \t")])
            .unwrap()
            .unwrap();
        assert_eq!(got.credential, Credential::ApiKey(b"rgk_abc_def"));
        assert_eq!(got.source, CredentialSource::ApiKeyHeader);
        assert_eq!(got.credential.kind(), CredentialKind::ApiKey);

        let got = extract(&[h("authorization", "APIKEY   rgk_abc_def")])
            .unwrap()
            .unwrap();
        assert_eq!(got.credential, Credential::ApiKey(b"rgk_abc_def"));
        assert_eq!(got.source, CredentialSource::Authorization);
    }

    #[test]
    fn bearer_jwt_or_opaque() {
        let value = format!("bearer {JWT}");
        let got = extract(&[h("Authorization", &value)]).unwrap().unwrap();
        assert_eq!(got.credential, Credential::Jwt(JWT.as_bytes()));
        assert_eq!(got.credential.kind(), CredentialKind::Jwt);

        for opaque in [
            "2YotnFZFEjr1zCsicMWpAA",
            "a.b.c",
            "eyJ.x",
            "eyJa..c",
            "eyJa.b.c.d",
            "tok==",
        ] {
            let value = format!("Bearer {opaque}");
            let got = extract(&[h("Authorization", &value)]).unwrap().unwrap();
            assert_eq!(
                got.credential,
                Credential::Opaque(opaque.as_bytes()),
                "{opaque}"
            );
            assert_eq!(got.credential.kind(), CredentialKind::Introspection);
        }
    }

    #[test]
    fn nothing_or_other_schemes() {
        assert_eq!(extract(&[]).unwrap(), None);
        assert_eq!(
            extract(&[h("Host", "x"), h("Cookie", "a=b")]).unwrap(),
            None
        );
        // Not our schemes: ignored, left for the upstream.
        assert_eq!(
            extract(&[h("Authorization", "Basic dXNlcjpwdw==")]).unwrap(),
            None
        );
        assert_eq!(extract(&[h("Authorization", "Bearerx tok")]).unwrap(), None);
        // ... and do not conflict with ours.
        let got = extract(&[
            h("Authorization", "Basic dXNlcjpwdw=="),
            h("X-API-Key", "k"),
        ])
        .unwrap();
        assert_eq!(got.unwrap().credential, Credential::ApiKey(b"k"));
    }

    #[test]
    fn empty_or_bad_syntax_is_malformed() {
        for (name, value) in [
            ("Authorization", "Bearer"),
            ("Authorization", "Bearer   "),
            ("Authorization", "bearer a b"),
            ("Authorization", "Bearer tok\"en"),
            ("Authorization", "Bearer ==="),
            ("Authorization", "Bearer =abc"),
            ("Authorization", "ApiKey"),
            ("Authorization", "ApiKey a b"),
            ("X-API-Key", ""),
            ("X-API-Key", "   "),
            ("X-API-Key", "a b"),
        ] {
            assert_eq!(
                extract(&[h(name, value)]),
                Err(AuthFailure::Malformed),
                "{name}: {value:?}"
            );
        }
        // Non-ASCII bytes.
        let bad = [httparse::Header {
            name: "X-API-Key",
            value: b"k\xffk",
        }];
        assert_eq!(extract(&bad), Err(AuthFailure::Malformed));
    }

    #[test]
    fn two_credentials() {
        // Different credentials conflict, wherever they are.
        let bearer = format!("Bearer {JWT}");
        for headers in [
            vec![h("X-API-Key", "k1"), h("Authorization", &bearer)],
            vec![h("X-API-Key", "k1"), h("X-API-Key", "k2")],
            vec![h("Authorization", "ApiKey k1"), h("X-API-Key", "k2")],
            vec![
                h("Authorization", "Bearer a"),
                h("Authorization", "Bearer b"),
            ],
        ] {
            assert_eq!(
                extract(&headers),
                Err(AuthFailure::Malformed),
                "{headers:?}"
            );
        }
        // The same credential twice is harmless; the first source is reported.
        let got = extract(&[h("X-API-Key", "k1"), h("Authorization", "ApiKey k1")])
            .unwrap()
            .unwrap();
        assert_eq!(got.credential, Credential::ApiKey(b"k1"));
        assert_eq!(got.source, CredentialSource::ApiKeyHeader);
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt(JWT.as_bytes()));
        assert!(!looks_like_jwt(b"eyJa.b."));
        assert!(!looks_like_jwt(b"abc.def.ghi"));
        assert!(!looks_like_jwt(b""));
    }
}
