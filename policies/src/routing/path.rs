//! Path matchers compiled into segments for the trie, and the capture layout of templates.
//!
//! A path `/s1/s2/…/sn` is the segments after each `/`: `/` is one empty segment, `/a/` is
//! `a` then an empty one. Exact paths are not split at all (the index hashes them whole).
//! A prefix is split so that "at a segment boundary" becomes "is a prefix of the segment
//! list": `/api` is `[api]` and matches any path whose segments start with `api`; `/api/`
//! is `[api]` plus "at least one more segment", which is exactly "starts with `/api/`";
//! `/` is `[]` plus at least one more, so every path.

use super::error::TemplateError;
use super::rank::PathRank;
use super::spec::PathMatch;

/// Most `{name}` and `{*name}` captures in one template: a match carries them in a
/// fixed-size array, so the lookup never allocates.
pub const MAX_CAPTURES: usize = 8;

/// Most segments in a prefix or a template: the lookup walks the trie recursively, one
/// level per segment, so this bounds its stack use. Exact paths have no limit.
pub const MAX_SEGMENTS: usize = 64;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Must equal these bytes.
    Literal(Box<[u8]>),
    /// Any non-empty segment, captured.
    Param,
}

/// A path matcher ready to be inserted in a path index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompiledPath {
    /// The whole path, byte for byte.
    Exact(Box<[u8]>),
    /// A segment-list prefix; see the module doc.
    Prefix {
        /// Literal segments that must lead the path.
        segments: Vec<Box<[u8]>>,
        /// The prefix ended in `/`: at least one more segment must follow.
        needs_more: bool,
        /// Byte length of the prefix as written, for precedence.
        len: usize,
    },
    /// Segments, then possibly a catch-all taking the non-empty rest.
    Template {
        /// Literal and `{name}` segments, in order.
        segments: Vec<Segment>,
        /// The template ends with `{*name}`.
        catch_all: bool,
    },
}

impl CompiledPath {
    /// The path part of the precedence key.
    pub(crate) fn rank(&self) -> PathRank {
        match self {
            Self::Exact(_) => PathRank::Exact,
            Self::Prefix { len, .. } => PathRank::Prefix { len: *len },
            Self::Template {
                segments,
                catch_all,
            } => {
                let params = segments.iter().filter(|s| **s == Segment::Param).count();
                PathRank::template(
                    segments.len() - params,
                    params + usize::from(*catch_all),
                    *catch_all,
                )
            }
        }
    }
}

/// Where a capture's bytes come from in the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaptureSource {
    /// The whole segment matched by the template's n-th `{name}` (0 is the first). On one
    /// trie branch the n-th parameter node is the n-th `{name}` of every template below
    /// it, so the search records spans by this ordinal, not by depth.
    Param(usize),
    /// Everything from the catch-all's segment to the end of the path.
    Rest,
}

/// A named capture of a template, in template order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaptureSpec {
    /// The placeholder's name, without braces or `*`.
    pub(crate) name: Box<str>,
    /// Where its value is.
    pub(crate) source: CaptureSource,
}

/// Checks a path matcher and compiles it, with the captures of a template (none otherwise).
pub(crate) fn compile_path(
    path: &PathMatch,
) -> Result<(CompiledPath, Vec<CaptureSpec>), TemplateError> {
    let raw = match path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::Template(p) => p.as_str(),
    };
    if !raw.starts_with('/') {
        return Err(TemplateError::NotAbsolute);
    }
    if raw.contains('?') {
        return Err(TemplateError::HasQuery);
    }
    match path {
        PathMatch::Exact(p) => Ok((CompiledPath::Exact(p.as_bytes().into()), Vec::new())),
        PathMatch::Prefix(p) => compile_prefix(p).map(|c| (c, Vec::new())),
        PathMatch::Template(p) => compile_template(p),
    }
}

fn compile_prefix(prefix: &str) -> Result<CompiledPath, TemplateError> {
    let (body, needs_more) = match prefix.strip_suffix('/') {
        Some(body) => (body, true),
        None => (prefix, false),
    };
    // `body` is "" only for the prefix "/", which constrains no segment at all.
    let segments: Vec<Box<[u8]>> = match body.strip_prefix('/') {
        Some(rest) => rest.split('/').map(|s| s.as_bytes().into()).collect(),
        None => Vec::new(),
    };
    if segments.len() > MAX_SEGMENTS {
        return Err(TemplateError::TooDeep { max: MAX_SEGMENTS });
    }
    Ok(CompiledPath::Prefix {
        segments,
        needs_more,
        len: prefix.len(),
    })
}

fn compile_template(template: &str) -> Result<(CompiledPath, Vec<CaptureSpec>), TemplateError> {
    let raw_segments: Vec<&str> = template[1..].split('/').collect();
    if raw_segments.len() > MAX_SEGMENTS {
        return Err(TemplateError::TooDeep { max: MAX_SEGMENTS });
    }
    let mut segments = Vec::with_capacity(raw_segments.len());
    let mut captures: Vec<CaptureSpec> = Vec::new();
    let mut catch_all = false;
    let mut params = 0;
    for (depth, raw) in raw_segments.iter().enumerate() {
        let Some((star, name)) = placeholder(raw)? else {
            segments.push(Segment::Literal(raw.as_bytes().into()));
            continue;
        };
        if captures.iter().any(|c| *c.name == *name) {
            return Err(TemplateError::DuplicateName { name: name.into() });
        }
        if captures.len() == MAX_CAPTURES {
            return Err(TemplateError::TooManyCaptures { max: MAX_CAPTURES });
        }
        if star {
            if depth + 1 != raw_segments.len() {
                return Err(TemplateError::CatchAllNotLast { name: name.into() });
            }
            catch_all = true;
            captures.push(CaptureSpec {
                name: name.into(),
                source: CaptureSource::Rest,
            });
        } else {
            segments.push(Segment::Param);
            captures.push(CaptureSpec {
                name: name.into(),
                source: CaptureSource::Param(params),
            });
            params += 1;
        }
    }
    Ok((
        CompiledPath::Template {
            segments,
            catch_all,
        },
        captures,
    ))
}

/// `Some((is_catch_all, name))` if the segment is a placeholder, `None` if a plain literal.
fn placeholder(segment: &str) -> Result<Option<(bool, &str)>, TemplateError> {
    if !segment.contains(['{', '}']) {
        return Ok(None);
    }
    let Some(inner) = segment.strip_prefix('{') else {
        return Err(if segment.contains('}') {
            TemplateError::NotWholeSegment {
                segment: segment.into(),
            }
        } else {
            TemplateError::UnclosedBrace
        });
    };
    let Some(close) = inner.find('}') else {
        return Err(TemplateError::UnclosedBrace);
    };
    if close + 1 != inner.len() {
        return Err(TemplateError::NotWholeSegment {
            segment: segment.into(),
        });
    }
    let inner = &inner[..close];
    let (star, name) = match inner.strip_prefix('*') {
        Some(name) => (true, name),
        None => (false, inner),
    };
    check_name(name)?;
    Ok(Some((star, name)))
}

/// Placeholder names, in paths and rewrites: non-empty ASCII letters, digits and `_`.
pub(crate) fn check_name(name: &str) -> Result<(), TemplateError> {
    if name.is_empty() {
        return Err(TemplateError::EmptyName);
    }
    if name.contains('{') {
        return Err(TemplateError::UnclosedBrace);
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(TemplateError::BadName { name: name.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> Result<(CompiledPath, Vec<CaptureSpec>), TemplateError> {
        compile_path(&PathMatch::Template(t.into()))
    }

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.as_bytes().into())
    }

    #[test]
    fn prefix_splits_at_segment_boundaries() {
        let prefix = |p: &str| compile_path(&PathMatch::Prefix(p.into())).unwrap().0;
        let seg = |s: &[&str]| {
            s.iter()
                .map(|s| s.as_bytes().into())
                .collect::<Vec<Box<[u8]>>>()
        };
        assert_eq!(
            prefix("/"),
            CompiledPath::Prefix {
                segments: seg(&[]),
                needs_more: true,
                len: 1
            }
        );
        assert_eq!(
            prefix("//"),
            CompiledPath::Prefix {
                segments: seg(&[""]),
                needs_more: true,
                len: 2
            }
        );
        assert_eq!(
            prefix("/api"),
            CompiledPath::Prefix {
                segments: seg(&["api"]),
                needs_more: false,
                len: 4
            }
        );
        assert_eq!(
            prefix("/api/"),
            CompiledPath::Prefix {
                segments: seg(&["api"]),
                needs_more: true,
                len: 5
            }
        );
        assert_eq!(
            prefix("/a/b"),
            CompiledPath::Prefix {
                segments: seg(&["a", "b"]),
                needs_more: false,
                len: 4
            }
        );
    }

    #[test]
    fn template_params_and_catch_all_record_their_sources() {
        let (path, caps) = template("/users/{id}/files/{*rest}").unwrap();
        assert_eq!(
            path,
            CompiledPath::Template {
                segments: vec![lit("users"), Segment::Param, lit("files")],
                catch_all: true
            }
        );
        assert_eq!(
            caps[0],
            CaptureSpec {
                name: "id".into(),
                source: CaptureSource::Param(0)
            }
        );
        assert_eq!(
            caps[1],
            CaptureSpec {
                name: "rest".into(),
                source: CaptureSource::Rest
            }
        );
        let (path, _) = template("/").unwrap();
        assert_eq!(
            path,
            CompiledPath::Template {
                segments: vec![lit("")],
                catch_all: false
            }
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert_eq!(
            template("/a/{id").unwrap_err(),
            TemplateError::UnclosedBrace
        );
        assert_eq!(
            template("/a/{id/b}").unwrap_err(),
            TemplateError::UnclosedBrace
        );
        assert_eq!(
            template("/a/x{id}").unwrap_err(),
            TemplateError::NotWholeSegment {
                segment: "x{id}".into()
            }
        );
        assert_eq!(
            template("/a/{id}x").unwrap_err(),
            TemplateError::NotWholeSegment {
                segment: "{id}x".into()
            }
        );
        assert_eq!(
            template("/a/id}").unwrap_err(),
            TemplateError::NotWholeSegment {
                segment: "id}".into()
            }
        );
        assert_eq!(template("/a/{}").unwrap_err(), TemplateError::EmptyName);
        assert_eq!(template("/a/{*}").unwrap_err(), TemplateError::EmptyName);
        assert_eq!(
            template("/a/{a-b}").unwrap_err(),
            TemplateError::BadName { name: "a-b".into() }
        );
        assert_eq!(
            template("/{x}/{x}").unwrap_err(),
            TemplateError::DuplicateName { name: "x".into() }
        );
        assert_eq!(
            template("/{x}/{*x}").unwrap_err(),
            TemplateError::DuplicateName { name: "x".into() }
        );
        assert_eq!(
            template("/{*r}/b").unwrap_err(),
            TemplateError::CatchAllNotLast { name: "r".into() }
        );
        assert_eq!(template("a/b").unwrap_err(), TemplateError::NotAbsolute);
        assert_eq!(template("/a?b").unwrap_err(), TemplateError::HasQuery);
        let nine = (0..9).map(|i| format!("/{{p{i}}}")).collect::<String>();
        assert_eq!(
            template(&nine).unwrap_err(),
            TemplateError::TooManyCaptures { max: MAX_CAPTURES }
        );
        let deep = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(
            template(&deep).unwrap_err(),
            TemplateError::TooDeep { max: MAX_SEGMENTS }
        );
        assert!(template(&"/a".repeat(MAX_SEGMENTS)).is_ok());
    }

    #[test]
    fn exact_and_prefix_reject_relative_paths_and_queries() {
        assert_eq!(
            compile_path(&PathMatch::Exact("a".into())).unwrap_err(),
            TemplateError::NotAbsolute
        );
        assert_eq!(
            compile_path(&PathMatch::Prefix("".into())).unwrap_err(),
            TemplateError::NotAbsolute
        );
        assert_eq!(
            compile_path(&PathMatch::Exact("/a?x=1".into())).unwrap_err(),
            TemplateError::HasQuery
        );
        // Braces are literal outside templates.
        assert!(compile_path(&PathMatch::Exact("/{x".into())).is_ok());
    }
}
