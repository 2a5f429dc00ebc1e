//! Method and header conditions, checked only on candidates the index already matched by
//! host and path (so their cost is per candidate, not per route).
//!
//! Methods are HTTP tokens, upper-cased at build time (`get` in config means `GET`) and
//! compared exactly with the request's method, which HTTP defines as case-sensitive.
//! Header names are stored lower-case and compared ASCII case-insensitively; values are
//! compared byte for byte. With repeated headers, any occurrence may satisfy a matcher.

use super::spec::HeaderMatch;

/// A compiled header matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeaderCond {
    Present(Box<str>),
    Exact(Box<str>, Box<[u8]>),
    Prefix(Box<str>, Box<[u8]>),
}

impl HeaderCond {
    fn holds(&self, headers: &[httparse::Header<'_>]) -> bool {
        let (Self::Present(name) | Self::Exact(name, _) | Self::Prefix(name, _)) = self;
        headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name)
                && match self {
                    Self::Present(_) => true,
                    Self::Exact(_, want) => h.value == &want[..],
                    Self::Prefix(_, want) => h.value.starts_with(want),
                }
        })
    }
}

/// Everything a route requires beyond host and path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Conditions {
    /// Upper-case methods; empty accepts any.
    methods: Box<[Box<[u8]>]>,
    /// All must hold.
    headers: Box<[HeaderCond]>,
}

/// A method or header name from config that is not an HTTP token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConditionProblem {
    /// The offending method.
    Method(String),
    /// The offending header name.
    HeaderName(String),
}

impl Conditions {
    /// Compiles methods and header matchers, returning every bad one.
    pub(crate) fn compile(
        methods: &[String],
        headers: &[HeaderMatch],
    ) -> Result<Self, Vec<ConditionProblem>> {
        let mut problems = Vec::new();
        let mut compiled_methods: Vec<Box<[u8]>> = Vec::with_capacity(methods.len());
        for method in methods {
            if !is_token(method) {
                problems.push(ConditionProblem::Method(method.clone()));
                continue;
            }
            let upper: Box<[u8]> = method.to_ascii_uppercase().into_bytes().into();
            if !compiled_methods.contains(&upper) {
                compiled_methods.push(upper);
            }
        }
        let mut compiled_headers = Vec::with_capacity(headers.len());
        for header in headers {
            let (HeaderMatch::Present(name)
            | HeaderMatch::Exact(name, _)
            | HeaderMatch::Prefix(name, _)) = header;
            if !is_token(name) {
                problems.push(ConditionProblem::HeaderName(name.clone()));
                continue;
            }
            let lower: Box<str> = name.to_ascii_lowercase().into();
            compiled_headers.push(match header {
                HeaderMatch::Present(_) => HeaderCond::Present(lower),
                HeaderMatch::Exact(_, value) => HeaderCond::Exact(lower, value.as_bytes().into()),
                HeaderMatch::Prefix(_, value) => HeaderCond::Prefix(lower, value.as_bytes().into()),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            methods: compiled_methods.into(),
            headers: compiled_headers.into(),
        })
    }

    /// True when the method is accepted and every header matcher holds.
    #[inline]
    pub(crate) fn accept(&self, method: &[u8], headers: &[httparse::Header<'_>]) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *method))
            && self.headers.iter().all(|h| h.holds(headers))
    }
}

/// RFC 9110 `token`: one or more `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
        httparse::Header { name, value }
    }

    #[test]
    fn methods_are_upper_cased_from_config_and_compared_exactly() {
        let c = Conditions::compile(&["get".into(), "POST".into()], &[]).unwrap();
        assert!(c.accept(b"GET", &[]));
        assert!(c.accept(b"POST", &[]));
        assert!(!c.accept(b"get", &[]));
        assert!(!c.accept(b"PUT", &[]));
        assert!(Conditions::default().accept(b"ANYTHING", &[]));
    }

    #[test]
    fn header_names_ignore_case_values_do_not_and_any_occurrence_counts() {
        let c = Conditions::compile(&[], &[HeaderMatch::Exact("X-Env".into(), "Canary".into())])
            .unwrap();
        assert!(c.accept(b"GET", &[header("x-env", b"Canary")]));
        assert!(!c.accept(b"GET", &[header("x-env", b"canary")]));
        assert!(c.accept(
            b"GET",
            &[header("X-ENV", b"prod"), header("x-env", b"Canary")]
        ));
    }

    #[test]
    fn bad_tokens_are_all_reported() {
        let err = Conditions::compile(
            &["GET".into(), "BAD METHOD".into(), "".into()],
            &[
                HeaderMatch::Present("x:y".into()),
                HeaderMatch::Present("ok".into()),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                ConditionProblem::Method("BAD METHOD".into()),
                ConditionProblem::Method("".into()),
                ConditionProblem::HeaderName("x:y".into()),
            ]
        );
    }
}
