//! Waiting for work off the core: a JWKS fetch, a token introspection, or a fail-closed rate
//! limit's store. The plan is made again when the wait ends (answered or not: the phase that
//! asked then decides on what it knows).

use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use std::time::{Duration, Instant};

/// What a phase waits on, and for how long at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OffCore {
    /// The work's ticket.
    pub(crate) ticket: u64,
    /// The longest the request waits.
    pub(crate) within: Duration,
    /// The rate limits' store (else authentication).
    pub(crate) limits: bool,
}

/// Waits for the work `o` names. Polls on the worker's own timer: the answer is produced on
/// another thread, which cannot wake this core's tasks. Only requests that missed a cache get
/// here, so a millisecond's resolution costs nothing in the common case.
pub(crate) async fn off_core<G: Gateway>(w: &Worker<G>, snap: &G, o: OffCore) {
    let until = Instant::now() + o.within;
    while Instant::now() < until {
        let ready = if o.limits {
            snap.limits_poll(o.ticket)
        } else {
            let mut slot = w.auth.borrow_mut();
            let state = slot.get_or_insert_with(|| snap.auth_runtime());
            snap.auth_poll(state, o.ticket)
        };
        if ready {
            break;
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}
