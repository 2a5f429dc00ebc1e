//! The few Linux system calls the stub server needs that neither std nor monoio wrap: timerfd
//! (precise sleeps inside monoio, whose own timer wheel rounds up to 1 ms), `shutdown(2)` (waking
//! blocked accepts and reads at stop), a zero linger (injected resets) and timer slack. ringbench's
//! generator uses them too, beside its own (`ringbench::sys`: epoll, CPU time, signals).
//!
//! Every function here is a small safe wrapper: the `unsafe` blocks only pass plain integers or
//! pointers to stack values that live for the duration of the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A libc return value as an `io::Result`: negative means `errno` holds the error.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A duration as a `timespec` (seconds saturate).
pub fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Creates a non-blocking, close-on-exec CLOCK_MONOTONIC timerfd.
pub fn timerfd_create() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments; the returned fd is owned by nobody else.
    let fd = cvt(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by timerfd_create and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms a timerfd to expire once after `after` (a zero duration is bumped to 1 ns, since zero
/// would disarm it).
pub fn timerfd_arm(fd: RawFd, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: timespec(Duration::ZERO),
        it_value: timespec(after),
    };
    // SAFETY: `spec` lives on the stack for the call; a null old-value pointer is allowed.
    cvt(unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) })?;
    Ok(())
}

/// Disarms a timerfd (and clears an expiration not yet read).
pub fn timerfd_disarm(fd: RawFd) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: timespec(Duration::ZERO),
        it_value: timespec(Duration::ZERO),
    };
    // SAFETY: `spec` lives on the stack for the call; a null old-value pointer is allowed.
    cvt(unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) })?;
    Ok(())
}

/// Reads a timerfd's expiration count; `Ok(false)` when it has not expired yet.
pub fn timerfd_consume(fd: RawFd) -> io::Result<bool> {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a stack u64.
    let n = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    if n == 8 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// `shutdown(fd, SHUT_RDWR)`: wakes a blocked accept on a listener, or a pending read on a
/// connection, without closing the descriptor under its owner.
pub fn shutdown_both(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain integer arguments; a stale fd only yields EBADF.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) })?;
    Ok(())
}

/// Sets `SO_LINGER {on, 0}` so that closing the socket sends a TCP reset.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` lives on the stack for the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Sets the calling thread's timer slack (default 50 us) so timed waits wake close to their
/// deadline. Best effort.
pub fn set_timer_slack(slack: Duration) {
    let ns = slack.as_nanos().clamp(1, u64::MAX as u128) as libc::c_ulong;
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument; failure is harmless.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            ns,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn timerfd_fires_once_after_arming() {
        let fd = timerfd_create().unwrap();
        assert!(!timerfd_consume(fd.as_raw_fd()).unwrap());
        timerfd_arm(fd.as_raw_fd(), Duration::from_micros(200)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !timerfd_consume(fd.as_raw_fd()).unwrap() {
            assert!(Instant::now() < deadline, "the armed timerfd never fired");
            std::thread::yield_now();
        }
        assert!(!timerfd_consume(fd.as_raw_fd()).unwrap());
    }

    #[test]
    fn disarming_clears_an_expiration_not_yet_read() {
        let fd = timerfd_create().unwrap();
        let later = timerfd_create().unwrap();
        timerfd_arm(fd.as_raw_fd(), Duration::from_nanos(1)).unwrap();
        timerfd_arm(later.as_raw_fd(), Duration::from_millis(1)).unwrap();
        // Once the later timer fired, the first one has expired too (same clock, earlier).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !timerfd_consume(later.as_raw_fd()).unwrap() {
            assert!(
                Instant::now() < deadline,
                "the reference timerfd never fired"
            );
            std::thread::yield_now();
        }
        timerfd_disarm(fd.as_raw_fd()).unwrap();
        assert!(!timerfd_consume(fd.as_raw_fd()).unwrap());
    }
}
