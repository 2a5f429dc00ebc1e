//! A route's caching, as compiled from config: which zone its responses go in, how the key is
//! made, and the RFC 9111 rules of [`ringgate_policies::cache`] it applies. The cache phase of
//! the engine (`engine/cache/`) reads these; zones' purges reach the workers through
//! [`purge::PurgeLog`].

pub mod purge;

use ringgate_cache::freshness::Rules;
use std::sync::Arc;
use std::time::Duration;

/// A cache zone: a byte budget shared out over the workers (each core keeps its own objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheZone {
    /// Its name (metrics, purges, the admin API).
    pub name: Box<str>,
    /// Bytes for the whole process; each of N workers keeps at most `max_bytes / N`.
    pub max_bytes: u64,
    /// Responses larger than this stream through uncached.
    pub max_object_bytes: u64,
}

/// How the query string enters the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyQuery {
    /// As the client sent it.
    #[default]
    AsSent,
    /// Its parameters sorted (`b=2&a=1` and `a=1&b=2` share an object).
    Sorted,
    /// Left out.
    Ignored,
}

/// What a client's `Cache-Control: no-cache` (or `Pragma: no-cache`) does on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientNoCache {
    /// Honoured: the stored response is validated with the upstream first (RFC 9111).
    #[default]
    Revalidate,
    /// Ignored: a fresh stored response answers (protects the upstream from reload storms).
    Ignore,
}

/// A route's cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCache {
    /// Where its responses go.
    pub zone: Arc<CacheZone>,
    /// Storability and freshness rules beside the responses' own.
    pub rules: Rules,
    /// The query string in the key.
    pub key_query: KeyQuery,
    /// Request header fields whose values join the key (lowercase).
    pub key_headers: Vec<Box<str>>,
    /// Cookies whose values join the key.
    pub key_cookies: Vec<Box<str>>,
    /// The authenticated identity (what admission decided, never a client-sent header) joins
    /// the key: per-client or per-tenant responses of an authenticated route.
    pub key_identity: bool,
    /// A client's `no-cache`.
    pub client_no_cache: ClientNoCache,
    /// A request carrying this header field bypasses the cache (lowercase), if set.
    pub bypass_header: Option<Box<str>>,
    /// How long a request waits for another request's fetch of the same key before going to
    /// the upstream itself.
    pub lock_timeout: Duration,
    /// The response header field whose space-separated values tag the object (purge by tag).
    pub tags_header: Box<str>,
}
