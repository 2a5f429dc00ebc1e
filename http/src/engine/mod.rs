//! The proxy engine: a worker's accept loops, its connections, and the request pipeline.
//!
//! A worker owns everything it touches: its listeners, its upstream pools, its per-core policy
//! state, its view of the config snapshot, its gauges. Connections are monoio tasks on the
//! worker's runtime, sharing that state through an `Rc` (single thread, no locks, no atomics
//! beyond the single-writer gauges).
//!
//! The folders follow a request:
//! - [`accept`]: the worker's accept loops and each connection's task;
//! - `io/`: byte streams (plain, TLS, one HTTP/2 stream), buffers, the TLS handshake;
//! - `h1/`: the HTTP/1.1 connection loop (read a head, run the pipeline, repeat);
//! - `h2/`: HTTP/2 connections, each stream run through the same pipeline;
//! - `request/`: the pipeline's phases: parse, route, admit, choose, and the gateway's own
//!   answers and the record of each request;
//! - `upstream/`: forwarding: the pool, attempts and retries, the body both ways, HTTP/2 upstreams;
//! - `tunnel/`: upgraded connections (WebSocket).
//!
//! Pipelined requests are answered in order simply because a connection serves one request at a
//! time and leaves the bytes of the next one in its buffer.

pub mod accept;
mod cache;
mod drain;
mod h1;
mod h2;
mod housekeeping;
pub mod io;
mod request;
mod settings;
mod tunnel;
pub mod upstream;
mod worker;

pub use accept::{connection_task_size, run_worker};
pub use h2::probe as h2probe;
pub use io::body_deadline;
pub use io::buffers::BufStats;
pub use settings::{EngineServices, EngineSettings};
