//! ringgate's own thread-per-core runtime on [`crate::ring`] (issue 16): an executor of `!Send`
//! tasks that parks on its driver with one syscall, timers kept in the thread (no ring operation
//! per timeout), and TCP whose receives are one multishot receive per connection into the ring's
//! provided buffers. The epoll fallback (`reactor`) runs the same API for hosts that refuse
//! io_uring ([`Runtime::auto`] says which and why). It is what the engine will move onto from
//! monoio; until then the tests and `core/examples/relay.rs` (a measuring stick for the levers)
//! run on it.

mod deadline;
mod driver;
mod executor;
mod net;
mod reactor;
mod time;

pub use deadline::Deadline;
pub use executor::{live_tasks, ring, spawn, JoinHandle, Runtime};
pub use net::{ReadHalf, TcpListener, TcpStream, WriteHalf};
pub use time::{pending_timers, sleep, sleep_until, timeout, Elapsed, Sleep};
