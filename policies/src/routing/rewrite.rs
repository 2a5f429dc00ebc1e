//! Rewrites: turning the matched request path into the upstream path.
//!
//! Compiled at build time into a prefix length and replacement, or a list of literal and
//! capture parts, so applying one is a few `extend_from_slice` calls into the caller's
//! (pooled) buffer. Captures are copied verbatim: they are raw, still percent-encoded bytes
//! of the request path, so no decoding/encoding round trip can change their meaning.

use super::error::TemplateError;
use super::path::{check_name, CaptureSource, CaptureSpec};
use super::spec::{PathMatch, Rewrite};

/// A rewrite ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompiledRewrite {
    /// Keep the path.
    None,
    /// `replacement` + `path[strip_len..]`, or `/` if that is empty.
    Prefix {
        /// Bytes of the matched prefix, not counting a trailing `/` (kept in the remainder,
        /// so the remainder is empty or starts with `/`).
        strip_len: usize,
        /// The new prefix without its trailing `/` (empty for `StripPrefix`).
        replacement: Box<[u8]>,
    },
    /// Literal bytes and captures, concatenated.
    Template(Box<[Part]>),
}

/// One piece of a rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Copied as is.
    Literal(Box<[u8]>),
    /// The capture with this index in the route's capture list.
    Capture(usize),
}

/// Why a rewrite could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RewriteProblem {
    /// `StripPrefix` or `ReplacePrefix` on a non-prefix path; names which.
    NeedsPrefix(&'static str),
    /// The replacement or template (as configured) and what is wrong with it.
    Bad(String, TemplateError),
}

/// Checks a rewrite against the route's path and captures, and compiles it.
pub(crate) fn compile_rewrite(
    rewrite: &Rewrite,
    path: &PathMatch,
    captures: &[CaptureSpec],
) -> Result<CompiledRewrite, RewriteProblem> {
    let prefix = match path {
        PathMatch::Prefix(p) => Some(p.as_str()),
        PathMatch::Exact(_) | PathMatch::Template(_) => None,
    };
    let strip_len = |p: &str| p.strip_suffix('/').unwrap_or(p).len();
    match rewrite {
        Rewrite::None => Ok(CompiledRewrite::None),
        Rewrite::StripPrefix => match prefix {
            Some(p) => Ok(CompiledRewrite::Prefix {
                strip_len: strip_len(p),
                replacement: Box::default(),
            }),
            None => Err(RewriteProblem::NeedsPrefix("StripPrefix")),
        },
        Rewrite::ReplacePrefix(new) => {
            let Some(p) = prefix else {
                return Err(RewriteProblem::NeedsPrefix("ReplacePrefix"));
            };
            check_target(new).map_err(|e| RewriteProblem::Bad(new.clone(), e))?;
            let replacement = new.strip_suffix('/').unwrap_or(new).as_bytes().into();
            Ok(CompiledRewrite::Prefix {
                strip_len: strip_len(p),
                replacement,
            })
        }
        Rewrite::Template(template) => compile_template(template, captures)
            .map(CompiledRewrite::Template)
            .map_err(|e| RewriteProblem::Bad(template.clone(), e)),
    }
}

/// An upstream path must be absolute and leave the query to the request.
fn check_target(path: &str) -> Result<(), TemplateError> {
    if !path.starts_with('/') {
        return Err(TemplateError::NotAbsolute);
    }
    if path.contains('?') {
        return Err(TemplateError::HasQuery);
    }
    Ok(())
}

fn compile_template(
    template: &str,
    captures: &[CaptureSpec],
) -> Result<Box<[Part]>, TemplateError> {
    check_target(template)?;
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(TemplateError::StrayBrace);
        }
        let Some(len) = rest[open + 1..].find('}') else {
            return Err(TemplateError::UnclosedBrace);
        };
        let inner = &rest[open + 1..open + 1 + len];
        let (star, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        check_name(name)?;
        let Some(slot) = captures.iter().position(|c| *c.name == *name) else {
            return Err(TemplateError::UnknownCapture { name: name.into() });
        };
        if star && captures[slot].source != CaptureSource::Rest {
            return Err(TemplateError::NotCatchAll { name: name.into() });
        }
        if open > 0 {
            parts.push(Part::Literal(rest.as_bytes()[..open].into()));
        }
        parts.push(Part::Capture(slot));
        rest = &rest[open + 1 + len + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.as_bytes().into()));
    }
    Ok(parts.into())
}

impl CompiledRewrite {
    /// Appends the rewritten `path` to `out`. `spans` are the match's capture ranges into
    /// `path`, in the route's capture order. Out-of-range spans (a path other than the one
    /// looked up) yield empty pieces rather than a panic.
    pub(crate) fn apply(&self, path: &[u8], spans: &[(usize, usize)], out: &mut Vec<u8>) {
        match self {
            Self::None => out.extend_from_slice(path),
            Self::Prefix {
                strip_len,
                replacement,
            } => {
                let rest = path.get(*strip_len..).unwrap_or_default();
                if replacement.is_empty() && rest.is_empty() {
                    out.push(b'/');
                } else {
                    out.extend_from_slice(replacement);
                    out.extend_from_slice(rest);
                }
            }
            Self::Template(parts) => {
                for part in parts.iter() {
                    match part {
                        Part::Literal(bytes) => out.extend_from_slice(bytes),
                        Part::Capture(slot) => {
                            let value = spans
                                .get(*slot)
                                .and_then(|&(start, end)| path.get(start..end));
                            out.extend_from_slice(value.unwrap_or_default());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::path::compile_path;

    fn compile(rewrite: Rewrite, path: PathMatch) -> Result<CompiledRewrite, RewriteProblem> {
        let (_, captures) = compile_path(&path).unwrap();
        compile_rewrite(&rewrite, &path, &captures)
    }

    fn apply(rewrite: &CompiledRewrite, path: &str, spans: &[(usize, usize)]) -> String {
        let mut out = Vec::new();
        rewrite.apply(path.as_bytes(), spans, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let strip = compile(Rewrite::StripPrefix, PathMatch::Prefix("/api".into())).unwrap();
        assert_eq!(apply(&strip, "/api/x/y", &[]), "/x/y");
        assert_eq!(apply(&strip, "/api", &[]), "/");
        assert_eq!(apply(&strip, "/api/", &[]), "/");
        let strip_slash = compile(Rewrite::StripPrefix, PathMatch::Prefix("/api/".into())).unwrap();
        assert_eq!(apply(&strip_slash, "/api/x", &[]), "/x");
        let strip_root = compile(Rewrite::StripPrefix, PathMatch::Prefix("/".into())).unwrap();
        assert_eq!(apply(&strip_root, "/x", &[]), "/x");
    }

    #[test]
    fn replace_prefix_joins_on_one_slash() {
        for (prefix, new) in [
            ("/api", "/v2"),
            ("/api/", "/v2/"),
            ("/api", "/v2/"),
            ("/api/", "/v2"),
        ] {
            let r = compile(
                Rewrite::ReplacePrefix(new.into()),
                PathMatch::Prefix(prefix.into()),
            )
            .unwrap();
            assert_eq!(apply(&r, "/api/x", &[]), "/v2/x", "{prefix} -> {new}");
        }
        let r = compile(
            Rewrite::ReplacePrefix("/v2".into()),
            PathMatch::Prefix("/api".into()),
        )
        .unwrap();
        assert_eq!(apply(&r, "/api", &[]), "/v2");
        let r = compile(
            Rewrite::ReplacePrefix("/".into()),
            PathMatch::Prefix("/api".into()),
        )
        .unwrap();
        assert_eq!(apply(&r, "/api", &[]), "/");
    }

    #[test]
    fn template_fills_named_captures_in_any_order() {
        let path = PathMatch::Template("/u/{id}/f/{*rest}".into());
        let r = compile(Rewrite::Template("/files/{*rest}/owner-{id}".into()), path).unwrap();
        // "/u/42/f/a/b": id = 3..5, rest = 8..11
        assert_eq!(
            apply(&r, "/u/42/f/a/b", &[(3, 5), (8, 11)]),
            "/files/a/b/owner-42"
        );
    }

    #[test]
    fn bad_rewrites_are_rejected() {
        let t = PathMatch::Template("/u/{id}".into());
        let bad = |r: &str| compile(Rewrite::Template(r.into()), t.clone()).unwrap_err();
        assert_eq!(
            bad("/x/{nope}"),
            RewriteProblem::Bad(
                "/x/{nope}".into(),
                TemplateError::UnknownCapture {
                    name: "nope".into()
                }
            )
        );
        assert_eq!(
            bad("/x/{*id}"),
            RewriteProblem::Bad(
                "/x/{*id}".into(),
                TemplateError::NotCatchAll { name: "id".into() }
            )
        );
        assert_eq!(
            bad("/x/{id"),
            RewriteProblem::Bad("/x/{id".into(), TemplateError::UnclosedBrace)
        );
        assert_eq!(
            bad("/x/id}"),
            RewriteProblem::Bad("/x/id}".into(), TemplateError::StrayBrace)
        );
        assert_eq!(
            bad("x/{id}"),
            RewriteProblem::Bad("x/{id}".into(), TemplateError::NotAbsolute)
        );
        assert_eq!(
            compile(Rewrite::StripPrefix, PathMatch::Exact("/a".into())).unwrap_err(),
            RewriteProblem::NeedsPrefix("StripPrefix")
        );
        assert_eq!(
            compile(Rewrite::ReplacePrefix("/b".into()), t).unwrap_err(),
            RewriteProblem::NeedsPrefix("ReplacePrefix")
        );
    }
}
