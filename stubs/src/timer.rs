//! A precise sleep for monoio tasks. monoio's timer wheel has 1 ms resolution and rounds up, so a
//! "2 ms" injected latency would come out anywhere between 2 and 3 ms; a stub whose latency is the
//! yardstick for the generator's accuracy cannot have that. Each connection that needs delays
//! owns one timerfd (nanosecond resolution, created on first use), arms it, and waits for it to
//! become readable through the driver (a poll op on io_uring, readiness on epoll).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys;

/// A one-shot timer bound to the current monoio runtime.
pub struct PreciseTimer {
    stream: monoio::net::UnixStream,
    fd: RawFd,
}

impl PreciseTimer {
    /// Creates the timerfd and registers it with the current runtime.
    pub fn new() -> io::Result<Self> {
        let owned = sys::timerfd_create()?;
        let fd = owned.as_raw_fd();
        // monoio only needs a pollable fd: wrapping the timerfd in a UnixStream lets us reuse its
        // readiness wait; no socket call is ever made on it.
        let std_stream = std::os::unix::net::UnixStream::from(owned);
        let stream = monoio::net::UnixStream::from_std(std_stream)?;
        Ok(Self { stream, fd })
    }

    /// Waits until `deadline` (returns at once if it has passed).
    pub async fn sleep_until(&mut self, deadline: Instant) -> io::Result<()> {
        let now = Instant::now();
        if deadline <= now {
            return Ok(());
        }
        sys::timerfd_arm(self.fd, deadline - now)?;
        loop {
            self.stream.readable(false).await?;
            if sys::timerfd_consume(self.fd)? {
                return Ok(());
            }
        }
    }

    /// Waits for `d`.
    pub async fn sleep(&mut self, d: Duration) -> io::Result<()> {
        self.sleep_until(Instant::now() + d).await
    }
}
