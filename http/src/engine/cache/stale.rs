//! `stale-if-error`: when going upstream fails (no answer, a `5xx`, or the upstream side is
//! refused before trying: breaker open, no healthy endpoint, bulkhead full), a stored response
//! that is stale within its `stale-if-error` answers instead.

use super::state::{CacheReq, Cached};
use crate::engine::request::stop::Stop;
use ringgate_cache::freshness::Usable;
use ringgate_cache::status::{ttl_secs, Outcome};
use ringgate_cache::store::Object;
use std::rc::Rc;
use std::time::Instant;

/// A refusal of the upstream side (breaker open, no healthy endpoint, bulkhead full) is answered
/// with the stored response instead when it is stale within `stale-if-error`.
pub(crate) fn instead_of_refusal<'s>(stop: Stop<'s>, st: &mut CacheReq) -> Stop<'s> {
    let Stop::Refuse {
        r,
        consumed,
        http10,
        route: Some(route),
        fallback,
    } = stop
    else {
        return stop;
    };
    match stale_if_error(st).filter(|_| r.status >= 500) {
        Some(u) => {
            st.ticket = None;
            Stop::Cached(Box::new(Cached {
                refresh: None,
                obj: u.obj,
                outcome: Outcome::StaleIfError,
                ttl: u.ttl,
                detail: "stale-if-error",
                not_modified: u.not_modified,
                head_only: u.head_only,
                consumed,
                keep_alive: !r.close,
                http10,
                route,
            }))
        }
        None => Stop::Refuse {
            r,
            consumed,
            http10,
            route: Some(route),
            fallback,
        },
    }
}

/// A stored response the upstream's failure lets the current request be answered with.
pub(crate) struct StaleUse {
    pub(crate) obj: Rc<Object>,
    /// Its (negative) ttl.
    pub(crate) ttl: i64,
    /// The client's validators match it.
    pub(crate) not_modified: bool,
    /// The request is a `HEAD`.
    pub(crate) head_only: bool,
}

/// The stored response of the current request, if the upstream failing lets it be served now.
pub(crate) fn stale_if_error(st: &CacheReq) -> Option<StaleUse> {
    let t = st.ticket.as_ref()?;
    let obj = t.stale.clone()?;
    let Usable::Stale {
        stale_for,
        if_error: true,
        ..
    } = obj
        .fresh
        .usable(obj.stored_at, Instant::now(), &t.directives)
    else {
        return None;
    };
    let not_modified = ringgate_cache::conditional::not_modified(
        t.if_none_match.as_deref(),
        t.if_modified_since.as_deref(),
        obj.etag.as_deref(),
        obj.last_modified.as_deref(),
    );
    Some(StaleUse {
        obj,
        ttl: ttl_secs(stale_for, false),
        not_modified,
        head_only: !t.get,
    })
}
