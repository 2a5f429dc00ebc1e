//! What the runtime parks on: io_uring ([`Ring`]) by default, epoll ([`Reactor`]) when the host
//! refuses io_uring; the executor and the sockets ask this which one they run on.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::reactor::Reactor;
use crate::ring::Ring;

/// Entries queued on the ring that are submitted at once, not with the next park's enter.
const EAGER_SUBMIT: usize = 32;

/// The I/O driver of a runtime.
#[derive(Clone)]
pub(crate) enum Io {
    Ring(Rc<Ring>),
    Epoll(Rc<Reactor>),
}

impl Io {
    /// Waits (one syscall) for I/O or `timeout`, then hands out what completed.
    pub(crate) fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Io::Ring(r) => {
                let res = r.park(timeout);
                r.reap();
                res
            }
            Io::Epoll(e) => e.park(timeout),
        }
    }

    /// Between rounds of ready tasks: take what already completed without waiting. On the ring
    /// this costs no syscall unless much is queued; epoll must ask the kernel (a zero wait).
    pub(crate) fn poll_now(&self) {
        match self {
            Io::Ring(r) => {
                if r.unsubmitted() >= EAGER_SUBMIT {
                    let _ = r.submit();
                }
                r.reap();
            }
            Io::Epoll(e) => {
                let _ = e.park(Some(Duration::ZERO));
            }
        }
    }

    /// `io_uring` or `epoll`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Io::Ring(_) => "io_uring",
            Io::Epoll(_) => "epoll",
        }
    }
}
