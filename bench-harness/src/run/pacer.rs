//! The generator's pacing timer: a timerfd in the thread's epoll set, armed for the next
//! arrival (or sweep) and re-armed only when that deadline changes, about once per request.
//!
//! Why not the wait's own timeout: `epoll_pwait2` with a timeout arms a kernel timer on every
//! wait and cancels it when I/O wakes the thread first; at two or three waits per request, on a
//! virtual machine each arm or cancel that reprograms the clock is a trap to the host. Measured
//! in perf-reports/0007-harness-verdict: the generator's CPU per request fell by about a tenth.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use crate::sys::{self, Epoll, Interest};

/// The epoll token of the pacing timer (connections use their slot index).
pub const TOKEN: u64 = u64::MAX;

/// A one-shot timer for the generator loop.
pub struct Pacer {
    fd: OwnedFd,
    armed: Option<Instant>,
    /// Fired and not re-armed or disarmed since (a timerfd stays readable until then).
    fired: bool,
}

impl Pacer {
    /// Creates the timer and registers it with `epoll` under [`TOKEN`].
    pub fn new(epoll: &Epoll) -> io::Result<Self> {
        let fd = sys::timerfd_create()?;
        epoll.add(fd.as_raw_fd(), Interest::Read, TOKEN)?;
        Ok(Self {
            fd,
            armed: None,
            fired: false,
        })
    }

    /// Makes the timer fire at `wake` (`None`: not at all); a system call only on a change.
    pub fn set(&mut self, wake: Option<Instant>) {
        if wake == self.armed && !self.fired {
            return;
        }
        let fd = self.fd.as_raw_fd();
        let _ = match wake {
            Some(w) => sys::timerfd_arm(fd, w.saturating_duration_since(Instant::now())),
            None => sys::timerfd_disarm(fd),
        };
        self.armed = wake;
        self.fired = false;
    }

    /// The timer's event arrived at `now`: returns the deadline it was armed for.
    pub fn on_fire(&mut self) -> Option<Instant> {
        self.fired = true;
        self.armed.take()
    }
}
