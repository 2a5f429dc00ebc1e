//! A client's conditional `GET` answered from a stored response (RFC 9110 §13): `If-None-Match`
//! by weak comparison of entity tags (or `*`), else `If-Modified-Since` against `Last-Modified`.
//! When either matches, the cache answers `304 Not Modified` instead of the body.

use super::httpdate;

/// Whether `if_none_match` / `if_modified_since` (the request's) are satisfied by a stored
/// response with `etag` / `last_modified`: `true` means answer 304.
pub fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    etag: Option<&[u8]>,
    last_modified: Option<&[u8]>,
) -> bool {
    if let Some(inm) = if_none_match {
        // If-None-Match takes precedence; If-Modified-Since is then ignored (§13.1.3).
        let inm = inm.trim_ascii();
        if inm == b"*" {
            return etag.is_some();
        }
        let Some(tag) = etag.map(weak) else {
            return false;
        };
        return list(inm).any(|t| weak(t) == tag);
    }
    match (
        if_modified_since.and_then(httpdate::parse),
        last_modified.and_then(httpdate::parse),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The opaque part of an entity tag, for weak comparison (`W/"x"` equals `"x"`).
fn weak(tag: &[u8]) -> &[u8] {
    let t = tag.trim_ascii();
    t.strip_prefix(b"W/").unwrap_or(t)
}

/// The entity tags of an `If-None-Match` list (commas inside quotes do not split).
fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = v;
    std::iter::from_fn(move || {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let mut end = rest.len();
        for (i, b) in rest.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let (item, tail) = rest.split_at(end);
        rest = tail;
        Some(item.trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags_compare_weakly_and_take_precedence() {
        let etag = Some(&b"\"v1\""[..]);
        assert!(not_modified(Some(b"\"v1\""), None, etag, None));
        assert!(not_modified(Some(b"W/\"v1\""), None, etag, None));
        assert!(not_modified(Some(b"\"a\", \"v1\""), None, etag, None));
        assert!(not_modified(Some(b"\"a,b\", W/\"v1\""), None, etag, None));
        assert!(!not_modified(Some(b"\"v2\""), None, etag, None));
        assert!(not_modified(Some(b"*"), None, etag, None));
        assert!(!not_modified(Some(b"*"), None, None, None));
        // A non-matching If-None-Match wins over a matching If-Modified-Since.
        let lm = httpdate::format(1_700_000_000);
        assert!(!not_modified(
            Some(b"\"v2\""),
            Some(lm.as_bytes()),
            etag,
            Some(lm.as_bytes())
        ));
    }

    #[test]
    fn modification_dates_compare_by_the_second() {
        let lm = httpdate::format(1_700_000_000);
        let later = httpdate::format(1_700_000_100);
        let earlier = httpdate::format(1_699_999_000);
        assert!(not_modified(
            None,
            Some(lm.as_bytes()),
            None,
            Some(lm.as_bytes())
        ));
        assert!(not_modified(
            None,
            Some(later.as_bytes()),
            None,
            Some(lm.as_bytes())
        ));
        assert!(!not_modified(
            None,
            Some(earlier.as_bytes()),
            None,
            Some(lm.as_bytes())
        ));
        assert!(!not_modified(
            None,
            Some(b"yesterday"),
            None,
            Some(lm.as_bytes())
        ));
    }
}
