//! The route specification: what config hands to [`RouteTable::build`](super::RouteTable::build).
//!
//! These are plain data types with public fields, so the config layer (serde, validation with
//! paths) can build them however it likes. Nothing here is read on the hot path: the table
//! compiles them into indexes and byte slices once, at snapshot time.

/// Which `Host` (or `:authority`) a route accepts.
///
/// Hosts are compared ASCII case-insensitively, with a trailing dot ignored; the request's port
/// is stripped before comparison, so a config host never carries one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostMatch {
    /// Any host, including a request without one.
    #[default]
    Any,
    /// One host name, such as `api.example.com` or an IPv6 literal in brackets (`[::1]`).
    Exact(String),
    /// Written `*.example.com`: one or more labels before `.example.com`, so `a.example.com`
    /// and `a.b.example.com` match but `example.com` itself does not.
    Wildcard(String),
}

/// Which request paths a route accepts. Matching is on the raw path (percent-encoding is not
/// decoded), without the query string; every path must start with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// This exact path, byte for byte.
    Exact(String),
    /// Paths under this prefix at a segment boundary: `/api` matches `/api`, `/api/` and
    /// `/api/x` but not `/apix`. A prefix ending in `/` matches whatever starts with it.
    Prefix(String),
    /// Segments, each a literal, a `{name}` (one whole non-empty segment) or, last, a
    /// `{*name}` (the rest of the path, non-empty, possibly several segments). Names are
    /// ASCII letters, digits and `_`, unique within the template.
    Template(String),
}

/// A condition on request headers. Names are compared ASCII case-insensitively, values byte
/// for byte. When a header occurs several times, any one occurrence may satisfy the matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// The header is present (with any value, even empty).
    Present(String),
    /// The header `.0` has exactly the value `.1`.
    Exact(String, String),
    /// The header `.0` has a value starting with `.1`.
    Prefix(String, String),
}

/// How the matched request path becomes the upstream path. The query string is always kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Rewrite {
    /// Forward the path unchanged.
    #[default]
    None,
    /// Only for [`PathMatch::Prefix`]: remove the matched prefix (a trailing `/` of the prefix
    /// is kept in the remainder); an empty result becomes `/`. With prefix `/api`,
    /// `/api/x` becomes `/x` and `/api` becomes `/`.
    StripPrefix,
    /// Only for [`PathMatch::Prefix`]: replace the matched prefix with this path (which must
    /// start with `/`). With prefix `/api` and `/v2`, `/api/x` becomes `/v2/x`.
    ReplacePrefix(String),
    /// A new path with `{name}` (or `{*name}`) placeholders filled from the route's template
    /// captures, verbatim (still percent-encoded as received). Every placeholder must name a
    /// capture of the route's [`PathMatch::Template`].
    Template(String),
}

/// One route as configured: conditions, a rewrite and the compiled action `T` (opaque here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec<T> {
    /// Unique, non-empty name used in errors, logs and metrics.
    pub id: String,
    /// Accepted hosts; empty means any host.
    pub hosts: Vec<HostMatch>,
    /// Accepted paths.
    pub path: PathMatch,
    /// Accepted methods (HTTP tokens, upper-cased at build time); empty means any method.
    pub methods: Vec<String>,
    /// Header conditions; all must hold.
    pub headers: Vec<HeaderMatch>,
    /// Higher wins over every other precedence rule; default 0.
    pub priority: i32,
    /// Applied to the path forwarded upstream.
    pub rewrite: Rewrite,
    /// What the proxy does with a matched request.
    pub action: T,
}

impl<T> RouteSpec<T> {
    /// A route for any host, method and headers, priority 0, no rewrite.
    pub fn new(id: impl Into<String>, path: PathMatch, action: T) -> Self {
        Self {
            id: id.into(),
            hosts: Vec::new(),
            path,
            methods: Vec::new(),
            headers: Vec::new(),
            priority: 0,
            rewrite: Rewrite::None,
            action,
        }
    }

    /// Adds an accepted host.
    #[must_use]
    pub fn host(mut self, host: HostMatch) -> Self {
        self.hosts.push(host);
        self
    }

    /// Adds an accepted method.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.methods.push(method.into());
        self
    }

    /// Adds a header condition.
    #[must_use]
    pub fn header(mut self, header: HeaderMatch) -> Self {
        self.headers.push(header);
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the rewrite.
    #[must_use]
    pub fn rewrite(mut self, rewrite: Rewrite) -> Self {
        self.rewrite = rewrite;
        self
    }
}
