//! The cache phase: between admission and choosing an endpoint, a route with `cache` answers from
//! this core's stored responses when it may (RFC 9111, rules in `ringgate-cache`), waits for
//! another request's fetch of the same key (coalescing), or lets the request go upstream with a
//! ticket to store what comes back.
//!
//! | file          | what it does                                                           |
//! |---------------|------------------------------------------------------------------------|
//! | `lookup.rs`   | the phase: key, request directives, fresh / stale / miss, the ticket    |
//! | `pending.rs`  | one fetch per key per core: the others wait for it (bounded)            |
//! | `fill.rs`     | the response judged storable or not, its body kept as it streams down   |
//! | `serve.rs`    | a stored response written to the client (200, 304, HEAD)               |
//! | `refresh.rs`  | stale-while-revalidate: a background fetch on a client-less connection  |
//! | `replay.rs`   | the refresh's request head, made from the client's                     |
//! | `stale.rs`    | stale-if-error: a stored response instead of the upstream's failure     |
//! | `state.rs`    | per-core zones, the request's cache state, its ticket, a cached answer  |
//!
//! Each core keeps its own objects (shared-nothing, like pools and breakers): a zone's byte
//! budget is divided between the workers, a key is fetched at most once per core at a time, and
//! purges reach every core through the zone's purge log. A hit never skips admission: the phase
//! runs after authentication and limits.

pub(crate) mod fill;
pub(crate) mod lookup;
pub(crate) mod pending;
pub(crate) mod refresh;
pub(crate) mod replay;
pub(crate) mod serve;
pub(crate) mod stale;
pub(crate) mod state;
