//! One deadline per connection (issue 16's lever "a deadline per connection instead of a timer
//! per operation"): a connection moves its deadline as it reads and writes, and a move is a field
//! write. The thread's timer map holds at most one entry per deadline, armed no later than the
//! deadline; when a deadline moves later the entry stays, and when it fires early the waiting
//! future finds the deadline moved and arms again for the new time (a move earlier than the
//! armed entry moves the entry). A request that moves its
//! deadline on every read costs one timer entry per deadline period, not one per read.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::executor::{current, try_current};
use super::time::Elapsed;

#[derive(Default)]
struct Inner {
    /// When it expires (`None`: never).
    at: Cell<Option<Instant>>,
    /// The timer entry armed for it, if any (its key in the thread's map).
    armed: Cell<Option<(Instant, u64)>>,
}

/// A movable deadline (cheap to clone: clones share it). One future waits on it at a time (a
/// connection's task): a second waiter takes the timer's wake-up over.
#[derive(Clone, Default)]
pub struct Deadline {
    inner: Rc<Inner>,
}

impl Deadline {
    /// A deadline that never expires until [`Deadline::set`].
    pub fn new() -> Deadline {
        Deadline::default()
    }

    /// Expires at `at` (earlier or later than before). Later is a field write; earlier than the
    /// armed entry moves the entry (the waiter must wake in time).
    pub fn set(&self, at: Instant) {
        self.inner.at.set(Some(at));
        let Some(key) = self.inner.armed.get() else {
            return;
        };
        if at >= key.0 {
            return;
        }
        if let Some(rt) = try_current() {
            let mut timers = rt.timers.borrow_mut();
            if let Some(w) = timers.take(key) {
                self.inner.armed.set(Some(timers.insert(at, w)));
            }
        }
    }

    /// Never expires (until set again).
    pub fn clear(&self) {
        self.inner.at.set(None);
    }

    /// When it expires.
    pub fn at(&self) -> Option<Instant> {
        self.inner.at.get()
    }

    /// Whether it has passed.
    pub fn expired(&self) -> bool {
        self.inner.at.get().is_some_and(|at| Instant::now() >= at)
    }

    /// Ready once the deadline has passed (as it stands when polled); arms at most one timer.
    fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(at) = self.inner.at.get() else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            return Poll::Ready(());
        }
        let rt = current();
        let mut timers = rt.timers.borrow_mut();
        match self.inner.armed.get() {
            // An entry that fires no later than the deadline is kept: on firing early, the next
            // poll arms for the deadline as it then stands.
            Some(key) if key.0 <= at && timers.refresh(key, cx.waker()) => {}
            old => {
                if let Some(key) = old {
                    timers.remove(key);
                }
                self.inner
                    .armed
                    .set(Some(timers.insert(at, cx.waker().clone())));
            }
        }
        Poll::Pending
    }

    /// Runs `fut` until it finishes or the deadline passes, whichever is first; the deadline may
    /// move while it runs.
    pub async fn within<F: Future>(&self, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            match self.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let (Some(key), Some(rt)) = (self.armed.get(), try_current()) {
            rt.timers.borrow_mut().remove(key);
        }
    }
}
