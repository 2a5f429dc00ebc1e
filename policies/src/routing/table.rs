//! The compiled route table: built once per config snapshot, shared read-only by every
//! core, asked once per request.

use std::cmp::Reverse;
use std::collections::HashMap;

use super::compile::{compile_route, RouteMeta};
use super::error::RouteError;
use super::host::{normalize_request_host, HostIndex, MAX_HOST_LEN};
use super::matched::RouteMatch;
use super::rank::Rank;
use super::request::{split_path_query, RouteRequest};
use super::spec::RouteSpec;
use super::trie::{PathIndex, Search};

/// Routes compiled for lookup; `T` is each route's action, opaque to the router.
///
/// Immutable once built, so it can sit in an `Arc<Snapshot>` shared by all cores.
#[derive(Debug)]
pub struct RouteTable<T> {
    /// Per-route data the lookup and rewrite read, by declaration index.
    metas: Box<[RouteMeta]>,
    /// Actions, by declaration index (kept apart so the index is not generic).
    actions: Box<[T]>,
    /// Host, then path, indexes.
    index: HostIndex<PathIndex>,
}

impl<T> RouteTable<T> {
    /// Checks and compiles `routes`; their order is the declaration order used to break ties.
    ///
    /// # Errors
    /// Every problem in every route, each naming the route by index and id.
    pub fn build(routes: Vec<RouteSpec<T>>) -> Result<Self, Vec<RouteError>> {
        let mut errors = Vec::new();
        let mut first_with_id: HashMap<&str, usize> = HashMap::with_capacity(routes.len());
        let mut compiled = Vec::with_capacity(routes.len());
        for (index, spec) in routes.iter().enumerate() {
            if let Some(&first) = first_with_id.get(spec.id.as_str()) {
                errors.push(RouteError::DuplicateId {
                    index,
                    id: spec.id.clone(),
                    first,
                });
            } else {
                first_with_id.insert(&spec.id, index);
            }
            compiled.push(compile_route(index, spec, &mut errors));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let compiled: Vec<_> = compiled.into_iter().flatten().collect();

        let mut index: HostIndex<PathIndex> = HostIndex::default();
        for (order, route) in compiled.iter().enumerate() {
            for host in &route.hosts {
                let rank = Rank {
                    priority: route.priority,
                    host: host.specificity(),
                    path: route.path.rank(),
                    order: Reverse(order),
                };
                index.entry(host).insert(order, rank, &route.path);
            }
        }
        index.values_mut().for_each(PathIndex::finish);

        Ok(Self {
            metas: compiled.into_iter().map(|r| r.meta).collect(),
            actions: routes.into_iter().map(|r| r.action).collect(),
            index,
        })
    }

    /// Finds the best route for a request (see the [module doc](super) for precedence), or
    /// `None`. Allocates nothing; the cost depends on the host's labels and the path's
    /// segments, not on the number of routes.
    pub fn lookup<'t>(&'t self, req: &RouteRequest<'_>) -> Option<RouteMatch<'t>> {
        let (path, _query) = split_path_query(req.path);
        if path.first() != Some(&b'/') {
            return None;
        }
        let mut host_buf = [0u8; MAX_HOST_LEN];
        let host = normalize_request_host(req.host, &mut host_buf);
        let mut search = Search::new(&self.metas, path, req.method, req.headers);
        for path_index in self.index.probe(host) {
            search.search(path_index);
        }
        let found = search.best()?;
        Some(RouteMatch {
            index: found.route,
            route: &self.metas[found.route],
            spans: found.spans,
        })
    }

    /// The matched route's action. `m` must come from this table's [`lookup`](Self::lookup).
    pub fn action(&self, m: &RouteMatch<'_>) -> &T {
        debug_assert!(
            std::ptr::eq(m.route, &self.metas[m.index]),
            "match from another table"
        );
        &self.actions[m.index]
    }

    /// The matched route's id. `m` must come from this table's [`lookup`](Self::lookup).
    pub fn route_id(&self, m: &RouteMatch<'_>) -> &str {
        &self.metas[m.index].id
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// True when the table has no routes (every lookup misses).
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Appends the upstream path to `out`: `path` rewritten per the matched route, then
    /// `?query` if `query` is `Some` (kept byte for byte, even when empty).
    ///
    /// `path` must be the path given to [`lookup`](Self::lookup) (captures are ranges into
    /// it); a `?…` suffix in it is ignored, as in the lookup.
    pub fn write_upstream_path(
        &self,
        m: &RouteMatch<'_>,
        path: &[u8],
        query: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) {
        let (path, _) = split_path_query(path);
        self.metas[m.index].rewrite.apply(path, m.spans(), out);
        if let Some(query) = query {
            out.push(b'?');
            out.extend_from_slice(query);
        }
    }
}
