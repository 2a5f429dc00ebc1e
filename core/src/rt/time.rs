//! Timers of the runtime: deadlines in one ordered map per thread, fired by the executor between
//! parks, and the park's wait bounded by the next one, so a timer costs no ring operation (no
//! `io_uring` timeout per read, as monoio arms today).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::executor::{current, try_current};

/// The thread's pending deadlines.
#[derive(Default)]
pub(crate) struct Timers {
    map: BTreeMap<(Instant, u64), Waker>,
    seq: u64,
}

impl Timers {
    pub(crate) fn insert(&mut self, at: Instant, w: Waker) -> (Instant, u64) {
        self.seq += 1;
        let key = (at, self.seq);
        self.map.insert(key, w);
        key
    }

    /// Wakes every timer that is due; returns how many.
    pub(crate) fn fire(&mut self) -> usize {
        if self.map.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let mut n = 0;
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
            n += 1;
        }
        n
    }

    /// How long until the next timer (`None`: no timer).
    pub(crate) fn until_next(&self) -> Option<Duration> {
        self.map
            .keys()
            .next()
            .map(|(at, _)| at.saturating_duration_since(Instant::now()))
    }

    /// Points the pending entry `key` at waker `w`; false when it has fired (or never was).
    pub(crate) fn refresh(&mut self, key: (Instant, u64), w: &Waker) -> bool {
        match self.map.get_mut(&key) {
            Some(old) => {
                if !old.will_wake(w) {
                    *old = w.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Forgets the entry `key` (if it has not fired).
    pub(crate) fn remove(&mut self, key: (Instant, u64)) {
        self.map.remove(&key);
    }

    /// Removes the entry `key` and hands back its waker (`None` if it has fired).
    pub(crate) fn take(&mut self, key: (Instant, u64)) -> Option<Waker> {
        self.map.remove(&key)
    }

    /// Timers pending.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Completes at its deadline.
pub struct Sleep {
    at: Instant,
    key: Option<(Instant, u64)>,
}

/// Completes at `at`.
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep { at, key: None }
}

/// Completes after `d`.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

/// Timers pending on this thread's runtime.
pub fn pending_timers() -> usize {
    current().timers.borrow().len()
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.cancel();
            return Poll::Ready(());
        }
        let rt = current();
        let mut timers = rt.timers.borrow_mut();
        if let Some(k) = self.key {
            match timers.map.get_mut(&k) {
                Some(w) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                    return Poll::Pending;
                }
                // Fired but polled before it was due (cannot happen with a monotonic clock):
                // register again.
                None => self.key = None,
            }
        }
        self.key = Some(timers.insert(self.at, cx.waker().clone()));
        Poll::Pending
    }
}

impl Sleep {
    fn cancel(&mut self) {
        if let (Some(k), Some(rt)) = (self.key.take(), try_current()) {
            rt.timers.borrow_mut().map.remove(&k);
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.key.is_some() {
            self.cancel();
        }
    }
}

/// `fut` did not finish in time.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `fut` until `d` passes.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut sleep = std::pin::pin!(sleep(d));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
