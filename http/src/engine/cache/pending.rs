//! One fetch per key per core: the first request that misses (or must validate) fetches, the
//! others wait for it, up to the route's `lock_timeout`, then look again (a hit, or they go to
//! the upstream themselves). A fetch that ends any way (stored, not storable, failed, the request
//! dropped) releases its waiters: the release is the fetch's `Drop`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A fetch in progress, which requests can wait for.
#[derive(Default)]
pub(crate) struct Pending {
    done: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Pending {
    fn finish(&self) {
        self.done.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until the fetch ends, at most `max`.
    pub(crate) async fn wait(self: Rc<Self>, max: Duration) {
        let _ = monoio::time::timeout(
            max,
            Done {
                of: self,
                registered: None,
            },
        )
        .await;
    }
}

/// A wait for a fetch; a wait given up (timed out, its request gone) takes its waker back.
struct Done {
    of: Rc<Pending>,
    registered: Option<Waker>,
}

impl Future for Done {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.of.done.get() {
            return Poll::Ready(());
        }
        if !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let mut w = self.of.waiters.borrow_mut();
            if let Some(old) = self.registered.as_ref() {
                w.retain(|x| !x.will_wake(old));
            }
            w.push(cx.waker().clone());
            drop(w);
            self.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(mine) = self.registered.take() {
            if !self.of.done.get() {
                self.of.waiters.borrow_mut().retain(|x| !x.will_wake(&mine));
            }
        }
    }
}

/// The fetches in progress in one zone on one core, by key.
#[derive(Default)]
pub(crate) struct Pendings {
    by_key: RefCell<HashMap<Box<[u8]>, Rc<Pending>>>,
}

impl Pendings {
    /// The fetch of `key` in progress, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Rc<Pending>> {
        self.by_key.borrow().get(key).cloned()
    }

    /// Starts the fetch of `key` (none may be in progress).
    pub(crate) fn start(self: &Rc<Self>, key: &[u8]) -> Fetch {
        let p = Rc::new(Pending::default());
        self.by_key.borrow_mut().insert(key.into(), p.clone());
        Fetch {
            of: self.clone(),
            key: key.into(),
            pending: p,
        }
    }
}

/// The right to fetch a key for the core; dropping it ends the fetch and wakes the waiters.
pub(crate) struct Fetch {
    of: Rc<Pendings>,
    key: Box<[u8]>,
    pending: Rc<Pending>,
}

impl Drop for Fetch {
    fn drop(&mut self) {
        let mut m = self.of.by_key.borrow_mut();
        if m.get(&self.key)
            .is_some_and(|p| Rc::ptr_eq(p, &self.pending))
        {
            m.remove(&self.key);
        }
        drop(m);
        self.pending.finish();
    }
}
