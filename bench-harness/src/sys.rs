//! The Linux system calls ringbench's generator needs beyond the stub server's: epoll with a
//! nanosecond timeout (the generator's pacing loop), per-thread CPU time, clock ticks, thread ids
//! and signals to processes it started. The timer and socket calls both sides use (timerfd,
//! `shutdown(2)`, zero linger, timer slack) live in [`ringgate_stubs::sys`] and are re-exported
//! here, so `crate::sys` names them all.
//!
//! Every function here is a small safe wrapper: the `unsafe` blocks only pass plain integers or
//! pointers to stack values that live for the duration of the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use ringgate_stubs::sys::{cvt, timespec};
pub use ringgate_stubs::sys::{
    set_linger_zero, set_timer_slack, shutdown_both, timerfd_arm, timerfd_consume, timerfd_create,
    timerfd_disarm,
};

/// CPU time (user + system) consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` lives on the stack for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The kernel's clock ticks per second, for /proc stat fields (almost always 100).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and returns an integer.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Sends `sig` to process `pid` (only ever a process this program started).
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: plain integer arguments; pid > 0 addresses exactly one process.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// Readiness interest for [`Epoll::add`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Readable.
    Read,
    /// Readable and writable (while a connect or a large write is pending).
    ReadWrite,
}

impl Interest {
    fn bits(self) -> u32 {
        let base = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        match self {
            Interest::Read => base,
            Interest::ReadWrite => base | libc::EPOLLOUT as u32,
        }
    }
}

/// One readiness event: the token given at registration and whether it may read / write / hung up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    /// Token registered with the fd.
    pub token: u64,
    /// EPOLLIN or EPOLLRDHUP / EPOLLHUP / EPOLLERR (a read will tell which).
    pub readable: bool,
    /// EPOLLOUT.
    pub writable: bool,
}

/// A level-triggered epoll instance with a nanosecond-resolution wait (`epoll_pwait2`).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
    raw: Vec<libc::epoll_event>,
}

impl Epoll {
    /// Creates an epoll instance that can return up to `capacity` events per wait.
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain integer argument.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)];
        Ok(Self { fd, raw })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.bits(),
            u64: token,
        };
        // SAFETY: `ev` lives on the stack for the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Registers `fd` with `token`.
    pub fn add(&self, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    /// Changes the interest of a registered fd.
    pub fn modify(&self, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    /// Removes `fd` (closing it also removes it).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL.
        cvt(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Waits for events for at most `timeout` (`None`: forever) and appends them to `out`.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> io::Result<usize> {
        let ts = timeout.map(timespec);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `raw` has `raw.len()` initialised slots the kernel may fill; `ts` outlives the
        // call; a null sigmask leaves the mask unchanged. epoll_pwait2 is called through
        // syscall(2) so an older libc without the wrapper still works.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.fd.as_raw_fd(),
                self.raw.as_mut_ptr(),
                self.raw.len() as libc::c_int,
                ts_ptr,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err);
        }
        let n = n as usize;
        for raw in &self.raw[..n] {
            let bits = raw.events;
            out.push(Event {
                token: raw.u64,
                readable: bits
                    & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                    != 0,
                writable: bits & libc::EPOLLOUT as u32 != 0,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn epoll_wait_times_out_with_no_events() {
        let mut ep = Epoll::new(8).unwrap();
        let mut out = Vec::new();
        let t0 = Instant::now();
        let n = ep.wait(Some(Duration::from_micros(300)), &mut out).unwrap();
        assert_eq!(n, 0);
        assert!(t0.elapsed() >= Duration::from_micros(300));
    }

    #[test]
    fn thread_cpu_time_advances_when_spinning() {
        let a = thread_cpu_time();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(5) {}
        assert!(thread_cpu_time() > a);
    }
}
