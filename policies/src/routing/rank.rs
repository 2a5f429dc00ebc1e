//! The precedence key: which of several matching routes wins.
//!
//! Each (route, host matcher) pair gets a [`Rank`] at build time; a larger rank wins. Field
//! order is the rule order, and `Ord` is derived, so the key *is* the rule: priority, then
//! host specificity, then path specificity, then declaration order. Candidate lists in the
//! index are sorted by it, so the lookup stops at the first acceptable candidate of a list
//! and skips lists whose head cannot beat the best found so far.

use std::cmp::Reverse;

/// Path specificity; variants in increasing order, then fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathRank {
    /// A prefix: longer (in bytes, as written) is more specific.
    Prefix {
        /// Byte length of the prefix.
        len: usize,
    },
    /// A template: more literal segments, then fewer captures (a catch-all counts as one),
    /// then no catch-all over a catch-all.
    Template {
        /// Literal segments.
        literals: usize,
        /// Captures, reversed so that fewer is greater.
        fewer_captures: Reverse<usize>,
        /// True unless the template ends with `{*name}`.
        no_catch_all: bool,
    },
    /// An exact path: nothing is more specific.
    Exact,
}

impl PathRank {
    /// The rank of a template with these counts.
    pub(crate) fn template(literals: usize, captures: usize, catch_all: bool) -> Self {
        Self::Template {
            literals,
            fewer_captures: Reverse(captures),
            no_catch_all: !catch_all,
        }
    }
}

/// The whole precedence key; greater wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    /// The route's configured priority.
    pub(crate) priority: i32,
    /// Exact host `u16::MAX`, a wildcard its suffix's label count, no host 0.
    pub(crate) host: u16,
    /// See [`PathRank`].
    pub(crate) path: PathRank,
    /// Declaration index, reversed so that earlier is greater.
    pub(crate) order: Reverse<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(priority: i32, host: u16, path: PathRank, order: usize) -> Rank {
        Rank {
            priority,
            host,
            path,
            order: Reverse(order),
        }
    }

    #[test]
    fn fields_decide_in_rule_order() {
        let exact = PathRank::Exact;
        let prefix = PathRank::Prefix { len: 100 };
        assert!(rank(1, 0, prefix, 9) > rank(0, u16::MAX, exact, 0));
        assert!(rank(0, 3, prefix, 9) > rank(0, 2, exact, 0));
        assert!(rank(0, 2, exact, 9) > rank(0, 2, PathRank::template(9, 0, false), 0));
        assert!(rank(0, 2, exact, 0) > rank(0, 2, exact, 1));
    }

    #[test]
    fn path_specificity_orders_exact_template_prefix() {
        assert!(PathRank::Exact > PathRank::template(50, 0, false));
        assert!(PathRank::template(0, 9, true) > PathRank::Prefix { len: 1000 });
        assert!(PathRank::template(2, 5, true) > PathRank::template(1, 0, false));
        assert!(PathRank::template(2, 1, false) > PathRank::template(2, 2, false));
        assert!(PathRank::template(1, 1, false) > PathRank::template(1, 1, true));
        assert!(PathRank::Prefix { len: 5 } > PathRank::Prefix { len: 4 });
    }
}
