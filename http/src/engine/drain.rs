//! A worker-local "the process is stopping" signal that idle connections can await.
//!
//! The stop flag is set on a control thread, and monoio tasks cannot be woken from another
//! thread, so the worker's tick notices the flag and fires this local signal; connections
//! waiting between requests wake up, cancel their read cleanly and close. Single-threaded: a
//! `Cell` and a `RefCell` of wakers, no atomics.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Fired once when the worker starts draining.
#[derive(Default)]
pub(crate) struct DrainSignal {
    fired: Cell<bool>,
    /// When it fired (a WebSocket tunnel times its close frame from it).
    fired_at: Cell<Option<std::time::Instant>>,
    /// Registered wakers; a waiter owns its slot until it is dropped (slots are reused).
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl DrainSignal {
    /// Fires the signal (idempotent) and wakes every waiter.
    pub(crate) fn fire(&self) {
        if self.fired.replace(true) {
            return;
        }
        self.fired_at.set(Some(std::time::Instant::now()));
        let wakers: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Whether it fired.
    pub(crate) fn fired(&self) -> bool {
        self.fired.get()
    }

    /// When it fired, if it did.
    pub(crate) fn fired_at(&self) -> Option<std::time::Instant> {
        self.fired_at.get()
    }

    /// Completes when the signal fires.
    pub(crate) fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            s: self,
            slot: None,
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.slots.borrow().iter().filter(|w| w.is_some()).count()
    }
}

/// The future of [`DrainSignal::wait`].
pub(crate) struct DrainWait<'a> {
    s: &'a DrainSignal,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.s.fired.get() {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match self.slot {
            Some(i) => {
                if let Some(w) = self.s.slots.borrow_mut().get_mut(i) {
                    *w = Some(waker);
                }
            }
            None => {
                let mut slots = self.s.slots.borrow_mut();
                let i = match self.s.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = Some(waker);
                        i
                    }
                    None => {
                        slots.push(Some(waker));
                        slots.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            if let Some(w) = self.s.slots.borrow_mut().get_mut(i) {
                *w = None;
            }
            self.s.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_release_their_slot_and_fire_wakes_them() {
        let s = DrainSignal::default();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..100 {
            let mut w = Box::pin(s.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(s.registered(), 0, "dropped waits leave nothing behind");
        assert!(s.slots.borrow().len() <= 1, "slots are reused");
        let mut w = Box::pin(s.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        s.fire();
        assert!(s.fired());
        assert!(w.as_mut().poll(&mut cx).is_ready());
    }
}
