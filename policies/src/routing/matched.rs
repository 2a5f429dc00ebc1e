//! The result of a lookup: which route, and where its captures are in the request path.
//!
//! A [`RouteMatch`] is a small `Copy` value on the stack: the route's index, a reference to
//! its compiled metadata, and capture ranges in a fixed array of [`MAX_CAPTURES`]. Capture
//! values are not copied; they are ranges into the path the caller still holds.

use std::ops::Range;

use super::compile::RouteMeta;
use super::path::MAX_CAPTURES;

/// A matched route. Valid for the lifetime of the table it came from.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'t> {
    pub(crate) index: usize,
    pub(crate) route: &'t RouteMeta,
    /// Capture ranges into the request path, in the route's capture order; only the first
    /// `route.captures.len()` are meaningful.
    pub(crate) spans: [(usize, usize); MAX_CAPTURES],
}

/// One captured value: a template placeholder's name and its bytes' range in the request
/// path (without the query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture<'t> {
    /// The placeholder's name (`id` for `{id}`, `rest` for `{*rest}`).
    pub name: &'t str,
    /// Where the value is in the request path.
    pub range: Range<usize>,
}

impl<'t> RouteMatch<'t> {
    /// Position of the matched route in the list given to `build`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The matched route's id.
    pub fn route_id(&self) -> &'t str {
        &self.route.id
    }

    /// The template's captures, in template order (none for exact and prefix routes).
    pub fn captures(&self) -> impl ExactSizeIterator<Item = Capture<'t>> + '_ {
        self.route
            .captures
            .iter()
            .zip(self.spans)
            .map(|(spec, (start, end))| Capture {
                name: &spec.name,
                range: start..end,
            })
    }

    /// The range of the capture called `name`, if the template has one.
    pub fn capture(&self, name: &str) -> Option<Range<usize>> {
        self.captures().find(|c| c.name == name).map(|c| c.range)
    }

    /// The bytes of the capture called `name`, taken from `path` (the path that was looked up).
    pub fn capture_in<'p>(&self, name: &str, path: &'p [u8]) -> Option<&'p [u8]> {
        path.get(self.capture(name)?)
    }

    /// Capture spans in route capture order, for the rewrite.
    pub(crate) fn spans(&self) -> &[(usize, usize)] {
        &self.spans[..self.route.captures.len()]
    }
}
