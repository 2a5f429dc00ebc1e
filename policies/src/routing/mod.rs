//! The compiled route table: which route serves a request, and the upstream path it gets.
//!
//! Sans-IO and on the hot path: config is compiled once into a [`RouteTable`] (at snapshot
//! time, shared read-only by every core); each request does one [`RouteTable::lookup`] over
//! borrowed slices of its head ([`RouteRequest`]), which allocates nothing and returns a
//! small `Copy` [`RouteMatch`]; the proxy then asks for the action and writes the upstream
//! path into its own buffer ([`RouteTable::write_upstream_path`]).
//!
//! # What a route matches
//!
//! A route matches when all of these hold:
//!
//! - **Host** ([`HostMatch`]), any of the route's hosts (none configured = any host).
//!   The request host is compared ASCII case-insensitively with its port (`:8080`,
//!   `[::1]:8080`) and one trailing dot removed. `*.example.com` needs at least one label
//!   before `.example.com` and does not match `example.com`.
//! - **Path** ([`PathMatch`]), on the raw path without the query: exact bytes; a prefix at
//!   a segment boundary (`/api` matches `/api`, `/api/`, `/api/x`, not `/apix`; a prefix
//!   ending in `/` matches what starts with it); or a template whose `{name}` is one whole
//!   non-empty segment and whose final `{*name}` takes the non-empty rest of the path
//!   (`/files/{*p}` matches `/files/a/b`, not `/files/` nor `/files`).
//! - **Method**, one of the route's (none configured = any).
//! - **Headers** ([`HeaderMatch`]), every matcher.
//!
//! # Precedence
//!
//! When several routes match, the winner is decided by, in order:
//!
//! 1. higher `priority` (default 0);
//! 2. the more specific host that matched: exact > wildcard with more labels
//!    (`*.a.example.com`) > wildcard with fewer (`*.example.com`) > any host;
//! 3. the more specific path: exact > template > prefix; between templates, more literal
//!    segments, then fewer captures (`{*rest}` counts as one), then one without a catch-all;
//!    between prefixes, the longer (in bytes, as written);
//! 4. declaration order: the earlier route.
//!
//! A route with several hosts competes with the most specific of its hosts that matched.
//!
//! # Index
//!
//! A linear scan would cost every request time proportional to the route count; this table
//! costs the host's label count plus the path's segment count. Hosts are hashed first
//! (`host.rs`: exact map, wildcard suffix map probed once per dot, host-less index); each
//! host key owns a path index (`trie.rs`: exact paths in a hash map, prefixes and templates
//! in a segment trie). Candidates in the index carry a precomputed precedence key
//! (`rank.rs`) and are sorted by it, so methods and headers (`conditions.rs`) are checked
//! only on the few candidates that could still win, and an index whose highest priority
//! cannot beat the current best is skipped.
//!
//! The rest: `spec.rs` (what config gives), `compile.rs` and `path.rs` (checking and
//! compiling one route), `table.rs` (build and lookup), `matched.rs` (the result),
//! `rewrite.rs` (the upstream path), `hasher.rs` (why the maps use a fixed fast hash).
//!
//! # Errors
//!
//! [`RouteTable::build`] checks everything up front and returns every [`RouteError`] at once,
//! each naming the route by index and id: paths not starting with `/`, malformed templates,
//! hosts, methods or header names, rewrites that do not fit the path, duplicate ids.
//!
//! # Rewrites
//!
//! [`Rewrite`] is applied by [`RouteTable::write_upstream_path`]; the query string is always
//! appended unchanged.

mod compile;
mod conditions;
mod error;
mod hasher;
mod host;
mod matched;
mod path;
mod rank;
mod request;
mod rewrite;
mod spec;
mod table;
mod trie;

pub use error::{RouteError, TemplateError};
pub use host::MAX_HOST_LEN;
pub use matched::{Capture, RouteMatch};
pub use path::{MAX_CAPTURES, MAX_SEGMENTS};
pub use request::{split_path_query, RouteRequest};
pub use spec::{HeaderMatch, HostMatch, PathMatch, Rewrite, RouteSpec};
pub use table::RouteTable;
