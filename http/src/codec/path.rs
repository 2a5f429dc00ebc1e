//! Request path normalization: the one spelling of a path that routes match and upstreams see.
//!
//! A gateway that matches the raw path and forwards it as sent lets a client pick a spelling the
//! route table does not recognise while the origin does: `/%61dmin`, `/./admin`,
//! `/public/../admin`, `//admin` all name `/admin` to an origin server. So the path is normalized
//! once, before routing, by one function used for HTTP/1.1 and HTTP/2 alike (HTTP/2 streams reach
//! it through the same request head), following RFC 3986 §6.2.2:
//! 1. percent-escapes of unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, every other
//!    escape is kept with upper-case hex digits (`%2f` becomes `%2F`); a `%` not followed by two
//!    hex digits is refused;
//! 2. dot segments are removed (§5.2.4); a `..` above the root stays at the root;
//! 3. runs of `/` are merged into one (configurable: some APIs give empty segments a meaning).
//!
//! Escapes that decode to a separator or a terminator (`%2F`, `%5C`, `%3B`, `%00`) and raw backslashes
//! (which Windows servers and many frameworks read as `/`) are never decoded into a separator
//! before matching: by default they are refused with 400; with [`EscapedSeparators::Keep`] they
//! stay opaque (`%2F`, `%5C`, `%3B`, `%00`, a raw `\` becomes `%5C`), part of their segment for matching
//! and for the upstream. A segment that is a dot segment with path parameters (`..;x`, `.;`) is
//! refused in every mode: servlet containers strip `;params` before resolving dots, so such a
//! segment climbs on the origin while it looks like a name here.
//!
//! Routes match the normalized path with each segment's `;parameters` removed
//! ([`strip_parameters`]): servlet containers drop them before they route, so `/admin;x` and
//! `/;x/admin` are `/admin` there and must be `/admin` to the route table too. The upstream still
//! gets the normalized path with its parameters (a rewrite works on the path without them).
//!
//! The query is not touched. Normalization writes into a caller's reused buffer and allocates
//! nothing once that buffer has grown to the longest path seen.

/// What to do with an escaped separator or terminator (`%2F`, `%5C`, `%3B`, `%00`) or a raw
/// backslash. (`;` starts path parameters, which some servers strip after decoding.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSeparators {
    /// Refuse the request with 400 (the default).
    #[default]
    Reject,
    /// Keep them percent-encoded, as opaque bytes of their segment (a raw `\` is encoded).
    Keep,
}

/// How paths are normalized on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    /// Merge runs of `/` into one.
    pub merge_slashes: bool,
    /// Escaped separators and backslashes: refused or kept opaque.
    pub escaped_separators: EscapedSeparators,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            escaped_separators: EscapedSeparators::Reject,
        }
    }
}

/// Why a path was refused (always a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("a '%' in the path is not followed by two hex digits")]
    BadEscape,
    /// `%2F`, `%5C`, `%3B` or `%00` under [`EscapedSeparators::Reject`].
    #[error("the path has an escaped separator or NUL (%2F, %5C, %3B, %00)")]
    EscapedSeparator,
    /// A raw `\` under [`EscapedSeparators::Reject`].
    #[error("the path has a backslash")]
    Backslash,
    /// A dot segment carrying path parameters (`..;x`).
    #[error("the path has a dot segment with parameters (..;)")]
    DotSegmentParameters,
}

impl PathError {
    /// The stable code of the refusal (access log, metrics, response body).
    pub fn code(self) -> &'static str {
        match self {
            PathError::BadEscape => "bad_path_escape",
            PathError::EscapedSeparator => "encoded_separator_in_path",
            PathError::Backslash => "backslash_in_path",
            PathError::DotSegmentParameters => "dot_segment_parameters",
        }
    }
}

/// Whether `b` is an RFC 3986 unreserved character.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut Vec<u8>, v: u8) {
    out.extend_from_slice(&[
        b'%',
        HEX_UPPER[usize::from(v >> 4)],
        HEX_UPPER[usize::from(v & 15)],
    ]);
}

/// Normalizes the path `raw` (without its query) into `out` (cleared first).
///
/// A path that does not start with `/` (the asterisk-form `*`) is copied as it is. The result
/// always starts with `/` otherwise.
///
/// ```
/// use ringgate_http::codec::{normalize_path, PathPolicy};
/// let mut out = Vec::new();
/// normalize_path(b"/public/../%61dmin//x/./", &PathPolicy::default(), &mut out).unwrap();
/// assert_eq!(out, b"/admin/x/");
/// ```
pub fn normalize_path(raw: &[u8], policy: &PathPolicy, out: &mut Vec<u8>) -> Result<(), PathError> {
    out.clear();
    if raw.first() != Some(&b'/') {
        out.extend_from_slice(raw);
        return Ok(());
    }
    // Fast path: nothing to decode, no dot segment, no empty segment, no backslash.
    if is_plain(raw, policy) {
        out.extend_from_slice(raw);
        return Ok(());
    }
    let mut seg = Vec::new();
    let mut segments = Segments::new(out, policy.merge_slashes);
    // raw[0] is the leading '/': segments are what follows each '/'.
    for part in raw[1..].split(|&b| b == b'/') {
        decode_segment(part, policy, &mut seg)?;
        if seg.first() == Some(&b'.') {
            if let Some(semi) = memchr::memchr(b';', &seg) {
                if matches!(&seg[..semi], b"." | b"..") {
                    return Err(PathError::DotSegmentParameters);
                }
            }
        }
        segments.push(&seg);
    }
    segments.finish();
    Ok(())
}

/// The path routes match: the normalized `path` with each segment's `;parameters` removed (and
/// the empty segments that leaves merged when `merge_slashes`), written to `out`. Returns
/// `false`, leaving `out` alone, when `path` has no `;` (then it is its own matching path).
///
/// ```
/// use ringgate_http::codec::strip_parameters;
/// let mut out = Vec::new();
/// assert!(strip_parameters(b"/;x/admin;jsessionid=1/", true, &mut out));
/// assert_eq!(out, b"/admin/");
/// assert!(!strip_parameters(b"/admin", true, &mut out));
/// ```
pub fn strip_parameters(path: &[u8], merge_slashes: bool, out: &mut Vec<u8>) -> bool {
    if path.first() != Some(&b'/') || memchr::memchr(b';', path).is_none() {
        return false;
    }
    out.clear();
    let mut segments = Segments::new(out, merge_slashes);
    for part in path[1..].split(|&b| b == b'/') {
        segments.push(&part[..memchr::memchr(b';', part).unwrap_or(part.len())]);
    }
    segments.finish();
    true
}

/// Whether `raw` is already normal: no `%`, no `\`, no `.`-only segment, and (when merging) no
/// empty segment except a trailing one.
fn is_plain(raw: &[u8], policy: &PathPolicy) -> bool {
    if memchr::memchr2(b'%', b'\\', raw).is_some() {
        return false;
    }
    let mut parts = raw[1..].split(|&b| b == b'/').peekable();
    while let Some(p) = parts.next() {
        let last = parts.peek().is_none();
        let dotty = p.first() == Some(&b'.') && (p == b"." || p == b".." || p.contains(&b';'));
        if dotty || (p.is_empty() && !last && policy.merge_slashes) {
            return false;
        }
    }
    true
}

/// Decodes one segment's escapes into `seg` (cleared first), per the policy.
fn decode_segment(part: &[u8], policy: &PathPolicy, seg: &mut Vec<u8>) -> Result<(), PathError> {
    seg.clear();
    let keep = policy.escaped_separators == EscapedSeparators::Keep;
    let mut i = 0;
    while i < part.len() {
        let b = part[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                part.get(i + 1).copied().and_then(hex_value),
                part.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = (hi << 4) | lo;
            if unreserved(v) {
                seg.push(v);
            } else if matches!(v, b'/' | b'\\' | b';' | 0) && !keep {
                return Err(PathError::EscapedSeparator);
            } else {
                push_escape(seg, v);
            }
            i += 3;
        } else if b == b'\\' {
            if !keep {
                return Err(PathError::Backslash);
            }
            push_escape(seg, b'\\');
            i += 1;
        } else {
            seg.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// The output path being built segment by segment (RFC 3986 §5.2.4 on a segment list).
struct Segments<'o> {
    out: &'o mut Vec<u8>,
    merge: bool,
    /// The last segment pushed ended the path in a directory (`/a/.`, `/a/..`, `/a/`).
    trailing: bool,
}

impl<'o> Segments<'o> {
    fn new(out: &'o mut Vec<u8>, merge: bool) -> Self {
        Self {
            out,
            merge,
            trailing: false,
        }
    }

    fn push(&mut self, seg: &[u8]) {
        self.trailing = false;
        match seg {
            b"." => self.trailing = true,
            b".." => {
                let cut = memchr::memrchr(b'/', self.out).unwrap_or(0);
                self.out.truncate(cut);
                self.trailing = true;
            }
            b"" if self.merge => self.trailing = true,
            _ => {
                self.out.push(b'/');
                self.out.extend_from_slice(seg);
            }
        }
    }

    fn finish(self) {
        if (self.trailing || self.out.is_empty()) && self.out.last() != Some(&b'/') {
            self.out.push(b'/');
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        norm_with(raw, PathPolicy::default())
    }

    fn norm_with(raw: &str, p: PathPolicy) -> Result<String, PathError> {
        let mut out = Vec::new();
        normalize_path(raw.as_bytes(), &p, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    const KEEP: PathPolicy = PathPolicy {
        merge_slashes: true,
        escaped_separators: EscapedSeparators::Keep,
    };

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b.c/d",
            "/a-b_c~d",
            "/.well-known/x",
            "/a/.b",
            "/a..b",
        ] {
            assert_eq!(norm(p).unwrap(), p);
        }
        assert_eq!(norm("*").unwrap(), "*");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/%41%7e%2D%5f%2e").unwrap(), "/A~-_.");
        assert_eq!(norm("/a%20b%3f").unwrap(), "/a%20b%3F");
        assert_eq!(norm("/%25%32%46").unwrap(), "/%252F", "no double decoding");
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(norm("/./admin").unwrap(), "/admin");
        assert_eq!(norm("/public/../admin").unwrap(), "/admin");
        assert_eq!(norm("/../../admin").unwrap(), "/admin");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/%2e%2E/admin").unwrap(), "/admin");
        assert_eq!(norm("/a/.%2e/b").unwrap(), "/b");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/.").unwrap(), "/");
    }

    #[test]
    fn slashes_merge_unless_told_not_to() {
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/a//b///").unwrap(), "/a/b/");
        let keep = PathPolicy {
            merge_slashes: false,
            ..PathPolicy::default()
        };
        assert_eq!(norm_with("//admin", keep).unwrap(), "//admin");
        assert_eq!(norm_with("/a//b/../c", keep).unwrap(), "/a//c");
        assert_eq!(norm_with("/a//..", keep).unwrap(), "/a/");
    }

    #[test]
    fn separators_are_refused_or_kept_opaque() {
        for (p, e) in [
            ("/admin%2f", PathError::EscapedSeparator),
            ("/admin%2F..", PathError::EscapedSeparator),
            ("/a%5cb", PathError::EscapedSeparator),
            ("/a%00", PathError::EscapedSeparator),
            ("/%3b/admin", PathError::EscapedSeparator),
            ("/a\\..\\admin", PathError::Backslash),
            ("/a%", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/public/..;/admin", PathError::DotSegmentParameters),
            ("/.;x/admin", PathError::DotSegmentParameters),
        ] {
            assert_eq!(norm(p), Err(e), "{p}");
        }
        assert_eq!(norm_with("/admin%2f", KEEP).unwrap(), "/admin%2F");
        assert_eq!(norm_with("/a%2F..%2Fb", KEEP).unwrap(), "/a%2F..%2Fb");
        assert_eq!(norm_with("/a\\..\\admin", KEEP).unwrap(), "/a%5C..%5Cadmin");
        assert_eq!(norm_with("/x/%00", KEEP).unwrap(), "/x/%00");
        assert_eq!(norm("/a;b=c/d").unwrap(), "/a;b=c/d");
    }

    fn stripped(p: &str, merge: bool) -> Option<String> {
        let mut out = Vec::new();
        strip_parameters(p.as_bytes(), merge, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn routes_match_paths_without_parameters() {
        assert_eq!(stripped("/admin;x", true).as_deref(), Some("/admin"));
        assert_eq!(stripped("/;x/admin", true).as_deref(), Some("/admin"));
        assert_eq!(stripped("/a;p/b;q/", true).as_deref(), Some("/a/b/"));
        assert_eq!(stripped("/;", true).as_deref(), Some("/"));
        assert_eq!(stripped("/;x/admin", false).as_deref(), Some("//admin"));
        assert_eq!(stripped("/admin", true), None);
    }

    proptest::proptest! {
        /// Normalizing is idempotent, and what it yields never carries a dot segment, an
        /// escape of an unreserved character, or (merged) an empty inner segment.
        #[test]
        fn normal_form_is_a_fixed_point(raw in "/[a-zA-Z0-9%./_;~\\\\-]{0,40}", merge in proptest::bool::ANY) {
            let p = PathPolicy { merge_slashes: merge, escaped_separators: EscapedSeparators::Keep };
            let mut once = Vec::new();
            if normalize_path(raw.as_bytes(), &p, &mut once).is_ok() {
                let mut twice = Vec::new();
                normalize_path(&once, &p, &mut twice).unwrap();
                proptest::prop_assert_eq!(&once, &twice);
                let s = String::from_utf8(once).unwrap();
                proptest::prop_assert!(s.starts_with('/'));
                proptest::prop_assert!(!s.split('/').any(|x| x == "." || x == ".."));
                proptest::prop_assert!(!s.contains('\\'));
                if merge {
                    proptest::prop_assert!(!s.contains("//"));
                }
            }
        }
    }
}
