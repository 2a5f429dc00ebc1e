//! ringgate-core: the runtime layer of the gateway, and nothing of HTTP.
//!
//! A ringgate process runs one worker per core: a monoio runtime pinned to its CPU, with its own
//! SO_REUSEPORT listeners, that shares nothing mutable with the other workers. This crate owns what
//! that takes:
//! - [`profile`]: the perf profile file (how the process uses the host), with named presets;
//! - [`driver`]: the io_uring runtime, and the epoll fallback when the host refuses io_uring;
//! - [`listener`]: per-core reuseport listeners, with detection of a second process on the port;
//! - [`worker`]: spawning the pinned workers and reporting what runs where;
//! - [`snapshot`]: the immutable config snapshot, published by an epoch swap;
//! - [`shutdown`]: the stop signal and the per-worker in-flight counts a drain waits on;
//! - [`handoff`]: handing the listening sockets to a new binary for a zero-downtime upgrade;
//! - [`counter`]: single-writer counters that other threads may read without a lock or an RMW;
//! - [`ring`]: our own io_uring layer (multishot receive into a provided buffer ring, sends that
//!   own their buffers until the kernel is done, one enter per park); the only module allowed
//!   `unsafe`;
//! - [`rt`]: the thread-per-core executor, timers and TCP on that ring.

pub mod counter;
pub mod driver;
pub mod duration;
pub mod error;
pub mod handoff;
pub mod listener;
pub mod profile;
// The one place `unsafe` is allowed in this crate: the ring layer shares memory with the kernel.
// Every block there carries a SAFETY comment and core/tests/ring.rs exercises each.
#[allow(unsafe_code)]
pub mod ring;
pub mod rt;
pub mod shutdown;
pub mod snapshot;
pub mod worker;

pub use error::CoreError;
