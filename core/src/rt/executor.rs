//! The task executor of one worker thread, on its [`Ring`]: tasks are `!Send` futures polled on
//! this thread only; a wake from this thread pushes onto a thread-local queue (no lock, no
//! contended atomic); a wake from another thread goes through a locked queue and an eventfd the
//! driver watches, which is off the request path (control-plane hand-offs only). When no task is
//! ready the thread parks on its driver: on the ring, one `io_uring_enter` submits what the tasks
//! queued and waits for a completion or the next timer; on the epoll fallback, one `epoll_wait`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

use super::driver::Io;
use super::reactor::{Dir, Reactor};
use super::time::Timers;
use crate::ring::{Ring, RingConfig};

/// Id of the future given to `block_on` (never a spawned task's index).
const MAIN: usize = usize::MAX;

/// Ready tasks most polled before the driver is looked at again.
const BUDGET: usize = 256;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
    static READY: RefCell<VecDeque<usize>> = const { RefCell::new(VecDeque::new()) };
}

/// Where wakes from other threads go.
struct Remote {
    thread: ThreadId,
    queue: Mutex<Vec<usize>>,
    eventfd: OwnedFd,
}

impl Remote {
    fn push(&self, id: usize) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(id);
        }
        let one: u64 = 1;
        // A full eventfd counter (EAGAIN) still wakes the reader; nothing to do on error.
        let _ = nix::unistd::write(&self.eventfd, &one.to_ne_bytes());
    }
}

/// The waker of one task.
struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    home: Arc<Remote>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if std::thread::current().id() == self.home.thread {
            READY.with(|r| r.borrow_mut().push_back(self.id));
        } else {
            self.home.push(self.id);
        }
    }
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A task slot: the future and its waker (`None` while polled or after it finished).
type TaskSlot = Option<(Task, Arc<TaskWaker>)>;

/// What the runtime's handles share.
pub(crate) struct Shared {
    pub(crate) io: Io,
    pub(crate) timers: RefCell<Timers>,
    tasks: RefCell<Vec<TaskSlot>>,
    free: RefCell<Vec<usize>>,
    live: Cell<usize>,
    remote: Arc<Remote>,
}

/// One worker thread's runtime.
pub struct Runtime {
    shared: Rc<Shared>,
}

impl Runtime {
    /// Builds the runtime of this thread on a ring built as `cfg` says.
    pub fn new(cfg: &RingConfig) -> io::Result<Runtime> {
        Self::on(Io::Ring(Rc::new(Ring::new(cfg)?)))
    }

    /// Builds the runtime of this thread on epoll (the fallback).
    pub fn epoll() -> io::Result<Runtime> {
        Self::on(Io::Epoll(Rc::new(Reactor::new()?)))
    }

    /// io_uring when the host allows it, else epoll with the reason.
    pub fn auto(cfg: &RingConfig) -> io::Result<(Runtime, Option<String>)> {
        match Self::new(cfg) {
            Ok(rt) => Ok((rt, None)),
            Err(e) => Ok((Self::epoll()?, Some(format!("io_uring unavailable: {e}")))),
        }
    }

    fn on(io: Io) -> io::Result<Runtime> {
        let nonblock = matches!(io, Io::Epoll(_));
        let mut flags = nix::sys::eventfd::EfdFlags::EFD_CLOEXEC;
        if nonblock {
            flags |= nix::sys::eventfd::EfdFlags::EFD_NONBLOCK;
        }
        let fd =
            nix::sys::eventfd::EventFd::from_value_and_flags(0, flags).map_err(io::Error::from)?;
        let remote = Arc::new(Remote {
            thread: std::thread::current().id(),
            queue: Mutex::new(Vec::new()),
            eventfd: OwnedFd::from(fd),
        });
        let shared = Rc::new(Shared {
            io,
            timers: RefCell::new(Timers::default()),
            tasks: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            live: Cell::new(0),
            remote,
        });
        spawn_remote_reader(&shared)?;
        Ok(Runtime { shared })
    }

    /// The ring under this runtime (`None` on epoll).
    pub fn ring(&self) -> Option<&Rc<Ring>> {
        match &self.shared.io {
            Io::Ring(r) => Some(r),
            Io::Epoll(_) => None,
        }
    }

    /// `io_uring` or `epoll`.
    pub fn driver(&self) -> &'static str {
        self.shared.io.name()
    }

    /// Runs `fut` to completion on this thread, with the tasks it spawns.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let prev = CURRENT.with(|c| c.replace(Some(Rc::clone(&self.shared))));
        let _restore = Restore(prev);
        let shared = &self.shared;
        let main = Arc::new(TaskWaker {
            id: MAIN,
            queued: AtomicBool::new(true),
            home: Arc::clone(&shared.remote),
        });
        let main_waker = Waker::from(Arc::clone(&main));
        let mut fut = pin!(fut);
        loop {
            if main.queued.swap(false, Ordering::AcqRel) {
                let mut cx = Context::from_waker(&main_waker);
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
            }
            shared.run_ready();
            shared.timers.borrow_mut().fire();
            if main.queued.load(Ordering::Acquire) || has_ready() {
                // More work is waiting: take what already completed and go on; on the ring what
                // the tasks queued is submitted by the next park's enter, or now when much is
                // waiting (a full queue submits on its own in `Ring::push`).
                shared.io.poll_now();
                continue;
            }
            let wait = shared.timers.borrow().until_next();
            let _ = shared.io.park(wait);
        }
    }
}

struct Restore(Option<Rc<Shared>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

fn has_ready() -> bool {
    READY.with(|r| !r.borrow().is_empty())
}

impl Shared {
    /// Polls up to [`BUDGET`] ready tasks (remote wakes included); true when any ran.
    fn run_ready(&self) -> bool {
        let remote: Vec<usize> = match self.remote.queue.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => Vec::new(),
        };
        if !remote.is_empty() {
            READY.with(|r| r.borrow_mut().extend(remote));
        }
        let mut ran = false;
        for _ in 0..BUDGET {
            let Some(id) = READY.with(|r| r.borrow_mut().pop_front()) else {
                break;
            };
            if id == MAIN {
                continue;
            }
            ran |= self.poll_task(id);
        }
        ran
    }

    fn poll_task(&self, id: usize) -> bool {
        let Some((mut task, waker)) = self.tasks.borrow_mut().get_mut(id).and_then(Option::take)
        else {
            return false;
        };
        waker.queued.store(false, Ordering::Release);
        let w = Waker::from(Arc::clone(&waker));
        let mut cx = Context::from_waker(&w);
        match task.as_mut().poll(&mut cx) {
            Poll::Ready(()) => {
                self.free.borrow_mut().push(id);
                self.live.set(self.live.get() - 1);
            }
            Poll::Pending => {
                if let Some(slot) = self.tasks.borrow_mut().get_mut(id) {
                    *slot = Some((task, waker));
                }
            }
        }
        true
    }

    fn spawn_boxed(&self, task: Task) {
        let id = match self.free.borrow_mut().pop() {
            Some(id) => id,
            None => {
                let mut tasks = self.tasks.borrow_mut();
                tasks.push(None);
                tasks.len() - 1
            }
        };
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            home: Arc::clone(&self.remote),
        });
        self.tasks.borrow_mut()[id] = Some((task, waker));
        self.live.set(self.live.get() + 1);
        READY.with(|r| r.borrow_mut().push_back(id));
    }
}

/// The runtime of this thread; panics outside [`Runtime::block_on`] (a programming error, as
/// with every executor's `spawn`).
pub(crate) fn current() -> Rc<Shared> {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(|| {
        #[allow(clippy::panic)] // calling runtime functions outside a runtime is a bug
        {
            panic!("ringgate_core::rt used outside Runtime::block_on")
        }
    })
}

/// The runtime of this thread, if inside [`Runtime::block_on`].
pub(crate) fn try_current() -> Option<Rc<Shared>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The ring of this thread's runtime (`None` on epoll).
pub fn ring() -> Option<Rc<Ring>> {
    match &current().io {
        Io::Ring(r) => Some(Rc::clone(r)),
        Io::Epoll(_) => None,
    }
}

/// The driver of this thread's runtime.
pub(crate) fn io() -> Io {
    current().io.clone()
}

/// Tasks spawned and not finished on this thread's runtime.
pub fn live_tasks() -> usize {
    current().live.get()
}

/// The output of a spawned task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<(Option<T>, Option<Waker>)>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.borrow_mut();
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Runs `fut` as a task of this thread's runtime.
pub fn spawn<F: Future + 'static>(fut: F) -> JoinHandle<F::Output> {
    let state = Rc::new(RefCell::new((None, None::<Waker>)));
    let out = Rc::clone(&state);
    current().spawn_boxed(Box::pin(async move {
        let v = fut.await;
        let mut s = out.borrow_mut();
        s.0 = Some(v);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }));
    JoinHandle { state }
}

/// Reads the eventfd whenever another thread wakes a task, so a park ends; one per runtime,
/// not counted in [`live_tasks`].
fn spawn_remote_reader(shared: &Rc<Shared>) -> io::Result<()> {
    let remote = Arc::clone(&shared.remote);
    let task: Task = match &shared.io {
        Io::Ring(ring) => {
            let ring = Rc::clone(ring);
            Box::pin(async move {
                let fd = remote.eventfd.as_raw_fd();
                let mut buf = Vec::with_capacity(8);
                loop {
                    buf.clear();
                    let Ok(op) = ring.read_into(fd, buf, 8) else {
                        return;
                    };
                    let (r, b) = op.await;
                    buf = b;
                    if r.is_err() {
                        return;
                    }
                }
            })
        }
        Io::Epoll(reactor) => {
            let reactor = Rc::clone(reactor);
            let token = reactor.register(remote.eventfd.as_fd())?;
            Box::pin(async move {
                let mut b = [0u8; 8];
                loop {
                    std::future::poll_fn(|cx| reactor.poll_ready(token, Dir::Read, cx)).await;
                    // Drain the counter; EAGAIN means it is empty until the next wake.
                    while nix::unistd::read(&remote.eventfd, &mut b).is_ok() {}
                    reactor.clear(token, Dir::Read);
                }
            })
        }
    };
    shared.spawn_boxed(task);
    shared.live.set(shared.live.get() - 1);
    Ok(())
}
