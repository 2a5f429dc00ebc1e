//! The `Cache-Status` field (RFC 9211) the gateway adds to responses of cached routes, and the
//! short outcome word the access log and metrics use.

use std::time::Duration;

/// What the cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from a fresh stored response.
    Hit,
    /// Answered from a stored response after waiting for another request's fill (coalesced).
    Collapsed,
    /// Answered stale while a refresh runs.
    StaleWhileRevalidate,
    /// Answered stale because the upstream failed.
    StaleIfError,
    /// Validated with the upstream (a 304 refreshed it) and answered from the cache.
    Revalidated,
    /// Went upstream; the response was stored.
    MissStored,
    /// Went upstream; the response was not stored (why is in the `detail`).
    MissNotStored,
    /// The route's cache was bypassed (method, a bypass header, a client `no-cache` the route
    /// honours by passing through, a `Range` request).
    Bypass,
}

impl Outcome {
    /// The word for logs and metric labels.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Collapsed => "collapsed",
            Outcome::StaleWhileRevalidate => "stale",
            Outcome::StaleIfError => "stale_if_error",
            Outcome::Revalidated => "revalidated",
            Outcome::MissStored => "miss",
            Outcome::MissNotStored => "uncacheable",
            Outcome::Bypass => "bypass",
        }
    }

    /// Served from the cache (no upstream response body went to the client).
    pub fn served_from_cache(self) -> bool {
        matches!(
            self,
            Outcome::Hit
                | Outcome::Collapsed
                | Outcome::StaleWhileRevalidate
                | Outcome::StaleIfError
                | Outcome::Revalidated
        )
    }
}

/// The `Cache-Status` field line (with CRLF) for `outcome`: `ttl` is the freshness left (negative
/// when stale), `detail` a short reason (why not stored, or the stale kind).
pub fn field(outcome: Outcome, ttl: Option<i64>, detail: &str) -> String {
    let mut out = Vec::with_capacity(64);
    write_field(&mut out, outcome, ttl, detail);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`field`], appended to `out` (no allocation of its own).
pub fn write_field(out: &mut Vec<u8>, outcome: Outcome, ttl: Option<i64>, detail: &str) {
    out.extend_from_slice(b"cache-status: ringgate");
    out.extend_from_slice(match outcome {
        Outcome::Hit | Outcome::StaleWhileRevalidate | Outcome::StaleIfError => b"; hit".as_slice(),
        Outcome::Collapsed => b"; hit; collapsed",
        Outcome::Revalidated => b"; fwd=stale; fwd-status=304",
        Outcome::MissStored => b"; fwd=miss; stored",
        Outcome::MissNotStored => b"; fwd=miss",
        Outcome::Bypass => b"; fwd=bypass",
    });
    if let Some(t) = ttl {
        use std::io::Write as _;
        let _ = write!(out, "; ttl={t}");
    }
    if !detail.is_empty() {
        out.extend_from_slice(b"; detail=");
        out.extend_from_slice(detail.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `d` in seconds, rounded to the nearest, signed by `fresh` (positive when fresh).
pub fn ttl_secs(d: Duration, fresh: bool) -> i64 {
    let s = i64::try_from((d.as_millis() + 500) / 1000).unwrap_or(i64::MAX);
    if fresh {
        s
    } else {
        -s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_rfc_9211_says() {
        assert_eq!(
            field(Outcome::Hit, Some(30), ""),
            "cache-status: ringgate; hit; ttl=30\r\n"
        );
        assert_eq!(
            field(
                Outcome::StaleWhileRevalidate,
                Some(-3),
                "stale-while-revalidate"
            ),
            "cache-status: ringgate; hit; ttl=-3; detail=stale-while-revalidate\r\n"
        );
        assert_eq!(
            field(Outcome::MissNotStored, None, "private"),
            "cache-status: ringgate; fwd=miss; detail=private\r\n"
        );
        assert_eq!(
            field(Outcome::MissStored, Some(60), ""),
            "cache-status: ringgate; fwd=miss; stored; ttl=60\r\n"
        );
    }
}
