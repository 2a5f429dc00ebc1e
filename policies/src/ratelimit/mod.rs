//! Rate limiting: one global limit across cores and nodes, without a round trip per request.
//!
//! Each core judges its own requests against per-key entries it alone owns ([`local`]): tokens
//! leased to it, plus an optimistic share of what nobody leased. Once per reconcile tick every
//! core reports what it spent and was asked for, and a control thread ([`reconcile`]) syncs the
//! node's totals with a [`store`] (Redis, or in-process when there is none), then hands every
//! core its next allowance, sized by recent demand. The request path shares nothing with other
//! cores: grants and reports cross by message, once per tick. It never waits for the store,
//! except the first request of a fail-closed limit's key the store has not answered for lately
//! (which waits for that key's sync, so no request passes on a word older than an outage).
//!
//! [`spec`] holds what a limit is (algorithm, key, tiers, failure mode) and [`clientip`] which
//! client address a limit keyed on the IP believes behind proxies.

pub mod clientip;
pub mod local;
pub mod reconcile;
pub mod spec;
pub mod store;

#[cfg(test)]
mod tests;
