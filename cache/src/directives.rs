//! `Cache-Control` (RFC 9111 §5.2) of responses and of requests.
//!
//! Directive names are case-insensitive; a value is a token or a quoted string. A qualified
//! `no-cache="field"` or `private="field"` is treated as the unqualified directive (RFC 9111
//! allows this, and it is the safe reading for a shared cache). A delta-seconds value that is not
//! a number, or a directive given twice with different values, makes the response stale
//! (§4.2.1: "considered stale"), never fresher. `Pragma: no-cache` counts as a request's
//! `no-cache` only when the request has no `Cache-Control`.

/// A response's directives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`: may be stored, must be validated before each use.
    pub no_cache: bool,
    /// `private`: not for a shared cache.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate` (or `proxy-revalidate`): never served stale.
    pub must_revalidate: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds (a shared cache's own max-age; implies must-revalidate).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate` (RFC 5861), seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861), seconds.
    pub stale_if_error: Option<u64>,
}

/// A request's directives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`).
    pub no_cache: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `min-fresh`, seconds.
    pub min_fresh: Option<u64>,
    /// `only-if-cached`.
    pub only_if_cached: bool,
}

/// One `name[=value]` of a `Cache-Control` list.
fn each(values: &[&[u8]], mut f: impl FnMut(&str, Option<&str>)) {
    for v in values {
        let Ok(text) = std::str::from_utf8(v) else {
            continue;
        };
        let mut rest = text;
        while !rest.is_empty() {
            let (item, after) = split_item(rest);
            rest = after;
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (item, None),
            };
            f(&name.to_ascii_lowercase(), value);
        }
    }
}

/// The text before the first comma outside quotes, and the rest after it.
fn split_item(s: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return (&s[..i], &s[i + 1..]),
            _ => {}
        }
    }
    (s, "")
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
}

/// The largest delta-seconds kept (RFC 9111 §1.2.2: 2^31; larger values mean "a long time").
pub const MAX_DELTA: u64 = 1 << 31;

/// A delta-seconds value: a number, else 0 (stale). Values past [`MAX_DELTA`] are capped there.
fn seconds(v: Option<&str>) -> u64 {
    match v {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().unwrap_or(MAX_DELTA).min(MAX_DELTA)
        }
        _ => 0,
    }
}

/// Sets `slot` to `v`; a second, different value makes it 0 (stale).
fn once(slot: &mut Option<u64>, v: u64) {
    *slot = match *slot {
        Some(old) if old != v => Some(0),
        _ => Some(v),
    };
}

impl ResponseDirectives {
    /// Reads every `Cache-Control` value of a response.
    pub fn parse(values: &[&[u8]]) -> Self {
        let mut d = ResponseDirectives::default();
        each(values, |name, value| match name {
            "no-store" => d.no_store = true,
            "no-cache" => d.no_cache = true,
            "private" => d.private = true,
            "public" => d.public = true,
            "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
            "max-age" => once(&mut d.max_age, seconds(value)),
            "s-maxage" => once(&mut d.s_maxage, seconds(value)),
            "stale-while-revalidate" => once(&mut d.stale_while_revalidate, seconds(value)),
            "stale-if-error" => once(&mut d.stale_if_error, seconds(value)),
            _ => {}
        });
        d
    }
}

impl RequestDirectives {
    /// Reads a request's `Cache-Control` values, and its `Pragma` values when it has none.
    pub fn parse(cache_control: &[&[u8]], pragma: &[&[u8]]) -> Self {
        let mut d = RequestDirectives::default();
        each(cache_control, |name, value| match name {
            "no-cache" => d.no_cache = true,
            "no-store" => d.no_store = true,
            "max-age" => once(&mut d.max_age, seconds(value)),
            "min-fresh" => once(&mut d.min_fresh, seconds(value)),
            "only-if-cached" => d.only_if_cached = true,
            _ => {}
        });
        if cache_control.is_empty() {
            each(pragma, |name, _| {
                if name == "no-cache" {
                    d.no_cache = true;
                }
            });
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn response_directives_are_read_case_insensitively_across_lines() {
        let d = ResponseDirectives::parse(&[
            b"Public, MAX-AGE=60",
            b"s-maxage=\"120\", stale-while-revalidate=30",
        ]);
        assert!(d.public && !d.private && !d.no_store);
        assert_eq!(
            (d.max_age, d.s_maxage, d.stale_while_revalidate),
            (Some(60), Some(120), Some(30))
        );
        let q = ResponseDirectives::parse(&[b"private=\"set-cookie, x\", no-cache=\"a,b\""]);
        assert!(
            q.private && q.no_cache,
            "qualified forms count as unqualified"
        );
    }

    #[test]
    fn a_bad_or_conflicting_age_is_stale_never_fresher() {
        assert_eq!(
            ResponseDirectives::parse(&[b"max-age=abc"]).max_age,
            Some(0)
        );
        assert_eq!(
            ResponseDirectives::parse(&[b"max-age=60, max-age=3600"]).max_age,
            Some(0)
        );
        assert_eq!(
            ResponseDirectives::parse(&[b"max-age=60", b"max-age=60"]).max_age,
            Some(60)
        );
        assert_eq!(
            ResponseDirectives::parse(&[b"max-age=99999999999999999999999"]).max_age,
            Some(MAX_DELTA)
        );
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        assert!(RequestDirectives::parse(&[], &[b"no-cache"]).no_cache);
        assert!(!RequestDirectives::parse(&[b"max-age=5"], &[b"no-cache"]).no_cache);
        let r = RequestDirectives::parse(&[b"no-cache, only-if-cached, min-fresh=10"], &[]);
        assert!(r.no_cache && r.only_if_cached);
        assert_eq!(r.min_fresh, Some(10));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(v in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = ResponseDirectives::parse(&[&v]);
            let _ = RequestDirectives::parse(&[&v], &[&v]);
        }
    }
}
