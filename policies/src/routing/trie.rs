//! The path index of one host (or host suffix): exact paths in a hash map, prefixes and
//! templates in a segment trie; and the search that walks it for one request.
//!
//! Why a trie of segments rather than a list or a radix tree of bytes: templates and
//! segment-boundary prefixes are defined on segments, so a segment trie matches them
//! directly, and its cost per lookup is the path's depth, independent of the route count.
//! A node has literal children in a hash map (a popular node, such as the root of a
//! thousand-service table, has hundreds), at most one parameter child shared by every
//! `{name}` at that position (names belong to routes, not nodes), and four candidate lists
//! sorted by [`Rank`], best first:
//!
//! - `prefix_here`: prefixes ending at this node without a trailing `/` (match here and below);
//! - `prefix_below`: prefixes ending with `/` (need at least one more segment);
//! - `template_end`: templates whose last segment is this node (need the path to end here);
//! - `catch_all`: templates ending with `{*name}` after this node (need a non-empty rest).
//!
//! The search visits every node the path can reach, literal and parameter branches alike,
//! and keeps the best acceptable candidate. Each trie node is visited at most once per
//! lookup (a request cannot make the walk longer than the trie) and the recursion is at
//! most [`MAX_SEGMENTS`](super::MAX_SEGMENTS) deep. Within a list the first candidate that
//! passes the method and header checks is the list's best, and a list whose head does not
//! beat the current best is skipped.

use std::cmp::Reverse;

use super::compile::RouteMeta;
use super::hasher::FastMap;
use super::path::{CaptureSource, CompiledPath, Segment, MAX_CAPTURES};
use super::rank::Rank;

/// A route in a candidate list, with its precedence key for this index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    rank: Rank,
    route: usize,
}

/// One trie node; see the module doc.
#[derive(Debug, Default)]
struct Node {
    literal: FastMap<Box<[u8]>, usize>,
    param: Option<usize>,
    prefix_here: Vec<Candidate>,
    prefix_below: Vec<Candidate>,
    template_end: Vec<Candidate>,
    catch_all: Vec<Candidate>,
}

/// Exact paths plus a segment trie, for the routes of one host key.
#[derive(Debug, Default)]
pub(crate) struct PathIndex {
    exact: FastMap<Box<[u8]>, Vec<Candidate>>,
    /// Trie arena; `nodes[0]` is the root once anything is inserted.
    nodes: Vec<Node>,
    /// Highest priority of any route here; `None` while empty.
    max_priority: Option<i32>,
}

impl PathIndex {
    /// Adds a route with its rank for this index.
    pub(crate) fn insert(&mut self, route: usize, rank: Rank, path: &CompiledPath) {
        self.max_priority = Some(
            self.max_priority
                .map_or(rank.priority, |p| p.max(rank.priority)),
        );
        let candidate = Candidate { rank, route };
        match path {
            CompiledPath::Exact(bytes) => {
                self.exact.entry(bytes.clone()).or_default().push(candidate)
            }
            CompiledPath::Prefix {
                segments,
                needs_more,
                ..
            } => {
                let mut node = self.root();
                for segment in segments {
                    node = self.literal_child(node, segment);
                }
                let node = &mut self.nodes[node];
                if *needs_more {
                    &mut node.prefix_below
                } else {
                    &mut node.prefix_here
                }
                .push(candidate);
            }
            CompiledPath::Template {
                segments,
                catch_all,
            } => {
                let mut node = self.root();
                for segment in segments {
                    node = match segment {
                        Segment::Literal(bytes) => self.literal_child(node, bytes),
                        Segment::Param => self.param_child(node),
                    };
                }
                let node = &mut self.nodes[node];
                if *catch_all {
                    &mut node.catch_all
                } else {
                    &mut node.template_end
                }
                .push(candidate);
            }
        }
    }

    /// Sorts every candidate list best first and trims spare capacity.
    pub(crate) fn finish(&mut self) {
        let sort = |list: &mut Vec<Candidate>| {
            list.sort_unstable_by_key(|c| Reverse(c.rank));
            list.shrink_to_fit();
        };
        self.exact.values_mut().for_each(sort);
        self.exact.shrink_to_fit();
        for node in &mut self.nodes {
            for list in [
                &mut node.prefix_here,
                &mut node.prefix_below,
                &mut node.template_end,
                &mut node.catch_all,
            ] {
                sort(list);
            }
            node.literal.shrink_to_fit();
        }
        self.nodes.shrink_to_fit();
    }

    fn root(&mut self) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        0
    }

    fn literal_child(&mut self, node: usize, segment: &[u8]) -> usize {
        if let Some(&child) = self.nodes[node].literal.get(segment) {
            return child;
        }
        let child = self.push_node();
        self.nodes[node].literal.insert(segment.into(), child);
        child
    }

    fn param_child(&mut self, node: usize) -> usize {
        if let Some(child) = self.nodes[node].param {
            return child;
        }
        let child = self.push_node();
        self.nodes[node].param = Some(child);
        child
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }
}

/// The best route found so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    /// Its precedence key.
    pub(crate) rank: Rank,
    /// Its position in the table.
    pub(crate) route: usize,
    /// Its capture ranges, in capture order.
    pub(crate) spans: [(usize, usize); MAX_CAPTURES],
}

/// One lookup's state: the request, the segment ranges on the current trie branch, and the
/// best candidate so far. Lives on the stack (about 300 bytes).
pub(crate) struct Search<'t, 'a> {
    metas: &'t [RouteMeta],
    path: &'a [u8],
    method: &'a [u8],
    headers: &'a [httparse::Header<'a>],
    /// `params[n]` is the span of the n-th parameter segment on the branch being walked.
    params: [(usize, usize); MAX_CAPTURES],
    best: Option<Found>,
}

impl<'t, 'a> Search<'t, 'a> {
    /// Starts a search; `path` starts with `/` and has no query.
    pub(crate) fn new(
        metas: &'t [RouteMeta],
        path: &'a [u8],
        method: &'a [u8],
        headers: &'a [httparse::Header<'a>],
    ) -> Self {
        Self {
            metas,
            path,
            method,
            headers,
            params: [(0, 0); MAX_CAPTURES],
            best: None,
        }
    }

    /// The winner, once every index has been searched.
    pub(crate) fn best(&self) -> Option<Found> {
        self.best
    }

    /// Searches one index, unless none of its routes could beat the best so far (indexes
    /// come most specific host first, so equal priority cannot win either).
    pub(crate) fn search(&mut self, index: &PathIndex) {
        let Some(max_priority) = index.max_priority else {
            return;
        };
        if self
            .best
            .is_some_and(|best| best.rank.priority >= max_priority)
        {
            return;
        }
        if let Some(list) = index.exact.get(self.path) {
            self.offer(list, 0);
        }
        if !index.nodes.is_empty() {
            // The first segment starts after the leading '/'.
            self.walk(&index.nodes, 0, 0, Some(1));
        }
    }

    /// Offers the candidates at `node`, then descends. `params` is how many parameter
    /// nodes lead here; `next` is where the next segment starts, `None` when the path has
    /// no more segments. Recursion depth is the trie's depth, at most
    /// [`MAX_SEGMENTS`](super::MAX_SEGMENTS).
    fn walk(&mut self, nodes: &[Node], node: usize, params: usize, next: Option<usize>) {
        let n = &nodes[node];
        self.offer(&n.prefix_here, 0);
        let Some(start) = next else {
            self.offer(&n.template_end, 0);
            return;
        };
        self.offer(&n.prefix_below, 0);
        if start < self.path.len() {
            self.offer(&n.catch_all, start);
        }
        let end = self.path[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(self.path.len(), |i| start + i);
        let after = (end < self.path.len()).then_some(end + 1);
        if !n.literal.is_empty() {
            if let Some(&child) = n.literal.get(&self.path[start..end]) {
                self.walk(nodes, child, params, after);
            }
        }
        if let Some(child) = n.param {
            // A parameter is a whole non-empty segment. The n-th parameter node exists only
            // for templates with more than n captures, so n < MAX_CAPTURES and the slot exists.
            if end > start {
                if let Some(slot) = self.params.get_mut(params) {
                    *slot = (start, end);
                    self.walk(nodes, child, params + 1, after);
                }
            }
        }
    }

    /// Takes the first acceptable candidate of a best-first list if it beats the best so
    /// far. `rest` is where a catch-all's capture starts.
    #[inline]
    fn offer(&mut self, list: &[Candidate], rest: usize) {
        for candidate in list {
            if self.best.is_some_and(|best| candidate.rank <= best.rank) {
                return;
            }
            let meta = &self.metas[candidate.route];
            if !meta.conditions.accept(self.method, self.headers) {
                continue;
            }
            let mut spans = [(0, 0); MAX_CAPTURES];
            for (span, capture) in spans.iter_mut().zip(meta.captures.iter()) {
                *span = match capture.source {
                    CaptureSource::Param(n) => self.params.get(n).copied().unwrap_or_default(),
                    CaptureSource::Rest => (rest, self.path.len()),
                };
            }
            self.best = Some(Found {
                rank: candidate.rank,
                route: candidate.route,
                spans,
            });
            return;
        }
    }
}
