//! ringbench: ringgate's bundled load harness and stub upstreams.
//!
//! It talks HTTP over sockets like any client and shares no proxy internals. The pieces:
//! - [`upstream`]: stub HTTP/1.1 servers with injected latency, errors, streaming and stalls (the
//!   `ringgate-stubs` crate, re-exported: the `ringgate` binary uses it for its demo without
//!   linking this harness; [`rng`], [`units`] and [`runtime`] come from there too);
//! - [`run`]: the open-model generator (scenarios, self-check, CPU accounting, reports);
//! - [`report`]: interval logs and SVG plots; [`compare`]: proxies side by side under the same
//!   load; [`sweep`]: latency against offered load and the highest rate holding an SLO;
//! - [`tax`]: the gateway tax table on a realistic, seeded topology (direct vs each rung).

pub mod cli;
pub mod compare;
pub mod http1;
pub mod report;
pub mod run;
pub mod sweep;
pub mod sys;
pub mod tax;

pub use ringgate_stubs as upstream;
pub use ringgate_stubs::{rng, runtime, units};
