//! The epoll fallback under [`super::Runtime`], for hosts that refuse io_uring: each socket is
//! registered once, edge-triggered, and its readiness is kept in a per-thread table that the
//! socket futures consult; the park is one `epoll_wait` bounded by the next timer.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Which way a socket must be ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

#[derive(Default)]
struct Entry {
    readable: bool,
    writable: bool,
    rwaker: Option<Waker>,
    wwaker: Option<Waker>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

/// One thread's epoll instance and readiness table.
pub(crate) struct Reactor {
    epoll: Epoll,
    table: RefCell<Table>,
}

/// Events taken per wait.
const EVENTS: usize = 256;

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?,
            table: RefCell::new(Table::default()),
        })
    }

    /// Registers `fd` (edge-triggered, both ways); returns its token.
    pub(crate) fn register(&self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let token = {
            let mut t = self.table.borrow_mut();
            match t.free.pop() {
                Some(i) => {
                    t.entries[i] = Some(Entry::default());
                    i
                }
                None => {
                    t.entries.push(Some(Entry::default()));
                    t.entries.len() - 1
                }
            }
        };
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        if let Err(e) = self.epoll.add(fd, EpollEvent::new(flags, token as u64)) {
            self.release(token);
            return Err(e.into());
        }
        Ok(token)
    }

    /// Forgets `fd` (before it is closed).
    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>, token: usize) {
        let _ = self.epoll.delete(fd);
        self.release(token);
    }

    fn release(&self, token: usize) {
        let mut t = self.table.borrow_mut();
        if let Some(e) = t.entries.get_mut(token) {
            *e = None;
            t.free.push(token);
        }
    }

    /// The socket of `token` would block `dir`-wise: not ready until epoll says so again.
    pub(crate) fn clear(&self, token: usize, dir: Dir) {
        if let Some(Some(e)) = self.table.borrow_mut().entries.get_mut(token) {
            match dir {
                Dir::Read => e.readable = false,
                Dir::Write => e.writable = false,
            }
        }
    }

    /// Ready `dir`-wise, or remember the waker.
    pub(crate) fn poll_ready(&self, token: usize, dir: Dir, cx: &mut Context<'_>) -> Poll<()> {
        let mut t = self.table.borrow_mut();
        let Some(Some(e)) = t.entries.get_mut(token) else {
            return Poll::Ready(());
        };
        let (ready, waker) = match dir {
            Dir::Read => (e.readable, &mut e.rwaker),
            Dir::Write => (e.writable, &mut e.wwaker),
        };
        if ready {
            return Poll::Ready(());
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Waits for readiness (at most `timeout`) and wakes the sockets' futures.
    pub(crate) fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = [EpollEvent::empty(); EVENTS];
        let t = match timeout {
            None => EpollTimeout::NONE,
            Some(d) => {
                // Round up, so a wait never ends before the timer it waits for.
                let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE)
            }
        };
        let n = match self.epoll.wait(&mut events, t) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut wake = Vec::new();
        {
            let mut table = self.table.borrow_mut();
            for ev in &events[..n] {
                let Some(Some(e)) = table.entries.get_mut(ev.data() as usize) else {
                    continue;
                };
                let f = ev.events();
                let hup = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR | EpollFlags::EPOLLRDHUP;
                if f.intersects(EpollFlags::EPOLLIN | hup) {
                    e.readable = true;
                    wake.extend(e.rwaker.take());
                }
                if f.intersects(EpollFlags::EPOLLOUT | hup) {
                    e.writable = true;
                    wake.extend(e.wwaker.take());
                }
            }
        }
        wake.into_iter().for_each(Waker::wake);
        Ok(())
    }

    /// The epoll fd (diagnostics).
    #[allow(dead_code)]
    pub(crate) fn raw_fd(&self) -> i32 {
        self.epoll.0.as_fd().as_raw_fd()
    }
}
