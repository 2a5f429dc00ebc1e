//! One core's multiplexed HTTP/2 connections to upstream endpoints: each carries up to the
//! upstream's stream cap, a stream slot is a [`Lease`] released on drop, and connections being
//! opened are shared with the requests that arrive meanwhile. A pooled connection's slot count
//! is per core: no lock. (Opening one: `h2connect.rs`.)

use crate::engine::upstream::pool::ConnKey;
use bytes::Bytes;
use h2::client::SendRequest;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One core's HTTP/2 connections to upstream endpoints.
#[derive(Default)]
pub(crate) struct H2Clients {
    pub(crate) conns: HashMap<ConnKey, Vec<H2Client>>,
    /// Connections being opened: requests that arrive meanwhile wait for one of these (up to its
    /// stream cap) instead of each opening its own.
    pub(crate) opening: HashMap<ConnKey, Vec<Rc<Opening>>>,
}

/// A connection being opened.
pub(crate) struct Opening {
    /// Streams promised to it (its opener's and the waiters').
    pub(crate) promised: Cell<u32>,
    /// Set when it is up (`true`) or failed (`false`).
    pub(crate) outcome: Cell<Option<bool>>,
}

pub(crate) struct H2Client {
    pub(crate) send: SendRequest<Bytes>,
    /// Streams open on it now.
    pub(crate) active: Rc<Cell<u32>>,
    /// When its last stream ended (or it opened).
    pub(crate) idle_since: Rc<Cell<Instant>>,
    /// Its driver ended: it takes no new stream.
    pub(crate) dead: Rc<Cell<bool>>,
}

/// A stream slot on a connection, released on drop.
pub(crate) struct Lease {
    pub(crate) send: SendRequest<Bytes>,
    pub(crate) active: Rc<Cell<u32>>,
    pub(crate) idle_since: Rc<Cell<Instant>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let left = self.active.get().saturating_sub(1);
        self.active.set(left);
        if left == 0 {
            self.idle_since.set(Instant::now());
        }
    }
}

impl H2Clients {
    /// A slot on a live connection for `key` with fewer than `max` streams open.
    pub(crate) fn pick(&mut self, key: ConnKey, max: u32) -> Option<Lease> {
        let list = self.conns.get_mut(&key)?;
        list.retain(|c| !c.dead.get());
        let c = list.iter().find(|c| c.active.get() < max)?;
        c.active.set(c.active.get() + 1);
        Some(Lease {
            send: c.send.clone(),
            active: c.active.clone(),
            idle_since: c.idle_since.clone(),
        })
    }

    /// Connections open now (not yet known dead).
    pub(crate) fn open(&self) -> usize {
        self.conns
            .values()
            .flatten()
            .filter(|c| !c.dead.get())
            .count()
    }

    /// Lets go of connections without a stream for `idle` (their driver then ends the
    /// connection once the last handle is gone), and of dead ones.
    pub(crate) fn sweep(&mut self, idle: Duration) {
        let now = Instant::now();
        for list in self.conns.values_mut() {
            list.retain(|c| {
                !c.dead.get()
                    && (c.active.get() > 0 || now.duration_since(c.idle_since.get()) < idle)
            });
        }
        self.conns.retain(|_, l| !l.is_empty());
    }
}
