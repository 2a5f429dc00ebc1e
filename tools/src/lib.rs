//! The `ringgate` library behind the binary: the control plane re-exported, and the demo.
//!
//! Everything off the request path lives in `ringgate-control` (`control/`); it is re-exported
//! here so `ringgate::config`, `ringgate::snapshot`, `ringgate::server` and the rest keep their
//! paths for the binary and the integration tests. Only `demo` (the bundled example against
//! built-in stub upstreams) is this crate's own.

pub use ringgate_control::*;

pub mod demo;
