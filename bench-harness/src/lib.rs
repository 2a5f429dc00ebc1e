//! ringbench: ringgate's bundled load harness and stub upstreams.
//!
//! It talks HTTP over sockets like any client and shares no proxy internals. The pieces:
//! - [`upstream`]: stub HTTP/1.1 servers with injected latency, errors, streaming and stalls;
//! - `run` (open-model generator), scenarios, reports, `compare` and `sweep` build on them.

pub mod cli;
pub mod http1;
pub mod report;
pub mod rng;
pub mod run;
pub mod runtime;
pub mod sys;
pub mod units;
pub mod upstream;
