//! Edge response caching, sans I/O: what RFC 9111 lets a shared cache store and for how long,
//! how a stored response is matched to a request (`Vary`), answered conditionally, judged fresh
//! or stale, and where objects live on one core under a byte budget.
//!
//! The engine (`ringgate-http`'s cache phase) feeds these functions the request's and the
//! response's header fields and owns the I/O: it asks [`freshness::judge`] whether a response may
//! be stored, keeps objects in a per-core [`store::Store`], and asks [`freshness::Freshness`]
//! whether a stored one may answer a request now. Nothing here reads a clock: every function
//! takes the times it needs.

pub mod conditional;
pub mod directives;
pub mod freshness;
pub mod httpdate;
pub mod status;
pub mod store;

/// One header field as the cache sees it: a lowercase-insensitive name and its raw value.
pub type Field<'a> = (&'a str, &'a [u8]);

/// The values of every field named `name` (case-insensitive), in order.
pub fn values<'a>(fields: &'a [Field<'a>], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// The first value of the field named `name`, if present.
pub fn first<'a>(fields: &'a [Field<'a>], name: &'a str) -> Option<&'a [u8]> {
    values(fields, name).next()
}
